package kms

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/coffer-dev/coffer/api"
)

func TestNewValidatesConfig(t *testing.T) {
	c, _ := api.NewClient(api.Config{})
	for name, tc := range map[string]struct {
		cfg  Config
		want string
	}{
		"no client":                {Config{Token: "t"}, "Client is required"},
		"no token source":          {Config{Client: c}, "no Coffer token"},
		"two token sources":        {Config{Client: c, Token: "t", TokenFile: "f"}, "only one"},
		"secret_id without roleid": {Config{Client: c, Token: "t", AppRole: AppRole{SecretIDFile: "s"}}, "needs a role_id file"},
		"bad key path":             {Config{Client: c, Token: "t", KeyPath: "transit/k8s"}, "is not <transit mount>/keys/<name>"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestListen(t *testing.T) {
	dir := shortTempDir(t)
	t.Run("a stale socket is replaced", func(t *testing.T) {
		sock := filepath.Join(dir, "stale.sock")
		l1, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		l1.(*net.UnixListener).SetUnlinkOnClose(false)
		l1.Close()
		l, path, err := listen("unix://" + sock)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("socket mode = %v, %v; want 0600", fi.Mode().Perm(), err)
		}
	})
	t.Run("a regular file is not removed", func(t *testing.T) {
		f := filepath.Join(dir, "file")
		os.WriteFile(f, []byte("x"), 0o600)
		if _, _, err := listen(f); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("listen on a file = %v", err)
		}
		if _, err := os.Stat(f); err != nil {
			t.Error("the file was removed")
		}
	})
	t.Run("tcp is refused", func(t *testing.T) {
		if _, _, err := listen("tcp://127.0.0.1:1"); err == nil {
			t.Error("listen accepted tcp")
		}
	})
	t.Run("an abstract socket", func(t *testing.T) {
		l, path, err := listen("unix:///@coffer-kms-test-" + filepath.Base(dir))
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		if path != "" {
			t.Errorf("abstract socket has a file %q", path)
		}
	})
}

func TestRunServesUntilCancelled(t *testing.T) {
	s := startDev(t)
	sock := filepath.Join(shortTempDir(t), "run.sock")
	ctx, cancel := context.WithCancel(context.Background())
	env := map[string]string{"COFFER_ADDR": s.addr, "COFFER_TOKEN": "root"}
	errc := make(chan error, 1)
	go func() {
		errc <- Run(ctx, Options{Listen: "unix://" + sock, Getenv: func(k string) string { return env[k] }})
	}()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := kmsapi.NewKeyManagementServiceClient(conn)
	var st *kmsapi.StatusResponse
	for deadline := time.Now().Add(10 * time.Second); ; {
		if st, err = c.Status(tctx(t), &kmsapi.StatusRequest{}); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || st.Healthz != "ok" {
		t.Fatalf("Status through Run = %v, %v", st, err)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Run = %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

// fakeAppRoleCoffer is a fake, because the approle auth method is not yet
// mounted by the server (server.AuthMethods): it answers approle login,
// renew-self, and the transit key read with just the fields the plugin
// reads, and counts calls.
type fakeAppRoleCoffer struct {
	mu        sync.Mutex
	logins    int
	renewals  int
	lastLogin map[string]any
	valid     map[string]bool
	renewTTL  int
}

func (f *fakeAppRoleCoffer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	tok := r.Header.Get("X-Vault-Token")
	switch r.URL.Path {
	case "/v1/auth/kms-role/login":
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		f.lastLogin = body
		if body["role_id"] != "the-role" || body["secret_id"] != "the-secret" {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"errors":["invalid role or secret ID"]}`))
			return
		}
		f.logins++
		t := "tok-" + string(rune('0'+f.logins))
		f.valid[t] = true
		json.NewEncoder(w).Encode(map[string]any{"auth": map[string]any{"client_token": t, "lease_duration": 60, "renewable": true}})
	case "/v1/auth/token/renew-self":
		if !f.valid[tok] {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		f.renewals++
		json.NewEncoder(w).Encode(map[string]any{"auth": map[string]any{"client_token": tok, "lease_duration": f.renewTTL, "renewable": true}})
	case "/v1/transit/keys/k8s-etcd":
		if !f.valid[tok] {
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"errors":["permission denied"]}`))
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"type": "aes256-gcm96", "latest_version": 1, "keys": map[string]any{"1": 1700000000}}})
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func TestAppRoleLoginRenewAndRelogin(t *testing.T) {
	f := &fakeAppRoleCoffer{valid: map[string]bool{}, renewTTL: 60}
	srv := httptest.NewServer(f)
	defer srv.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "role"), []byte("the-role\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "secret"), []byte("the-secret\n"), 0o600)
	c, _ := api.NewClient(api.Config{Address: srv.URL})
	now := time.Unix(1700000000, 0)
	p, err := New(Config{Client: c, Now: func() time.Time { return now },
		AppRole: AppRole{RoleIDFile: filepath.Join(dir, "role"), SecretIDFile: filepath.Join(dir, "secret"), MountPath: "/kms-role/"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := tctx(t)
	st, err := p.Status(ctx)
	if err != nil || st.Healthz != "ok" || st.KeyID != DeriveKeyID("transit/keys/k8s-etcd", 1700000000)+":v1" {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	if f.logins != 1 || f.lastLogin["role_id"] != "the-role" {
		t.Fatalf("logins = %d, body %v", f.logins, f.lastLogin)
	}
	if at, ok := p.tokens.renewAt(); !ok || at != now.Add(40*time.Second) {
		t.Errorf("renewAt = %v, %v; want two thirds into the 60s TTL", at, ok)
	}
	// A renewal that keeps the TTL: no new login.
	if err := p.tokens.renew(ctx); err != nil || f.renewals != 1 || f.logins != 1 {
		t.Errorf("renew: %v, renewals %d, logins %d", err, f.renewals, f.logins)
	}
	// A renewal capped by the max TTL: log in again.
	f.renewTTL = 10
	if err := p.tokens.renew(ctx); err != nil || f.logins != 2 {
		t.Errorf("capped renew: %v, logins %d; want a new login", err, f.logins)
	}
	// The token revoked behind the plugin's back: the next call logs in.
	f.valid = map[string]bool{}
	if st, err := p.Status(ctx); err != nil || st.Healthz != "ok" || f.logins != 3 {
		t.Errorf("after revocation: %+v, %v, logins %d; want ok after a new login", st, err, f.logins)
	}
	// A wrong secret_id: unhealthy, and the reason never carries it.
	os.WriteFile(filepath.Join(dir, "secret"), []byte("wrong-secret"), 0o600)
	f.valid = map[string]bool{}
	st, err = p.Status(ctx)
	if err != nil || st.Healthz == "ok" || strings.Contains(st.Healthz, "wrong-secret") || !strings.Contains(st.Healthz, "approle login") {
		t.Errorf("bad secret_id: Status %+v, %v", st, err)
	}
}

func TestMissingCredentialFileSaysWhichFile(t *testing.T) {
	c, _ := api.NewClient(api.Config{Address: "http://127.0.0.1:1"})
	p, err := New(Config{Client: c, TokenFile: filepath.Join(t.TempDir(), "missing")})
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Status(tctx(t))
	if err != nil || !strings.Contains(st.Healthz, "read token file") {
		t.Errorf("Status = %+v, %v", st, err)
	}
}
