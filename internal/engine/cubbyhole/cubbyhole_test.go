package cubbyhole

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/coffer-dev/coffer/internal/barrier/barriertest"
	"github.com/coffer-dev/coffer/internal/logical"
)

// newStorage returns a view of a real, unsealed barrier, as the core
// gives the cubbyhole mount.
func newStorage(t *testing.T) logical.Storage {
	t.Helper()
	return logical.NewView(barriertest.New(t), "logical/cubbyhole-test/")
}

func newBackend(t *testing.T) (*Backend, logical.Storage) {
	t.Helper()
	s := newStorage(t)
	be, err := Factory(context.Background(), logical.BackendConfig{Storage: s, MountPoint: "cubbyhole/"})
	if err != nil {
		t.Fatal(err)
	}
	return be.(*Backend), s
}

func call(b *Backend, id string, op logical.Operation, path, body string) (*logical.Response, error) {
	req := &logical.Request{Operation: op, Path: path, Body: []byte(body)}
	if id != "-" {
		req.Caller = &logical.Caller{CubbyholeID: id}
	}
	return b.HandleRequest(context.Background(), req)
}

func mustCall(t *testing.T, b *Backend, id string, op logical.Operation, path, body string) *logical.Response {
	t.Helper()
	resp, err := call(b, id, op, path, body)
	if err != nil {
		t.Fatalf("%s %s as %q: %v", op, path, id, err)
	}
	return resp
}

func dataJSON(t *testing.T, resp *logical.Response) string {
	t.Helper()
	if resp == nil {
		return "<nil>"
	}
	raw, err := json.Marshal(resp.Data)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func TestCubbyholesArePrivate(t *testing.T) {
	b, _ := newBackend(t)
	mustCall(t, b, "alice", logical.CreateOperation, "creds/db", `{"password":"a-secret"}`)
	mustCall(t, b, "bob", logical.CreateOperation, "creds/db", `{"password":"b-secret"}`)

	if got, want := dataJSON(t, mustCall(t, b, "alice", logical.ReadOperation, "creds/db", "")), `{"password":"a-secret"}`; got != want {
		t.Errorf("alice reads %s, want %s", got, want)
	}
	if got, want := dataJSON(t, mustCall(t, b, "bob", logical.ReadOperation, "creds/db", "")), `{"password":"b-secret"}`; got != want {
		t.Errorf("bob reads %s, want %s", got, want)
	}
	if resp := mustCall(t, b, "carol", logical.ReadOperation, "creds/db", ""); resp != nil {
		t.Errorf("carol reads %s, want nothing", dataJSON(t, resp))
	}
	_, err := call(b, "carol", logical.ListOperation, "", "")
	if logical.CodeOf(err) != logical.NotFound {
		t.Errorf("carol's LIST: %v, want NotFound", err)
	}
	resp := mustCall(t, b, "alice", logical.ListOperation, "", "")
	if got := resp.Data.(map[string]any)["keys"]; !reflect.DeepEqual(got, []string{"creds/"}) {
		t.Errorf("alice lists %v, want [creds/]", got)
	}

	// Bob deleting his entry leaves Alice's alone.
	mustCall(t, b, "bob", logical.DeleteOperation, "creds/db", "")
	if resp := mustCall(t, b, "alice", logical.ReadOperation, "creds/db", ""); resp == nil {
		t.Error("bob's delete removed alice's entry")
	}

	ok, exists, err := b.Exists(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "creds/db", Caller: &logical.Caller{CubbyholeID: "alice"}})
	if err != nil || !ok || !exists {
		t.Errorf("Exists for alice = %v, %v, %v; want true, true, nil", ok, exists, err)
	}
	ok, exists, err = b.Exists(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "creds/db", Caller: &logical.Caller{CubbyholeID: "bob"}})
	if err != nil || !ok || exists {
		t.Errorf("Exists for bob = %v, %v, %v; want true, false, nil", ok, exists, err)
	}
}

func TestRefusesRequestsWithoutCubbyhole(t *testing.T) {
	b, _ := newBackend(t)
	for name, id := range map[string]string{
		"no caller":             "-",
		"an empty cubbyhole ID": "",
		"an ID with a slash":    "alice/../bob",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := call(b, id, logical.ReadOperation, "x", "")
			if logical.CodeOf(err) != logical.PermissionDenied {
				t.Errorf("got %v, want PermissionDenied", err)
			}
			_, _, err = b.Exists(context.Background(), &logical.Request{Path: "x"})
			if logical.CodeOf(err) != logical.PermissionDenied {
				t.Errorf("Exists: got %v, want PermissionDenied", err)
			}
		})
	}
}

func TestBadWrites(t *testing.T) {
	b, _ := newBackend(t)
	for name, tc := range map[string]struct{ path, body string }{
		"a non-object body":  {"k", `"secret-value"`},
		"an empty object":    {"k", `{}`},
		"an empty path":      {"", `{"a":"b"}`},
		"a path ending in /": {"k/", `{"a":"b"}`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := call(b, "alice", logical.UpdateOperation, tc.path, tc.body)
			if logical.CodeOf(err) != logical.Invalid {
				t.Errorf("got %v, want Invalid", err)
			}
			if err != nil && strings.Contains(err.Error(), "secret-value") {
				t.Errorf("error %q quotes the body", err)
			}
		})
	}
}

func TestDestroy(t *testing.T) {
	b, s := newBackend(t)
	// Enough entries, some nested, to need more than one batch.
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := fmt.Sprintf("a/%c/%d", 'a'+i%26, i)
			mustCall(t, b, "alice", logical.CreateOperation, path, `{"v":"x"}`)
		}()
	}
	wg.Wait()
	mustCall(t, b, "alice", logical.CreateOperation, "top", `{"v":"x"}`)
	mustCall(t, b, "bob", logical.CreateOperation, "keep", `{"v":"y"}`)

	if err := Destroy(context.Background(), s, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := call(b, "alice", logical.ListOperation, "", ""); logical.CodeOf(err) != logical.NotFound {
		t.Errorf("alice's cubbyhole after Destroy: LIST gives %v, want NotFound", err)
	}
	if resp := mustCall(t, b, "alice", logical.ReadOperation, "top", ""); resp != nil {
		t.Error("an entry survived Destroy")
	}
	if resp := mustCall(t, b, "bob", logical.ReadOperation, "keep", ""); resp == nil {
		t.Error("Destroy of alice removed bob's entry")
	}
	// Destroying again, or a cubbyhole that never existed, is fine.
	for _, id := range []string{"alice", "nobody"} {
		if err := Destroy(context.Background(), s, id); err != nil {
			t.Errorf("Destroy(%q) = %v", id, err)
		}
	}
	for _, id := range []string{"", "a/b"} {
		if err := Destroy(context.Background(), s, id); err == nil {
			t.Errorf("Destroy(%q) accepted", id)
		}
	}
}

func TestFactoryNeedsStorage(t *testing.T) {
	if _, err := Factory(context.Background(), logical.BackendConfig{}); err == nil {
		t.Error("Factory without storage succeeded")
	}
}
