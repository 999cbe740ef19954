package kv

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// clock is a settable clock for tests.
type clock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 11, 28, 0, 2, 19, 244409874, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond) // every call moves on, like a real clock
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	b   *V2
	s   logical.Storage
	clk *clock
}

// withCache runs the fixtures' engines with their read cache (the active
// node's configuration); the tests run both ways (TestMain).
var withCache bool

func TestMain(m *testing.M) {
	if code := m.Run(); code != 0 {
		os.Exit(code)
	}
	withCache = true
	os.Exit(m.Run())
}

func newV2(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{s: newTestStorage(t), clk: newClock()}
	be, err := Factory(context.Background(), logical.BackendConfig{
		Storage: f.s, MountPoint: "secret/", Options: map[string]string{"version": "2"}, Now: f.clk.Now,
		Cache: withCache,
	})
	if err != nil {
		t.Fatalf("Factory: %v", err)
	}
	f.b = be.(*V2)
	return f
}

// call runs one request; path may carry a query ("data/a?version=1").
func call(t testing.TB, b logical.Backend, op logical.Operation, path, body string) (*logical.Response, error) {
	t.Helper()
	req := &logical.Request{Operation: op, Path: path, Body: []byte(body), MountPoint: "secret/"}
	if u, err := url.Parse(path); err == nil && u.RawQuery != "" {
		req.Path, req.Query = u.Path, u.Query()
	}
	return b.HandleRequest(context.Background(), req)
}

// must runs a request that has to succeed.
func must(t testing.TB, b logical.Backend, op logical.Operation, path, body string) *logical.Response {
	t.Helper()
	resp, err := call(t, b, op, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", op, path, err)
	}
	return resp
}

// wantCode checks that err is a *logical.Error with code.
func wantCode(t testing.TB, err error, code logical.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want code %d", code)
	}
	var le *logical.Error
	if !errors.As(err, &le) || le.Code != code {
		t.Fatalf("got error %v (code %d), want code %d", err, logical.CodeOf(err), code)
	}
}

// wire is resp.Data as a client sees it: marshalled and decoded again.
func wire(t testing.TB, resp *logical.Response) map[string]any {
	t.Helper()
	if resp == nil {
		t.Fatal("got a nil response")
	}
	raw, err := json.Marshal(resp.Data)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	return m
}

// goldenData returns the "data" of a golden response.
func goldenData(t testing.TB, name string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "golden", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	return env.Data
}

var timeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$`)

// untime replaces every non-empty RFC 3339 UTC time with "TIME", so that
// responses compare equal apart from when they were made.
func untime(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = untime(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = untime(x)
		}
		return out
	case string:
		if timeRE.MatchString(v) {
			return "TIME"
		}
	}
	return v
}

// matchGolden checks that resp's data equals the golden one's, field by
// field, with the same JSON types and nulls, times aside.
func matchGolden(t testing.TB, name string, resp *logical.Response) {
	t.Helper()
	got, want := untime(wire(t, resp)), untime(goldenData(t, name))
	if !reflect.DeepEqual(got, want) {
		gj, _ := json.MarshalIndent(got, "", " ")
		wj, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("%s: data differs\ngot:  %s\nwant: %s", name, gj, wj)
	}
}
