package operator

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServer is a fake Vault-API server (named so) that counts logins and
// renewals; the real server is exercised in tests/compat/operator_test.go.
type fakeServer struct {
	mu       sync.Mutex
	logins   int
	renewals int
	revoked  map[string]bool
	next     int
	sealed   bool
	refuse   bool
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sealed {
		w.WriteHeader(503)
		w.Write([]byte(`{"errors":["Vault is sealed"]}`))
		return
	}
	tok := r.Header.Get("X-Vault-Token")
	switch {
	case r.URL.Path == "/v1/auth/kubernetes/login":
		var body struct{ Role, JWT string }
		json.NewDecoder(r.Body).Decode(&body)
		if f.refuse || body.JWT != "sa-jwt" {
			w.WriteHeader(403)
			w.Write([]byte(`{"errors":["permission denied"]}`))
			return
		}
		f.logins++
		f.next++
		json.NewEncoder(w).Encode(map[string]any{"auth": map[string]any{
			"client_token": "tok-" + string(rune('0'+f.next)), "lease_duration": 600, "renewable": true}})
	case f.revoked[tok]:
		w.WriteHeader(403)
		w.Write([]byte(`{"errors":["permission denied"]}`))
	case r.URL.Path == "/v1/auth/token/renew-self":
		f.renewals++
		json.NewEncoder(w).Encode(map[string]any{"auth": map[string]any{"client_token": tok, "lease_duration": 600, "renewable": true}})
	case r.URL.Path == "/v1/auth/token/lookup-self":
		json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"ttl": 600}})
	case strings.HasPrefix(r.URL.Path, "/v1/secret/data/"):
		json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"data": map[string]any{"password": "s3cret"}}})
	default:
		w.WriteHeader(404)
		w.Write([]byte(`{"errors":[]}`))
	}
}

type fakeTokens struct{}

func (fakeTokens) CreateToken(context.Context, string, string, []string, time.Duration) (string, error) {
	return "sa-jwt", nil
}

func TestSessionLogsInOnceAndRenews(t *testing.T) {
	f := &fakeServer{revoked: map[string]bool{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	now := time.Unix(1000, 0)
	var clockMu sync.Mutex
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	advance := func(d time.Duration) { clockMu.Lock(); now = now.Add(d); clockMu.Unlock() }
	ss := newSessions(fakeTokens{}, nil, clock)
	id := identity{server: srv.URL, mount: "kubernetes", role: "r", saNamespace: "n", saName: "sa"}
	s, err := ss.get(id, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	read := func() error {
		_, err := readKV(ctx, s, remotePath{"secret", "db"}, 2, "")
		return err
	}
	for i := 0; i < 100; i++ {
		if err := read(); err != nil {
			t.Fatal(err)
		}
		advance(time.Second)
	}
	if f.logins != 1 || f.renewals != 0 {
		t.Errorf("after 100 reads in 100 s: logins %d renewals %d, want 1 and 0", f.logins, f.renewals)
	}
	advance(250 * time.Second) // past half the 600 s TTL
	s.maintain(ctx)
	if f.logins != 1 || f.renewals != 1 {
		t.Errorf("past half the TTL: logins %d renewals %d, want 1 and 1", f.logins, f.renewals)
	}
	if again, _ := ss.get(id, nil); again != s {
		t.Error("the same identity gave a second session")
	}
	// A revoked token: the read is denied, lookup-self too, so one new login.
	f.mu.Lock()
	f.revoked[s.token] = true
	f.mu.Unlock()
	if err := read(); err != nil {
		t.Fatalf("read after revocation: %v", err)
	}
	if f.logins != 2 {
		t.Errorf("after revocation: logins %d, want 2", f.logins)
	}
	// Expired beyond the TTL without renewal: a new login.
	advance(time.Hour)
	if err := read(); err != nil {
		t.Fatal(err)
	}
	if f.logins != 3 || ss.logins.Load() != 3 {
		t.Errorf("after expiry: logins %d (counted %d), want 3", f.logins, ss.logins.Load())
	}
}

func TestSessionErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		sealed, refuse bool
		want           string
	}{
		"a refused login": {refuse: true, want: ReasonLoginRefused},
		"a sealed server": {sealed: true, want: ReasonSealed},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(&fakeServer{sealed: tc.sealed, refuse: tc.refuse})
			defer srv.Close()
			ss := newSessions(fakeTokens{}, nil, time.Now)
			s, _ := ss.get(identity{server: srv.URL, mount: "kubernetes", role: "r", saNamespace: "n", saName: "sa"}, nil)
			_, err := readKV(context.Background(), s, remotePath{"secret", "db"}, 2, "")
			if got := Reason(err); got != tc.want {
				t.Errorf("Reason(%v) = %q, want %q", err, got, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "sa-jwt") {
				t.Errorf("error %q holds the service-account token", err)
			}
		})
	}
	t.Run("an unreachable server", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		ss := newSessions(fakeTokens{}, nil, time.Now)
		s, _ := ss.get(identity{server: url, mount: "kubernetes", role: "r", saNamespace: "n", saName: "sa"}, nil)
		_, err := s.Token(context.Background())
		if got := Reason(err); got != ReasonUnreachable {
			t.Errorf("Reason(%v) = %q, want Unreachable", err, got)
		}
	})
	t.Run("a bad CA bundle", func(t *testing.T) {
		ss := newSessions(fakeTokens{}, nil, time.Now)
		if _, err := ss.get(identity{server: "https://x", role: "r"}, []byte("not pem")); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("get with a bad CA = %v, want ErrInvalidConfig", err)
		}
	})
}
