package compat

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/coffer-dev/coffer/internal/barrier"
	"github.com/coffer-dev/coffer/internal/seal"
	"github.com/coffer-dev/coffer/internal/seal/transitseal"
	"github.com/coffer-dev/coffer/internal/storage/inmem"
)

// TestTransitSealAgainstRealServer runs the transit auto-unseal protector
// and a seal.Manager against the transit engine of a real coffer process
// (server A): init with recovery keys, auto-unseal after a restart of the
// Manager, and a clear "unavailable" reason once A is gone.
func TestTransitSealAgainstRealServer(t *testing.T) {
	a, c := startDev(t)
	mountTransit(t, c)
	write(t, c, "transit/keys/autounseal", map[string]any{})
	cx := ctx(t)

	ts, err := transitseal.New(transitseal.Config{Address: a.addr, Token: "root", KeyName: "autounseal"})
	if err != nil {
		t.Fatal(err)
	}
	kek := bytes.Repeat([]byte{7}, 32)
	blob, err := ts.Wrap(cx, kek)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	if !strings.HasPrefix(string(blob), "vault:v1:") {
		t.Errorf("blob = %.20q, want a transit ciphertext", blob)
	}
	if got, err := ts.Unwrap(cx, blob); err != nil || !bytes.Equal(got, kek) {
		t.Fatalf("Unwrap = %v, want the KEK back", err)
	}
	tampered := []byte(strings.Replace(string(blob), "vault:v1:", "vault:v1:A", 1))
	if _, err := ts.Unwrap(cx, tampered); !errors.Is(err, seal.ErrInvalidKey) {
		t.Errorf("Unwrap of a tampered blob = %v, want ErrInvalidKey", err)
	}
	other, _ := transitseal.New(transitseal.Config{Address: a.addr, Token: "root", KeyName: "nokey"})
	if _, err := other.Unwrap(cx, blob); err == nil {
		t.Error("Unwrap with a missing key succeeded")
	}
	denied, _ := transitseal.New(transitseal.Config{Address: a.addr, Token: "not-a-token", KeyName: "autounseal"})
	if _, err := denied.Unwrap(cx, blob); !errors.Is(err, seal.ErrKeyUnavailable) {
		t.Errorf("Unwrap with a bad token = %v, want ErrKeyUnavailable", err)
	}

	// A Manager sealed by A's key: init, restart, unseal with no key typed.
	backend := inmem.New()
	newManager := func() (*seal.Manager, *barrier.Barrier) {
		b, err := barrier.New(barrier.Config{Backend: backend})
		if err != nil {
			t.Fatal(err)
		}
		m, err := seal.New(seal.Config{Backend: backend, Barrier: b, Protector: ts})
		if err != nil {
			t.Fatal(err)
		}
		return m, b
	}
	m, b := newManager()
	res, err := m.Init(cx, seal.InitRequest{RecoveryShares: 5, RecoveryThreshold: 3})
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	if len(res.RecoveryKeys) != 5 || len(res.Keys) != 0 {
		t.Fatalf("Init gave %d recovery and %d unseal keys, want 5 and 0", len(res.RecoveryKeys), len(res.Keys))
	}
	if err := b.Put(cx, "kv/canary", []byte("canary value")); err != nil {
		t.Fatal(err)
	}
	_ = m.Seal(cx)

	m, b = newManager()
	if err := m.AutoUnseal(cx); err != nil {
		t.Fatalf("AutoUnseal through A: %v", err)
	}
	if got, err := b.Get(cx, "kv/canary"); err != nil || string(got) != "canary value" {
		t.Fatalf("after AutoUnseal, canary = %q, %v", got, err)
	}
	_ = m.Seal(cx)

	a.stop()
	m, b = newManager()
	err = m.AutoUnseal(cx)
	if !errors.Is(err, seal.ErrKeyUnavailable) {
		t.Fatalf("AutoUnseal with A stopped = %v, want ErrKeyUnavailable", err)
	}
	st, err := m.Status(cx)
	if err != nil || !st.Sealed || !strings.Contains(st.Reason, strings.TrimPrefix(a.addr, "http://")) {
		t.Errorf("status with A stopped = %+v, %v; want sealed, reason naming A", st, err)
	}
	if !b.Sealed() {
		t.Error("barrier unsealed with A stopped")
	}
}

// startServerAt is startServer on a fixed address, so a restarted server
// is found where its peers' configs name it.
func startServerAt(t *testing.T, dir, addr, extraConfig string) *proc {
	t.Helper()
	cfg := fmt.Sprintf(`
storage "bolt" {
  path = %q
}
listener "tcp" {
  address     = %q
  tls_disable = true
}
log_level = "warn"
%s
`, filepath.Join(dir, "coffer.db"), addr, extraConfig)
	cfgPath := filepath.Join(dir, "coffer.hcl")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return startProc(t, dir, addr, "server", "--config", cfgPath)
}

