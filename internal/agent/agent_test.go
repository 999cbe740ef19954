package agent

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServer is a fake Coffer HTTP API for what the real server cannot do
// yet here: dynamic (leased) credentials with a max TTL and the
// kubernetes login. The end-to-end tests in tests/compat use the real
// server for everything it has.
type fakeServer struct {
	mu       sync.Mutex // guards following
	issued   int        // credentials issued
	renewals int
	issuedAt map[string]time.Time
	logins   []map[string]any
	kvValue  string
}

const (
	fakeLease  = 3 // seconds
	fakeMaxTTL = 5
)

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	reply := func(v any) { w.Header().Set("Content-Type", "application/json"); json.NewEncoder(w).Encode(v) }
	switch r.URL.Path {
	case "/v1/auth/kubernetes/login":
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		f.logins = append(f.logins, body)
		if body["role"] != "web" {
			w.WriteHeader(http.StatusBadRequest)
			reply(map[string]any{"errors": []string{`invalid role name "` + fmt.Sprint(body["role"]) + `"`}})
			return
		}
		reply(map[string]any{"auth": map[string]any{"client_token": "fake-token", "lease_duration": 3600, "renewable": true}})
	case "/v1/database/creds/ro":
		f.issued++
		id := fmt.Sprintf("database/creds/ro/lease%d", f.issued)
		f.issuedAt[id] = time.Now()
		reply(map[string]any{"lease_id": id, "lease_duration": fakeLease, "renewable": true,
			"data": map[string]any{"username": fmt.Sprintf("user%d", f.issued), "password": "pw"}})
	case "/v1/sys/leases/renew":
		var body struct {
			LeaseID   string `json:"lease_id"`
			Increment int    `json:"increment"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		at, ok := f.issuedAt[body.LeaseID]
		if !ok {
			w.WriteHeader(http.StatusBadRequest)
			reply(map[string]any{"errors": []string{"lease not found"}})
			return
		}
		f.renewals++
		left := fakeMaxTTL - int(time.Since(at).Seconds())
		reply(map[string]any{"lease_id": body.LeaseID, "renewable": true, "lease_duration": max(min(body.Increment, left), 0)})
	case "/v1/kv/app":
		if r.Header.Get("X-Vault-Token") != "fake-token" {
			w.WriteHeader(http.StatusForbidden)
			reply(map[string]any{"errors": []string{"permission denied"}})
			return
		}
		reply(map[string]any{"data": map[string]any{"v": f.kvValue}})
	default:
		w.WriteHeader(http.StatusNotFound)
		reply(map[string]any{"errors": []string{}})
	}
}

func (f *fakeServer) counts() (issued, renewals int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.issued, f.renewals
}

// chanEvents is an EventSource fed by the test.
type chanEvents chan Event

func (c chanEvents) Subscribe(ctx context.Context, _ string, ch chan<- Event) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-c:
			ch <- ev
		}
	}
}

func startAgent(t *testing.T, opts Options) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v after cancel", err)
		}
	})
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > within {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
	}
}

// TestLeasedSecretRenewedThenRefetched: a dynamic credential is renewed
// at two thirds of its lease and fetched anew before its max TTL.
func TestLeasedSecretRenewedThenRefetched(t *testing.T) {
	f := &fakeServer{issuedAt: map[string]time.Time{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "jwt"), []byte("eyJ.fake.jwt"), 0o600)
	out := filepath.Join(dir, "db")
	cfg := fmt.Sprintf(`
coffer { address = %q }
auto_auth {
  method "kubernetes" { config = { role = "web", token_path = %q } }
}
template {
  contents    = "{{ with secret \"database/creds/ro\" }}{{ .Data.username }}{{ end }}"
  destination = %q
}
`, srv.URL, filepath.Join(dir, "jwt"), out)
	start := time.Now()
	startAgent(t, Options{ConfigHCL: []byte(cfg), Events: NoEvents{}})
	waitFor(t, 5*time.Second, "first credential", func() bool { b, _ := os.ReadFile(out); return string(b) == "user1" })
	waitFor(t, 10*time.Second, "a renewal", func() bool { _, r := f.counts(); return r >= 1 })
	waitFor(t, 10*time.Second, "second credential", func() bool { b, _ := os.ReadFile(out); return string(b) == "user2" })
	if took := time.Since(start); took >= fakeMaxTTL*time.Second {
		t.Errorf("re-fetched after %v, not before the max TTL of %ds", took, fakeMaxTTL)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.logins) == 0 || f.logins[0]["jwt"] != "eyJ.fake.jwt" || f.logins[0]["role"] != "web" {
		t.Errorf("kubernetes login body = %v", f.logins)
	}
}

// TestKubernetesWrongRoleRetries: a refused login is retried with
// backoff and logged with the server's reason.
func TestKubernetesWrongRoleRetries(t *testing.T) {
	f := &fakeServer{issuedAt: map[string]time.Time{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "jwt"), []byte("eyJ.fake.jwt"), 0o600)
	cfg := fmt.Sprintf(`
coffer { address = %q }
auto_auth {
  method "kubernetes" { config = { role = "nope", token_path = %q } }
}
`, srv.URL, filepath.Join(dir, "jwt"))
	var logs strings.Builder
	var mu sync.Mutex
	ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
	defer cancel()
	err := Run(ctx, Options{ConfigHCL: []byte(cfg), Once: true, MinBackoff: 50 * time.Millisecond, Events: NoEvents{},
		Logger: newTestLogger(&logs, &mu)})
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), "authentication failed, retrying"); n < 3 {
		t.Errorf("%d retries logged, want at least 3:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `invalid role name`) || strings.Contains(logs.String(), "eyJ.fake.jwt") {
		t.Errorf("logs do not say why, or contain the JWT:\n%s", logs.String())
	}
}

// TestEventTriggersReRender: an event naming a secret's path re-reads
// it at once although the poll interval is an hour; an event for
// another path does not.
func TestEventTriggersReRender(t *testing.T) {
	f := &fakeServer{issuedAt: map[string]time.Time{}, kvValue: "one"}
	srv := httptest.NewServer(f)
	defer srv.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "jwt"), []byte("j"), 0o600)
	out := filepath.Join(dir, "v")
	cfg := fmt.Sprintf(`
coffer { address = %q }
auto_auth {
  method "kubernetes" { config = { role = "web", token_path = %q } }
}
template {
  contents    = "{{ with secret \"kv/app\" }}{{ .Data.v }}{{ end }}"
  destination = %q
}
template_config { static_secret_render_interval = "1h" }
`, srv.URL, filepath.Join(dir, "jwt"), out)
	evs := make(chanEvents)
	startAgent(t, Options{ConfigHCL: []byte(cfg), Events: evs})
	waitFor(t, 5*time.Second, "first render", func() bool { b, _ := os.ReadFile(out); return string(b) == "one" })
	f.mu.Lock()
	f.kvValue = "two"
	f.mu.Unlock()
	evs <- Event{Type: "kv-v1/write", Path: "kv/other"}
	time.Sleep(200 * time.Millisecond)
	if b, _ := os.ReadFile(out); string(b) != "one" {
		t.Fatalf("an event for another path re-rendered: %q", b)
	}
	start := time.Now()
	evs <- Event{Type: "kv-v1/write", Path: "kv/app"}
	waitFor(t, 5*time.Second, "re-render after the event", func() bool { b, _ := os.ReadFile(out); return string(b) == "two" })
	t.Logf("event to file: %v", time.Since(start))
}

// fakeWebSocket is a minimal WebSocket server side (RFC 6455) for the
// client test: it sends a ping, a fragmented CloudEvent and a close.
func fakeWebSocket(t *testing.T, pongs chan<- string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/sys/events/subscribe/*" || r.URL.Query().Get("json") != "true" || r.Header.Get("X-Vault-Token") != "tok" {
			http.Error(w, `{"errors":["bad request"]}`, http.StatusBadRequest)
			return
		}
		sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", base64.StdEncoding.EncodeToString(sum[:]))
		msg := `{"specversion":"1.0","type":"*","data":{"event_type":"kv-v2/data-write","event":{"metadata":{"path":"secret/data/app"}}}}`
		rw.Write([]byte{0x89, 2, 'h', 'i'}) // ping
		rw.Write(append([]byte{0x01, byte(20)}, msg[:20]...))
		rest := msg[20:]
		rw.Write(append([]byte{0x80, 126, byte(len(rest) >> 8), byte(len(rest))}, rest...))
		rw.Flush()
		// Read the client's pong (masked).
		br := bufio.NewReader(conn)
		var h [6]byte
		if _, err := io.ReadFull(br, h[:]); err == nil {
			p := make([]byte, h[1]&0x7f)
			io.ReadFull(br, p)
			for i := range p {
				p[i] ^= h[2+i%4]
			}
			pongs <- fmt.Sprintf("%x:%s", h[0], p)
		}
		rw.Write([]byte{0x88, 0})
		rw.Flush()
	}
}

func TestWebSocketEvents(t *testing.T) {
	pongs := make(chan string, 1)
	srv := httptest.NewServer(fakeWebSocket(t, pongs))
	defer srv.Close()
	ch := make(chan Event, 4)
	err := WebSocketEvents{Address: srv.URL}.Subscribe(context.Background(), "tok", ch)
	if !errors.Is(err, io.EOF) {
		t.Errorf("Subscribe = %v, want EOF after the close frame", err)
	}
	if got := <-pongs; got != "8a:hi" {
		t.Errorf("pong = %q, want 8a:hi", got)
	}
	select {
	case ev := <-ch:
		if ev.Path != "secret/data/app" || ev.Type != "kv-v2/data-write" {
			t.Errorf("event = %+v", ev)
		}
	default:
		t.Error("no event delivered")
	}
	if err := (WebSocketEvents{Address: srv.URL}).Subscribe(context.Background(), "wrong", ch); err == nil || !strings.Contains(err.Error(), "bad request") {
		t.Errorf("refused subscription: err = %v", err)
	}
	nf := httptest.NewServer(http.NotFoundHandler())
	defer nf.Close()
	if err := (WebSocketEvents{Address: nf.URL}).Subscribe(context.Background(), "tok", ch); !errors.Is(err, ErrEventsUnsupported) {
		t.Errorf("404: err = %v, want ErrEventsUnsupported", err)
	}
}

func FuzzReadMessage(f *testing.F) {
	f.Add([]byte{0x81, 2, 'h', 'i'})
	f.Add([]byte{0x01, 1, 'a', 0x80, 1, 'b'})
	f.Add([]byte{0x81, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		msg, err := readMessage(bufio.NewReader(strings.NewReader(string(in))), io.Discard)
		if err == nil && len(msg) > maxMessage {
			t.Fatal("message over the limit accepted")
		}
	})
}
