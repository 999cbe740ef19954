package compat

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// TestSealRestart initializes a bolt-backed server, checks that a sealed
// server answers 503 to everything but the seal endpoints, and that data
// survives a graceful restart.
func TestSealRestart(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir, "")
	c := p.client(t, "")
	if r := doRaw(t, "GET", p.addr+"/v1/sys/health", "", nil, nil); r.status != 501 {
		t.Errorf("health before init = %d, want 501", r.status)
	}
	if init, _ := c.Sys().InitStatus(); init {
		t.Fatal("new server says it is initialized")
	}
	keys, root := initUnseal(t, p)
	rc := p.client(t, root)
	cx := ctx(t)
	if err := rc.Sys().MountWithContext(cx, "secret", &vault.MountInput{Type: "kv-v2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.KVv2("secret").Put(cx, "persist", map[string]any{"v": "1"}); err != nil {
		t.Fatal(err)
	}

	if err := rc.Sys().SealWithContext(cx); err != nil {
		t.Fatalf("seal: %v", err)
	}
	for _, path := range []string{"/v1/secret/data/persist", "/v1/sys/mounts", "/v1/auth/token/lookup-self", "/v1/sys/leader"} {
		if r := doRaw(t, "GET", p.addr+path, root, nil, nil); r.status != 503 {
			t.Errorf("sealed GET %s = %d %s, want 503", path, r.status, r.body)
		}
	}
	if r := doRaw(t, "GET", p.addr+"/v1/sys/health", "", nil, nil); r.status != 503 {
		t.Errorf("sealed health = %d, want 503", r.status)
	}
	if r := doRaw(t, "GET", p.addr+"/v1/sys/health?sealedcode=299", "", nil, nil); r.status != 299 {
		t.Errorf("sealed health with sealedcode=299 = %d", r.status)
	}

	// A wrong share is refused; a reset clears progress.
	st, err := c.Sys().Unseal(keys[0])
	if err != nil || st.Progress != 1 {
		t.Fatalf("first share: %+v %v", st, err)
	}
	st, err = c.Sys().UnsealWithOptions(&vault.UnsealOpts{Reset: true})
	if err != nil || st.Progress != 0 {
		t.Fatalf("reset: %+v %v", st, err)
	}
	raw, _ := hex.DecodeString(keys[1])
	raw[3] ^= 0x5a // same length, wrong share
	bad := hex.EncodeToString(raw)
	c.Sys().Unseal(keys[0])
	c.Sys().Unseal(bad)
	if _, err := c.Sys().Unseal(keys[2]); err == nil {
		if st, _ := c.Sys().SealStatus(); !st.Sealed {
			t.Fatal("a corrupted share unsealed the server")
		}
	}
	if st, _ := c.Sys().SealStatus(); !st.Sealed || st.Progress != 0 {
		t.Errorf("after a failed unseal: sealed=%v progress=%d, want sealed with progress reset", st.Sealed, st.Progress)
	}
	unseal(t, p, keys)

	p.stop()
	p2 := startServer(t, dir, "")
	if st, _ := p2.client(t, "").Sys().SealStatus(); !st.Initialized || !st.Sealed || st.T != 3 || st.N != 5 {
		t.Fatalf("after restart: %+v", st)
	}
	unseal(t, p2, keys)
	s, err := p2.client(t, root).KVv2("secret").Get(cx, "persist")
	if err != nil || s.Data["v"] != "1" {
		t.Fatalf("after restart = %v, %v", s, err)
	}
}

