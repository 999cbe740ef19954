package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/barrier"
	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/policy"
	"github.com/coffer-dev/coffer/internal/storage/inmem"
)

// goldenTime is the "modified" time in testdata/*.json.
var goldenTime = time.Date(2026, 11, 28, 0, 2, 27, 475228216, time.UTC)

// newStorage returns a real, unsealed barrier over the in-memory backend,
// viewed at the prefix the core uses for policies.
func newStorage(t testing.TB) logical.Storage {
	t.Helper()
	b, err := barrier.New(barrier.Config{Backend: inmem.New()})
	if err != nil {
		t.Fatal(err)
	}
	key, err := barrier.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := b.Initialize(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := b.Unseal(ctx, key); err != nil {
		t.Fatal(err)
	}
	return logical.NewView(b, "sys/policy/")
}

func newStore(t testing.TB, s logical.Storage) *Store {
	t.Helper()
	st, err := New(Config{Storage: s, Now: func() time.Time { return goldenTime }})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func do(t testing.TB, s *Store, op logical.Operation, path string, body any) (*logical.Response, error) {
	t.Helper()
	req := &logical.Request{Operation: op, Path: path}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		req.Body = b
	}
	return s.HandleRequest(context.Background(), req)
}

func mustDo(t testing.TB, s *Store, op logical.Operation, path string, body any) *logical.Response {
	t.Helper()
	resp, err := do(t, s, op, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", op, path, err)
	}
	return resp
}

// goldenData returns the "data" of a golden response, as generic JSON.
func goldenData(t *testing.T, file string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	var env struct{ Data map[string]any }
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	return env.Data
}

// asJSON returns v as generic JSON, as a client would decode it.
func asJSON(t *testing.T, v any) map[string]any {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// goldenText is the policy written in testdata/policy-write.req.txt.
const goldenText = "path \"secret/data/myapp\" { capabilities = [\"read\"] }\npath \"transit/encrypt/sops\" { capabilities = [\"update\"] }"

func TestGoldenResponses(t *testing.T) {
	s := newStore(t, newStorage(t))
	resp := mustDo(t, s, logical.UpdateOperation, "policies/acl/app-read", map[string]string{"policy": goldenText})
	if resp != nil {
		t.Errorf("write returned %+v, want nil (204)", resp)
	}
	for name, tc := range map[string]struct {
		op     logical.Operation
		path   string
		golden string
	}{
		"LIST sys/policies/acl":          {logical.ListOperation, "policies/acl", "policy-list.json"},
		"GET sys/policies/acl/app-read":  {logical.ReadOperation, "policies/acl/app-read", "policy-read.json"},
		"GET sys/policy/app-read":        {logical.ReadOperation, "policy/app-read", "sys-policy-legacy-read.json"},
		"GET sys/policy/APP-READ (case)": {logical.ReadOperation, "policy/APP-READ", "sys-policy-legacy-read.json"},
	} {
		t.Run(name, func(t *testing.T) {
			resp := mustDo(t, s, tc.op, tc.path, nil)
			if resp == nil {
				t.Fatal("nil response")
			}
			got, want := asJSON(t, resp.Data), goldenData(t, tc.golden)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("data = %v\nwant   %v", got, want)
			}
		})
	}
}

func TestLegacyList(t *testing.T) {
	s := newStore(t, newStorage(t))
	if err := s.Put(context.Background(), "b", `path "x" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	got := asJSON(t, mustDo(t, s, logical.ReadOperation, "policy", nil).Data)
	want := map[string]any{"keys": []any{"b", "default", "root"}, "policies": []any{"b", "default", "root"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("GET sys/policy = %v, want %v", got, want)
	}
}

func TestWriteErrors(t *testing.T) {
	s := newStore(t, newStorage(t))
	for name, tc := range map[string]struct {
		path     string
		body     any
		code     logical.Code
		contains string
	}{
		"bad HCL names the position": {
			"policies/acl/x", map[string]string{"policy": "path \"a\" {\n  capabilities = [\"reed\"]\n}"},
			logical.Invalid, `failed to parse policy: 2:18: path "a": invalid capability "reed"`,
		},
		"unsupported parameters are refused": {
			"policies/acl/x", map[string]string{"policy": "path \"a\" {\n  allowed_parameters = {}\n}"},
			logical.Invalid, "allowed_parameters is not supported yet",
		},
		"empty policy": {"policies/acl/x", map[string]string{"policy": ""}, logical.Invalid, "not supplied or empty"},
		"no policy":    {"policies/acl/x", map[string]string{}, logical.Invalid, "not supplied or empty"},
		"rules is only read on the legacy path": {
			"policies/acl/x", map[string]string{"rules": `path "a" {}`}, logical.Invalid, "not supplied or empty",
		},
		"root cannot be written":          {"policies/acl/root", map[string]string{"policy": `path "a" {}`}, logical.Invalid, `cannot update "root" policy`},
		"root cannot be written (legacy)": {"policy/Root", map[string]string{"rules": `path "a" {}`}, logical.Invalid, `cannot update "root" policy`},
		"bad name":                        {"policies/acl/a b", map[string]string{"policy": `path "a" {}`}, logical.Invalid, "invalid policy name"},
		"name with a slash":               {"policies/acl/a/b", map[string]string{"policy": `path "a" {}`}, logical.Invalid, "invalid policy name"},
		"policy of the wrong type":        {"policies/acl/x", map[string]any{"policy": 5}, logical.Invalid, `"policy"`},
		"ttl is not supported":            {"policies/acl/x", map[string]any{"policy": `path "a" {}`, "ttl": "1h"}, logical.Invalid, "not supported"},
		"identity templates are not supported": {
			"policies/acl/x", map[string]any{"policy": `path "a" {}`, "allow_slashes_in_identity_templates": true}, logical.Invalid, "not supported",
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := do(t, s, logical.UpdateOperation, tc.path, tc.body)
			if logical.CodeOf(err) != tc.code || err == nil || !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error = %v (code %v), want code %v containing %q", err, logical.CodeOf(err), tc.code, tc.contains)
			}
		})
	}
	names, err := s.List(context.Background())
	if err != nil || !slices.Equal(names, []string{"default", "root"}) {
		t.Errorf("after failed writes List = %v, %v; want [default root]", names, err)
	}
}

func TestBuiltins(t *testing.T) {
	ctx := context.Background()
	st := newStorage(t)
	s := newStore(t, st)

	resp := mustDo(t, s, logical.ReadOperation, "policies/acl/default", nil)
	if got := resp.Data.(map[string]any)["policy"]; got != policy.DefaultPolicyText {
		t.Errorf("default policy text = %q, want the built-in", got)
	}
	resp = mustDo(t, s, logical.ReadOperation, "policies/acl/root", nil)
	if got := resp.Data.(map[string]any)["policy"]; got != "" {
		t.Errorf("root policy text = %q, want empty", got)
	}
	if p, err := s.Get(ctx, "root"); err != nil || !p.Equal(policy.RootPolicy()) {
		t.Errorf("Get(root) = %v, %v", p, err)
	}

	for _, name := range []string{"root", "default", "DEFAULT"} {
		if err := s.Delete(ctx, name); logical.CodeOf(err) != logical.Invalid {
			t.Errorf("Delete(%q) = %v, want Invalid", name, err)
		}
	}
	if _, err := do(t, s, logical.DeleteOperation, "policy/root", nil); logical.CodeOf(err) != logical.Invalid {
		t.Errorf("DELETE sys/policy/root = %v, want Invalid", err)
	}

	// default can be changed, and the change survives a new Store.
	const text = `path "secret/*" { capabilities = ["read"] }`
	if err := s.Put(ctx, "default", text); err != nil {
		t.Fatal(err)
	}
	s2 := newStore(t, st)
	p, err := s2.Get(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if want := mustParse(t, "default", text); !p.Equal(want) {
		t.Errorf("Get(default) after Put = %+v, want %+v", p.Rules, want.Rules)
	}
	acl, err := s2.ACL(ctx, []string{"default"})
	if err != nil {
		t.Fatal(err)
	}
	if !acl.Allowed(policy.Read, "secret/x") || acl.Allowed(policy.Read, "auth/token/lookup-self") {
		t.Error("the modified default policy is not the one enforced")
	}
}

func mustParse(t testing.TB, name, src string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse(name, src)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGetPutDeleteList(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, newStorage(t))
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, "bad name"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(invalid name) = %v, want ErrNotFound", err)
	}
	if resp := mustDo(t, s, logical.ReadOperation, "policies/acl/nope", nil); resp != nil {
		t.Errorf("read of a missing policy = %+v, want nil (404)", resp)
	}
	if err := s.Put(ctx, " Mixed-Case ", `path "a" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "mixed-case"); err != nil {
		t.Errorf("Get(mixed-case) = %v", err)
	}
	if err := s.Put(ctx, "app.v2@team:x", `path "a" {}`); err != nil {
		t.Fatal(err)
	}
	names, err := s.List(ctx)
	if want := []string{"app.v2@team:x", "default", "mixed-case", "root"}; err != nil || !slices.Equal(names, want) {
		t.Errorf("List = %v, %v; want %v", names, err, want)
	}
	resp := mustDo(t, s, logical.ListOperation, "policies/acl/m", nil)
	if got := asJSON(t, resp.Data)["keys"]; !reflect.DeepEqual(got, []any{"mixed-case"}) {
		t.Errorf("LIST policies/acl/m = %v, want [mixed-case]", got)
	}
	if resp := mustDo(t, s, logical.DeleteOperation, "policies/acl/MIXED-CASE", nil); resp != nil {
		t.Errorf("delete returned %+v", resp)
	}
	if _, err := s.Get(ctx, "mixed-case"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "mixed-case"); err != nil {
		t.Errorf("second Delete = %v, want nil", err)
	}
}

func TestLegacyWriteAndBase64(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, newStorage(t))
	mustDo(t, s, logical.UpdateOperation, "policy/legacy", map[string]string{"rules": `path "a" { capabilities = ["read"] }`})
	mustDo(t, s, logical.UpdateOperation, "policy/legacy2", map[string]string{"policy": `path "b" { capabilities = ["read"] }`})
	text := `path "c" { capabilities = ["list"] }`
	mustDo(t, s, logical.UpdateOperation, "policies/acl/b64", map[string]string{"policy": base64.StdEncoding.EncodeToString([]byte(text))})
	for name, path := range map[string]string{"legacy": "a", "legacy2": "b", "b64": "c"} {
		p, err := s.Get(ctx, name)
		if err != nil || len(p.Rules) != 1 || p.Rules[0].Path != path {
			t.Errorf("Get(%q) = %+v, %v; want one rule on %q", name, p, err, path)
		}
	}
	resp := mustDo(t, s, logical.ReadOperation, "policies/acl/b64", nil)
	if got := resp.Data.(map[string]any)["policy"]; got != text {
		t.Errorf("base64 policy is stored as %q, want the decoded text", got)
	}
}

