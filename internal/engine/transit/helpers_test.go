package transit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/barrier/barriertest"
	"github.com/coffer-dev/coffer/internal/logical"
)

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex // guards following
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newStorage returns a mount view over a real, unsealed barrier over the
// in-memory physical backend.
func newStorage(t testing.TB) logical.Storage {
	t.Helper()
	return logical.NewView(barriertest.New(t), "logical/transit/")
}

type testEnv struct {
	t       testing.TB
	b       *Backend
	storage logical.Storage
	clock   *fakeClock
}

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	s := newStorage(t)
	clock := newFakeClock()
	b, err := New(Config{Storage: s, Now: clock.Now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{t: t, b: b, storage: s, clock: clock}
}

// reopen returns a new Backend over the same storage, with a cold cache.
func (e *testEnv) reopen() *Backend {
	b, err := Factory(context.Background(), logical.BackendConfig{
		Storage: e.storage, Now: e.clock.Now, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return b.(*Backend)
}

// call runs one request and returns its data as the client would see it
// (after a JSON round trip), or the error.
func call(b *Backend, op logical.Operation, path string, body any) (map[string]any, error) {
	var raw []byte
	switch v := body.(type) {
	case nil:
	case string:
		raw = []byte(v)
	default:
		var err error
		if raw, err = json.Marshal(v); err != nil {
			panic(err)
		}
	}
	resp, err := b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Body: raw})
	if err != nil {
		return nil, err
	}
	if resp == nil {
		return nil, nil
	}
	j, err := json.Marshal(resp.Data)
	if err != nil {
		panic(err)
	}
	var out map[string]any
	if err := json.Unmarshal(j, &out); err != nil {
		panic(err)
	}
	return out, nil
}

func (e *testEnv) do(op logical.Operation, path string, body any) map[string]any {
	e.t.Helper()
	d, err := call(e.b, op, path, body)
	if err != nil {
		e.t.Fatalf("%s %s: %v", op, path, err)
	}
	return d
}

func (e *testEnv) write(path string, body any) map[string]any {
	e.t.Helper()
	return e.do(logical.UpdateOperation, path, body)
}

// fail runs a request that must fail with code and message.
func (e *testEnv) fail(op logical.Operation, path string, body any, code logical.Code, msg string) {
	e.t.Helper()
	_, err := call(e.b, op, path, body)
	if err == nil {
		e.t.Fatalf("%s %s succeeded, want error %q", op, path, msg)
	}
	var le *logical.Error
	if !errors.As(err, &le) {
		e.t.Fatalf("%s %s: got non-API error %v, want %q", op, path, err, msg)
	}
	if le.Code != code || (msg != "" && le.Message != msg) {
		e.t.Fatalf("%s %s: got (%d) %q, want (%d) %q", op, path, le.Code, le.Message, code, msg)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func (e *testEnv) encrypt(key, plaintext string, extra map[string]any) string {
	e.t.Helper()
	body := map[string]any{"plaintext": b64(plaintext)}
	for k, v := range extra {
		body[k] = v
	}
	return e.write("encrypt/"+key, body)["ciphertext"].(string)
}

func (e *testEnv) decrypt(key, ct string, extra map[string]any) string {
	e.t.Helper()
	body := map[string]any{"ciphertext": ct}
	for k, v := range extra {
		body[k] = v
	}
	pt, err := base64.StdEncoding.DecodeString(e.write("decrypt/"+key, body)["plaintext"].(string))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(pt)
}