// TestCrashLosesNoAcknowledgedWrite SIGKILLs a bolt-backed server under
// 16 concurrent writers and checks every acknowledged write is there after
// a restart.
func TestCrashLosesNoAcknowledgedWrite(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir, "")
	keys, root := initUnseal(t, p)
	rc := p.client(t, root)
	cx := ctx(t)
	if err := rc.Sys().MountWithContext(cx, "secret", &vault.MountInput{Type: "kv-v2"}); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		acked []string
		stop  atomic.Bool
		wg    sync.WaitGroup
	)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := p.client(t, root)
			for i := 0; !stop.Load(); i++ {
				key := fmt.Sprintf("w%d/k%d", w, i)
				if _, err := c.KVv2("secret").Put(cx, key, map[string]any{"v": key}); err != nil {
					return // the server died under us
				}
				mu.Lock()
				acked = append(acked, key)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	p.kill()
	stop.Store(true)
	wg.Wait()
	if len(acked) < 50 {
		t.Fatalf("only %d writes acknowledged before the kill", len(acked))
	}
	p2 := startServer(t, dir, "")
	unseal(t, p2, keys)
	c := p2.client(t, root)
	missing := 0
	for _, k := range acked {
		s, err := c.KVv2("secret").Get(cx, k)
		if err != nil || s.Data["v"] != k {
			missing++
			if missing < 5 {
				t.Errorf("acknowledged write %s lost: %v", k, err)
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged writes lost", missing, len(acked))
	}
	t.Logf("%d acknowledged writes all survived SIGKILL", len(acked))
}

// TestNothingReadableAtRest writes a canary value under a canary path and
// a token, stops the server, and scans every byte of its data directory.
func TestNothingReadableAtRest(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir, "")
	_, root := initUnseal(t, p)
	rc := p.client(t, root)
	cx := ctx(t)
	if err := rc.Sys().MountWithContext(cx, "canarymount", &vault.MountInput{Type: "kv-v2"}); err != nil {
		t.Fatal(err)
	}
	const value, pathSeg = "CanaryValue7f3a9", "canarypath5b21"
	if _, err := rc.KVv2("canarymount").Put(cx, pathSeg+"/inner", map[string]any{"secretfield": value}); err != nil {
		t.Fatal(err)
	}
	if err := rc.Sys().PutPolicyWithContext(cx, "canarypolicy", `path "canarymount/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	tok, err := rc.Auth().Token().CreateWithContext(cx, &vault.TokenCreateRequest{Policies: []string{"canarypolicy"}})
	if err != nil {
		t.Fatal(err)
	}
	p.stop()

	needles := map[string][]byte{
		"value":        []byte(value),
		"path":         []byte(pathSeg),
		"mount":        []byte("canarymount"),
		"policy name":  []byte("canarypolicy"),
		"field name":   []byte("secretfield"),
		"child token":  []byte(tok.Auth.ClientToken),
		"token suffix": []byte(strings.TrimPrefix(tok.Auth.ClientToken, "hvs.")),
		"root token":   []byte(root),
	}
	files := 0
	filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || strings.HasSuffix(path, ".hcl") {
			return nil
		}
		files++
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for name, n := range needles {
			if bytes.Contains(b, n) {
				t.Errorf("%s: the %s is readable at rest", path, name)
			}
		}
		return nil
	})
	if files == 0 {
		t.Fatal("no data files found to scan")
	}
}

// TestHealthAndStatus checks sys/health's codes and seal-status fields.
func TestHealthAndStatus(t *testing.T) {
	p, c := startDev(t)
	r := doRaw(t, "GET", p.addr+"/v1/sys/health", "", nil, nil)
	if r.status != 200 || !strings.Contains(r.body, `"sealed":false`) || !strings.Contains(r.body, `"cluster_id"`) {
		t.Errorf("health = %d %s", r.status, r.body)
	}
	if r := doRaw(t, "GET", p.addr+"/v1/sys/health?activecode=204", "", nil, nil); r.status != 204 {
		t.Errorf("activecode=204 gave %d", r.status)
	}
	st, err := c.Sys().SealStatus()
	if err != nil || st.Sealed || st.Type != "shamir" || st.Version == "" || st.StorageType != "inmem" {
		t.Errorf("seal status = %+v, %v", st, err)
	}
	l, err := c.Sys().Leader()
	if err != nil || l.HAEnabled {
		t.Errorf("leader = %+v, %v", l, err)
	}
	resp, err := http.Get(p.addr + "/v1/sys/metrics?format=prometheus")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("metrics without a token = %d, want 403", resp.StatusCode)
	}
	m := doRaw(t, "GET", p.addr+"/v1/sys/metrics?format=prometheus", "root", nil, nil)
	if m.status != 200 || !strings.Contains(m.body, "coffer_requests_total") {
		t.Errorf("metrics = %d %.200s", m.status, m.body)
	}
}