func TestCheckAndSet(t *testing.T) {
	s := newStore(t, newStorage(t))
	const text = `path "a" { capabilities = ["read"] }`
	version := func() any {
		return mustDo(t, s, logical.ReadOperation, "policies/acl/p", nil).Data.(map[string]any)["version"]
	}
	steps := []struct {
		name string
		body map[string]any
		code logical.Code // Internal: no error
	}{
		{"create with cas -1", map[string]any{"policy": text, "cas": -1, "cas_required": true}, logical.Internal},
		{"cas -1 on an existing policy", map[string]any{"policy": text, "cas": -1}, logical.Conflict},
		{"cas required but missing", map[string]any{"policy": text}, logical.Conflict},
		{"wrong version", map[string]any{"policy": text, "cas": "7"}, logical.Conflict},
		{"right version, cas no longer required", map[string]any{"policy": text, "cas": 1}, logical.Internal},
		{"no cas needed now", map[string]any{"policy": text}, logical.Internal},
	}
	for _, st := range steps {
		_, err := do(t, s, logical.UpdateOperation, "policies/acl/p", st.body)
		if st.code == logical.Internal && err != nil || st.code != logical.Internal && logical.CodeOf(err) != st.code {
			t.Fatalf("%s: error = %v, want code %v", st.name, err, st.code)
		}
	}
	if v := version(); v != 3 {
		t.Errorf("version = %v, want 3", v)
	}
	if _, err := do(t, s, logical.UpdateOperation, "policies/acl/new", map[string]any{"policy": text, "cas": 0}); err != nil {
		t.Errorf("create with cas 0: %v", err)
	}
}