// rawSealStatus reads sys/seal-status as JSON, for the Coffer-only
// sealed_reason the Vault client does not know.
func rawSealStatus(t *testing.T, p *proc) map[string]any {
	t.Helper()
	resp, err := http.Get(p.addr + "/v1/sys/seal-status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// waitUnsealed polls p's seal status until it is unsealed.
func waitUnsealed(t *testing.T, p *proc, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if m := rawSealStatus(t, p); m["sealed"] == false {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("still sealed after %s: %v", within, m)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAutoUnsealTwoServers: server B is sealed by a transit key on server
// A. B initialises with recovery keys, restarts and unseals itself with
// no key typed; with A stopped B stays sealed and says why; once A is
// back, B's retry loop unseals it.
func TestAutoUnsealTwoServers(t *testing.T) {
	dirA, addrA := t.TempDir(), freeAddr(t)
	a := startServerAt(t, dirA, addrA, "")
	keysA, rootA := initUnseal(t, a)
	ca := a.client(t, rootA)
	mountTransit(t, ca)
	write(t, ca, "transit/keys/autounseal", map[string]any{})

	sealCfg := fmt.Sprintf("seal \"transit\" {\n  address  = %q\n  token    = %q\n  key_name = \"autounseal\"\n}\n", a.addr, rootA)
	dirB := t.TempDir()
	b := startServer(t, dirB, sealCfg)
	st, err := b.client(t, "").Sys().SealStatus()
	if err != nil {
		t.Fatal(err)
	}
	if st.Initialized || st.Type != "transit" {
		t.Errorf("B before init: %+v, want uninitialized transit seal", st)
	}
	res, err := b.client(t, "").Sys().Init(&vault.InitRequest{RecoveryShares: 5, RecoveryThreshold: 3})
	if err != nil {
		t.Fatalf("init B: %v", err)
	}
	if len(res.Keys) != 0 || len(res.RecoveryKeys) != 5 || res.RootToken == "" {
		t.Fatalf("init B gave %d unseal keys, %d recovery keys; want 0 and 5 and a root token", len(res.Keys), len(res.RecoveryKeys))
	}
	waitUnsealed(t, b, 10*time.Second)
	cb := b.client(t, res.RootToken)
	if err := cb.Sys().Mount("kv", &vault.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.KVv2("kv").Put(ctx(t), "app", map[string]any{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	st, _ = b.client(t, "").Sys().SealStatus()
	if !st.RecoverySeal || st.T != 3 || st.N != 5 {
		t.Errorf("B seal-status = %+v, want recovery_seal with 3 of 5", st)
	}
	// Restart: unsealed with no key typed.
	b.stop()
	b = startServer(t, dirB, sealCfg)
	waitUnsealed(t, b, 15*time.Second)
	if s, err := b.client(t, res.RootToken).KVv2("kv").Get(ctx(t), "app"); err != nil || s.Data["k"] != "v" {
		t.Fatalf("read after auto-unseal: %v, %v", s, err)
	}

	// A gone: B stays sealed and says why.
	b.stop()
	a.stop()
	b = startServer(t, dirB, sealCfg)
	time.Sleep(1500 * time.Millisecond)
	m := rawSealStatus(t, b)
	reason, _ := m["sealed_reason"].(string)
	if m["sealed"] != true || !strings.Contains(reason, addrA) {
		t.Fatalf("B with A stopped: sealed=%v sealed_reason=%q; want sealed, a reason naming %s", m["sealed"], reason, addrA)
	}
	if strings.Contains(reason, rootA) {
		t.Error("sealed_reason holds A's token")
	}
	_, err = b.client(t, "").Sys().Unseal(res.RecoveryKeys[0])
	wantStatus(t, "unseal B with a recovery key", err, http.StatusBadRequest)

	// A back (unsealed by its operators): B's retry loop unseals it.
	a = startServerAt(t, dirA, addrA, "")
	unseal(t, a, keysA)
	waitUnsealed(t, b, 45*time.Second)
}

// TestStaticSealServer: a server whose KEK is wrapped by a key file (a
// mounted Kubernetes Secret) unseals itself; without the file it stays
// sealed, says why, and unseals once the file appears.
func TestStaticSealServer(t *testing.T) {
	dir, keyDir := t.TempDir(), t.TempDir()
	keyFile := filepath.Join(keyDir, "seal-key")
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x5a}, 32))
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sealCfg := fmt.Sprintf("seal \"static\" {\n  current_key_id = \"k1\"\n  current_key    = \"file://%s\"\n}\n", keyFile)
	p := startServer(t, dir, sealCfg)
	res, err := p.client(t, "").Sys().Init(&vault.InitRequest{RecoveryShares: 1, RecoveryThreshold: 1})
	if err != nil || len(res.RecoveryKeys) != 1 {
		t.Fatalf("init: %v (%d recovery keys)", err, len(res.RecoveryKeys))
	}
	waitUnsealed(t, p, 10*time.Second)
	p.stop()

	if err := os.Rename(keyFile, keyFile+".away"); err != nil {
		t.Fatal(err)
	}
	p = startServer(t, dir, sealCfg)
	time.Sleep(500 * time.Millisecond)
	m := rawSealStatus(t, p)
	reason, _ := m["sealed_reason"].(string)
	if m["sealed"] != true || m["type"] != "static" || !strings.Contains(reason, keyFile) {
		t.Fatalf("without the key file: %v; want sealed, type static, a reason naming the file", m)
	}
	if strings.Contains(reason, key[:16]) {
		t.Error("sealed_reason holds the key")
	}
	if err := os.Rename(keyFile+".away", keyFile); err != nil {
		t.Fatal(err)
	}
	waitUnsealed(t, p, 20*time.Second)
}