func TestPatch(t *testing.T) {
	s := newStore(t, newStorage(t))
	if _, err := do(t, s, logical.PatchOperation, "policies/acl/p", map[string]any{"policy": `path "a" {}`}); logical.CodeOf(err) != logical.NotFound {
		t.Errorf("patch of a missing policy = %v, want NotFound", err)
	}
	mustDo(t, s, logical.UpdateOperation, "policies/acl/p", map[string]any{"policy": `path "a" {}`, "cas_required": true, "cas": 0})
	// Patch keeps the text and cas_required it is not given.
	if _, err := do(t, s, logical.PatchOperation, "policies/acl/p", map[string]any{}); logical.CodeOf(err) != logical.Conflict {
		t.Errorf("patch without cas = %v, want Conflict (cas_required kept)", err)
	}
	mustDo(t, s, logical.PatchOperation, "policies/acl/p", map[string]any{"cas": 1})
	data := mustDo(t, s, logical.ReadOperation, "policies/acl/p", nil).Data.(map[string]any)
	if data["policy"] != `path "a" {}` || data["cas_required"] != true || data["version"] != 2 {
		t.Errorf("after patch: %v", data)
	}
}

func TestACL(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, newStorage(t))
	if err := s.Put(ctx, "reader", `path "secret/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	acl, err := s.ACL(ctx, []string{"Reader", "no-such-policy", "bad name", "default"})
	if err != nil {
		t.Fatal(err)
	}
	if !acl.Allowed(policy.Read, "secret/x") || !acl.Allowed(policy.Read, "auth/token/lookup-self") || acl.Allowed(policy.Update, "secret/x") {
		t.Errorf("ACL capabilities on secret/x = %v", acl.Capabilities("secret/x"))
	}
	again, _ := s.ACL(ctx, []string{"default", " READER", "no-such-policy", "reader"})
	if again != acl {
		t.Error("the same set of names did not hit the cache")
	}

	// A write invalidates the compiled ACLs.
	if err := s.Put(ctx, "reader", `path "secret/*" { capabilities = ["update"] }`); err != nil {
		t.Fatal(err)
	}
	acl, _ = s.ACL(ctx, []string{"reader"})
	if acl.Allowed(policy.Read, "secret/x") || !acl.Allowed(policy.Update, "secret/x") {
		t.Errorf("after the write, capabilities = %v", acl.Capabilities("secret/x"))
	}
	// A policy written after being cached as missing is seen.
	if acl, _ := s.ACL(ctx, []string{"late"}); acl.Allowed(policy.Read, "late/x") {
		t.Fatal("missing policy grants")
	}
	if err := s.Put(ctx, "late", `path "late/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	if acl, _ := s.ACL(ctx, []string{"late"}); !acl.Allowed(policy.Read, "late/x") {
		t.Error("a policy created after a miss is not enforced")
	}
	if err := s.Delete(ctx, "late"); err != nil {
		t.Fatal(err)
	}
	if acl, _ := s.ACL(ctx, []string{"late"}); acl.Allowed(policy.Read, "late/x") {
		t.Error("a deleted policy is still enforced")
	}

	if acl, _ := s.ACL(ctx, []string{"root"}); !acl.IsRoot() {
		t.Error("ACL([root]) is not root")
	}
	if acl, _ := s.ACL(ctx, nil); acl.Allowed(policy.Read, "secret/x") || acl.IsRoot() {
		t.Error("ACL(nil) grants something")
	}
}

func TestCorruptPolicyFailsClosed(t *testing.T) {
	ctx := context.Background()
	st := newStorage(t)
	if err := st.Put(ctx, "broken", []byte(`{"version":1,"raw":"path \"a\" { capabilities = [\"fly\"] }"}`)); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "garbage", []byte(`not json`)); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, st)
	for _, name := range []string{"broken", "garbage"} {
		if _, err := s.ACL(ctx, []string{"default", name}); err == nil {
			t.Errorf("ACL with the unreadable policy %q succeeded", name)
		}
		if _, err := s.Get(ctx, name); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) = %v, want a read error", name, err)
		}
	}
}

func TestUnsupported(t *testing.T) {
	s := newStore(t, newStorage(t))
	for name, tc := range map[string]struct {
		op   logical.Operation
		path string
		code logical.Code
	}{
		"GET policies/acl":  {logical.ReadOperation, "policies/acl", logical.Unsupported},
		"PUT policy":        {logical.UpdateOperation, "policy", logical.Unsupported},
		"unknown path":      {logical.ReadOperation, "policies/rgp/x", logical.NotFound},
		"unknown operation": {"rollback", "policies/acl/x", logical.Unsupported},
		"not a policy path": {logical.ReadOperation, "mounts", logical.NotFound},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := do(t, s, tc.op, tc.path, nil); logical.CodeOf(err) != tc.code || err == nil {
				t.Errorf("error = %v, want code %v", err, tc.code)
			}
		})
	}
}

func TestNewRequiresStorage(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without Storage succeeded")
	}
}

func TestConcurrent(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, newStorage(t))
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 20 {
				text := `path "p/*" { capabilities = ["read"] }`
				if j%2 == 1 {
					text = `path "p/*" { capabilities = ["list"] }`
				}
				if err := s.Put(ctx, "shared", text); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.ACL(ctx, []string{"shared", "default", string(rune('a' + i))}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// The last write wins everywhere, cache included.
	if err := s.Put(ctx, "shared", `path "p/*" { capabilities = ["delete"] }`); err != nil {
		t.Fatal(err)
	}
	acl, err := s.ACL(ctx, []string{"shared"})
	if err != nil || !slices.Equal(acl.Capabilities("p/x"), []string{"delete"}) {
		t.Errorf("after concurrent writes, capabilities = %v, %v", acl.Capabilities("p/x"), err)
	}
}

func TestInvalidate(t *testing.T) {
	ctx := context.Background()
	st := newStorage(t)
	s, other := newStore(t, st), newStore(t, st)
	if err := s.Put(ctx, "p", `path "a" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	if acl, _ := s.ACL(ctx, []string{"p"}); !acl.Allowed(policy.Read, "a") {
		t.Fatal("policy not enforced")
	}
	// Another writer of the same storage (as a replica sees it).
	if err := other.Put(ctx, "p", `path "a" { capabilities = ["list"] }`); err != nil {
		t.Fatal(err)
	}
	s.Invalidate()
	if acl, _ := s.ACL(ctx, []string{"p"}); acl.Allowed(policy.Read, "a") || !acl.Allowed(policy.List, "a") {
		t.Errorf("after Invalidate, capabilities = %v", acl.Capabilities("a"))
	}
}
