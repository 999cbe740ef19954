package token

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/barrier/barriertest"
	"github.com/coffer-dev/coffer/internal/lease"
	"github.com/coffer-dev/coffer/internal/logical"
)

type fixture struct {
	mem    logical.Storage // the whole barrier
	clock  *clock
	leases *lease.Manager
	store  *Store
	root   string // the root token
}

// withoutCache runs the fixtures' store without its entry cache (a
// standby's configuration); the tests run both ways (TestMain).
var withoutCache bool

func TestMain(m *testing.M) {
	if code := m.Run(); code != 0 {
		os.Exit(code)
	}
	withoutCache = true
	os.Exit(m.Run())
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{mem: barriertest.Storage(t), clock: newClock()}
	var ts *Store
	lm, err := lease.New(lease.Config{
		Storage: logical.NewView(f.mem, "sys/expire/"),
		Now:     f.clock.Now,
		Revokers: map[string]func(context.Context, *lease.Lease) error{
			LeaseKind: func(ctx context.Context, l *lease.Lease) error { return ts.RevokeLease(ctx, l) },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts, err = New(Config{Storage: logical.NewView(f.mem, "sys/token/"), Leases: lm, Now: f.clock.Now, Cache: !withoutCache})
	if err != nil {
		t.Fatal(err)
	}
	f.leases, f.store = lm, ts
	f.root, _, err = ts.Create(context.Background(), nil, CreateRequest{Policies: []string{"root"}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// do sends one request to the auth/token backend.
func (f *fixture) do(op logical.Operation, path, token, body string) (*logical.Response, error) {
	return f.store.HandleRequest(context.Background(), &logical.Request{
		Operation: op, Path: path, ClientToken: token, Body: []byte(body),
	})
}

func (f *fixture) mustDo(t *testing.T, op logical.Operation, path, token, body string) *logical.Response {
	t.Helper()
	resp, err := f.do(op, path, token, body)
	if err != nil {
		t.Fatalf("%s %s: %v", op, path, err)
	}
	return resp
}

// create makes a token through the API and returns it.
func (f *fixture) create(t *testing.T, parent, path, body string) (string, *logical.Auth) {
	t.Helper()
	resp := f.mustDo(t, logical.UpdateOperation, path, parent, body)
	if resp == nil || resp.Auth == nil {
		t.Fatalf("%s returned no auth", path)
	}
	return resp.Auth.ClientToken, resp.Auth
}

func (f *fixture) lookup(t *testing.T, token string) map[string]any {
	t.Helper()
	resp := f.mustDo(t, logical.UpdateOperation, "lookup", f.root, `{"token":"`+token+`"}`)
	return resp.Data.(map[string]any)
}

func (f *fixture) alive(token string) bool {
	_, err := f.store.Lookup(context.Background(), token)
	return err == nil
}

func wantCode(t *testing.T, err error, code logical.Code) {
	t.Helper()
	var le *logical.Error
	if !errors.As(err, &le) || le.Code != code {
		t.Errorf("error = %v, want a logical.Error with code %d", err, code)
	}
}

// goldenKeys returns the keys of the named block of a golden response.
func goldenKeys(t *testing.T, name, block string) []string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]json.RawMessage
	var m map[string]any
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(env[block], &m); err != nil {
		t.Fatal(err)
	}
	return slices.Sorted(maps.Keys(m))
}

// jsonKeys marshals v and returns its top-level keys.
func jsonKeys(t *testing.T, v any) (map[string]any, []string) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m, slices.Sorted(maps.Keys(m))
}

func TestCreateAndLookupMatchVault(t *testing.T) {
	f := newFixture(t)
	tok, auth := f.create(t, f.root, "create", `{"policies":["app-read"],"ttl":"1h","display_name":"app","meta":{"team":"a"}}`)
	if !strings.HasPrefix(tok, "hvs.") || len(tok) != 28 || len(auth.Accessor) != 24 {
		t.Errorf("token %d chars, accessor %d chars; want hvs. + 24 and 24", len(tok), len(auth.Accessor))
	}
	got, keys := jsonKeys(t, auth)
	if want := goldenKeys(t, "auth-token-create", "auth"); !slices.Equal(keys, want) {
		t.Errorf("auth keys %v, want %v", keys, want)
	}
	if got["lease_duration"] != 3600.0 || got["renewable"] != true || got["orphan"] != false ||
		got["token_type"] != "service" || !slices.Equal(auth.Policies, []string{"app-read", "default"}) {
		t.Errorf("auth = %v", got)
	}

	f.clock.Add(time.Second)
	data, keys := jsonKeys(t, f.lookup(t, tok))
	if want := goldenKeys(t, "auth-token-lookup", "data"); !slices.Equal(keys, want) {
		t.Errorf("lookup keys %v, want %v", keys, want)
	}
	for k, want := range map[string]any{
		"id": tok, "accessor": auth.Accessor, "display_name": "token-app", "ttl": 3599.0, "creation_ttl": 3600.0,
		"path": "auth/token/create", "type": "service", "orphan": false, "renewable": true, "num_uses": 0.0,
		"explicit_max_ttl": 0.0, "entity_id": "", "expire_time": "2026-11-28T01:02:28.548226881Z",
		"issue_time": "2026-11-28T00:02:28.548226881Z", "creation_time": 1795824148.0,
	} {
		if data[k] != want {
			t.Errorf("lookup %s = %v, want %v", k, data[k], want)
		}
	}
	if m, _ := data["meta"].(map[string]any); m["team"] != "a" {
		t.Errorf("lookup meta = %v", data["meta"])
	}

	self := f.mustDo(t, logical.ReadOperation, "lookup-self", f.root, "")
	data, keys = jsonKeys(t, self.Data)
	if want := goldenKeys(t, "auth-token-lookup-self", "data"); !slices.Equal(keys, want) {
		t.Errorf("lookup-self keys %v, want %v", keys, want)
	}
	if data["expire_time"] != nil || data["ttl"] != 0.0 || data["orphan"] != true || data["renewable"] != false ||
		data["meta"] != nil || data["id"] != f.root || data["display_name"] != "token" {
		t.Errorf("root lookup-self = %v", data)
	}
}

func TestStorageHoldsNoToken(t *testing.T) {
	f := newFixture(t)
	child, _ := f.create(t, f.root, "create", `{"policies":["a"],"ttl":"1h"}`)
	custom, _ := f.create(t, f.root, "create", `{"id":"my-own-custom-token-value","policies":["a"]}`)
	grandchild, _ := f.create(t, child, "create", `{"policies":["a"]}`)
	f.mustDo(t, logical.UpdateOperation, "renew", f.root, `{"token":"`+child+`"}`)
	// Read the logical keys and values, decrypted: the barrier's own
	// encryption must not be what hides a token.
	var all bytes.Buffer
	for _, k := range barriertest.Keys(t, f.mem, "") {
		v, err := f.mem.Get(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		all.WriteString(k)
		all.Write(v)
	}
	if all.Len() == 0 {
		t.Fatal("storage holds nothing")
	}
	for _, tok := range []string{f.root, child, custom, grandchild} {
		if bytes.Contains(all.Bytes(), []byte(tok)) || bytes.Contains(all.Bytes(), []byte(strings.TrimPrefix(tok, "hvs."))) {
			t.Errorf("storage contains a token in clear")
		}
	}
	if !f.alive(custom) {
		t.Error("custom token does not work")
	}
}

func TestLookupComparesStoredHash(t *testing.T) {
	f := newFixture(t)
	a, _ := f.create(t, f.root, "create", `{"policies":["a"]}`)
	ctx := context.Background()
	view := logical.NewView(f.mem, "sys/token/")
	// Move a's entry under the key of another token: it must not answer.
	b, err := view.Get(ctx, idPrefix+hashToken(a))
	if err != nil {
		t.Fatal(err)
	}
	other := "hvs.somebodyelsestoken00000"
	if err := view.Put(ctx, idPrefix+hashToken(other), b); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Lookup(ctx, other); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup of a misplaced entry = %v, want ErrNotFound", err)
	}
	for _, tok := range []string{"", "hvs.nope", a + "x", strings.ToUpper(a)} {
		if f.alive(tok) {
			t.Errorf("Lookup(%q) succeeded", tok)
		}
	}
}

func TestPoliciesAndParents(t *testing.T) {
	f := newFixture(t)
	parent, _ := f.create(t, f.root, "create", `{"policies":["app-read","app-write"],"ttl":"1h"}`)
	for name, tc := range map[string]struct {
		parent, path, body string
		want               []string
		wantErr            string
	}{
		"a subset is allowed":             {parent, "create", `{"policies":["app-read"]}`, []string{"app-read", "default"}, ""},
		"no policies inherits the parent": {parent, "create", `{}`, []string{"app-read", "app-write", "default"}, ""},
		"no_default_policy drops default": {parent, "create", `{"policies":["app-read"],"no_default_policy":true}`, []string{"app-read"}, ""},
		"names are cleaned":               {parent, "create", `{"policies":"App-Read, app-read ,"}`, []string{"app-read", "default"}, ""},
		"more than the parent is refused": {parent, "create", `{"policies":["admin"]}`, nil, "child policies must be subset of parent"},
		"root from non-root is refused":   {parent, "create", `{"policies":["root"]}`, nil, "child policies must be subset of parent"},
		"id needs root":                   {parent, "create", `{"id":"abc"}`, nil, "root or sudo"},
		"no_parent needs root":            {parent, "create", `{"no_parent":true}`, nil, "root or sudo"},
		"period needs root":               {parent, "create", `{"period":"1h"}`, nil, "root or sudo"},
		"root stands alone":               {f.root, "create", `{"policies":["root","a"]}`, []string{"root"}, ""},
		"root child inherits root":        {f.root, "create", `{}`, []string{"root"}, ""},
		"an id prefix of ours is refused": {f.root, "create", `{"id":"hvs.x"}`, nil, "prefix"},
		"nothing left is refused":         {f.root, "create", `{"policies":["default"],"no_default_policy":true}`, nil, "at least one policy"},
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := f.do(logical.UpdateOperation, tc.path, tc.parent, tc.body)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				wantCode(t, err, logical.Invalid)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.Auth.Policies; !slices.Equal(got, tc.want) {
				t.Errorf("policies = %v, want %v", got, tc.want)
			}
		})
	}
	orphan, auth := f.create(t, parent, "create-orphan", `{"policies":["app-read"]}`)
	if !auth.Orphan || f.lookup(t, orphan)["orphan"] != true {
		t.Error("create-orphan made a child")
	}
	if _, auth := f.create(t, f.root, "create", `{"no_parent":true}`); !auth.Orphan {
		t.Error("no_parent from root made a child")
	}
	if _, err := f.do(logical.UpdateOperation, "create", f.root, `{"id":"my-own-custom-token-value-2"}`); err != nil {
		t.Fatal(err)
	}
	if _, err := f.do(logical.UpdateOperation, "create", f.root, `{"id":"my-own-custom-token-value-2"}`); err == nil {
		t.Error("a token ID in use was accepted twice")
	}
}

func TestTTLs(t *testing.T) {
	f := newFixture(t)
	parent, _ := f.create(t, f.root, "create", `{"policies":["a"],"ttl":"1h"}`)
	for name, tc := range map[string]struct {
		parent, path, body string
		want               int64
	}{
		"default ttl is 32 days":             {f.root, "create", `{"policies":["a"]}`, 768 * 3600},
		"ttl is capped by the mount max":     {f.root, "create", `{"policies":["a"],"ttl":"800h"}`, 768 * 3600},
		"explicit max ttl caps the ttl":      {f.root, "create", `{"policies":["a"],"ttl":"2h","explicit_max_ttl":"30m"}`, 1800},
		"a child cannot outlive its parent":  {parent, "create", `{"ttl":"2h"}`, 3600},
		"a child without ttl gets the rest":  {parent, "create", `{}`, 3600},
		"an orphan can outlive its creator":  {parent, "create-orphan", `{"ttl":"2h"}`, 7200},
		"a periodic token lives one period":  {f.root, "create", `{"policies":["a"],"period":"10m","ttl":"1h"}`, 600},
		"a root token without ttl is eterna": {f.root, "create", `{}`, 0},
		"seconds as a number":                {f.root, "create", `{"policies":["a"],"ttl":90}`, 90},
		"lease is an alias of ttl":           {f.root, "create", `{"policies":["a"],"lease":"5m"}`, 300},
	} {
		t.Run(name, func(t *testing.T) {
			_, auth := f.create(t, tc.parent, tc.path, tc.body)
			if auth.LeaseDuration != tc.want {
				t.Errorf("lease_duration = %d, want %d", auth.LeaseDuration, tc.want)
			}
			if auth.Renewable != (tc.want > 0) {
				t.Errorf("renewable = %v for ttl %d", auth.Renewable, tc.want)
			}
		})
	}
	_, auth := f.create(t, f.root, "create", `{"policies":["a"],"renewable":false}`)
	if auth.Renewable {
		t.Error("renewable=false was ignored")
	}
}

func TestExpiredTokenFailsBeforeTheLoopAndIsDeletedByIt(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok, _ := f.create(t, f.root, "create", `{"policies":["a"],"ttl":"1m"}`)
	child, _ := f.create(t, tok, "create", `{}`)
	f.clock.Add(time.Minute)
	for _, tk := range []string{tok, child} {
		if f.alive(tk) {
			t.Error("an expired token still works")
		}
	}
	if _, err := f.do(logical.ReadOperation, "lookup-self", tok, ""); !errors.Is(err, logical.ErrPermissionDenied) {
		t.Errorf("lookup-self with an expired token = %v, want permission denied", err)
	}
	if _, err := f.store.get(ctx, hashToken(tok)); err != nil {
		t.Fatalf("entry gone before the expiry loop ran: %v", err)
	}
	if n, err := f.leases.RevokeDue(ctx); err != nil || n == 0 {
		t.Fatalf("RevokeDue = %d, %v", n, err)
	}
	for _, tk := range []string{tok, child} {
		if _, err := f.store.get(ctx, hashToken(tk)); !errors.Is(err, ErrNotFound) {
			t.Errorf("entry still stored after the expiry loop: %v", err)
		}
	}
	if keys := barriertest.Keys(t, f.mem, "sys/token/parent/"); len(keys) != 0 {
		t.Errorf("children index left behind: %v", keys)
	}
	if keys := barriertest.Keys(t, f.mem, "sys/expire/"); len(keys) != 0 {
		t.Errorf("leases left behind: %v", keys)
	}
}

func TestRenew(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok, auth := f.create(t, f.root, "create", `{"policies":["app-read"],"ttl":"1h","display_name":"app","meta":{"team":"a"}}`)
	f.clock.Add(10 * time.Minute)
	resp := f.mustDo(t, logical.UpdateOperation, "renew-self", tok, `{"increment":"30m"}`)
	_, keys := jsonKeys(t, resp.Auth)
	if want := goldenKeys(t, "auth-token-renew-self", "auth"); !slices.Equal(keys, want) {
		t.Errorf("renew auth keys %v, want %v", keys, want)
	}
	if resp.Auth.LeaseDuration != 1800 || resp.Auth.ClientToken != tok {
		t.Errorf("renew-self: lease_duration %d, want 1800", resp.Auth.LeaseDuration)
	}
	data := f.lookup(t, tok)
	if data["last_renewal_time"] != f.clock.Now().Unix() || data["ttl"] != int64(1800) {
		t.Errorf("after renew: last_renewal_time %v, ttl %v", data["last_renewal_time"], data["ttl"])
	}
	// The lease moved too: nothing happens at the earlier expiries...
	f.clock.Add(25 * time.Minute)
	if !f.alive(tok) {
		t.Fatal("renewed token expired at its old time")
	}
	// ...and increment 0 renews by the creation TTL.
	resp = f.mustDo(t, logical.UpdateOperation, "renew-accessor", f.root, `{"accessor":"`+auth.Accessor+`"}`)
	if resp.Auth.LeaseDuration != 3600 || resp.Auth.ClientToken != "" {
		t.Errorf("renew-accessor: lease_duration %d, client_token shown: %v", resp.Auth.LeaseDuration, resp.Auth.ClientToken != "")
	}
	f.clock.Add(59 * time.Minute)
	if n, _ := f.leases.RevokeDue(ctx); n != 0 || !f.alive(tok) {
		t.Fatal("token revoked before its renewed expiry")
	}
	f.clock.Add(time.Minute)
	f.leases.RevokeDue(ctx)
	if _, err := f.store.get(ctx, hashToken(tok)); !errors.Is(err, ErrNotFound) {
		t.Error("token not revoked at its renewed expiry")
	}

	capped, _ := f.create(t, f.root, "create", `{"policies":["a"],"ttl":"30m","explicit_max_ttl":"1h"}`)
	f.clock.Add(20 * time.Minute)
	resp = f.mustDo(t, logical.UpdateOperation, "renew", f.root, `{"token":"`+capped+`","increment":"2h"}`)
	if resp.Auth.LeaseDuration != 2400 {
		t.Errorf("renew past explicit_max_ttl: lease_duration %d, want 2400", resp.Auth.LeaseDuration)
	}
	f.clock.Add(40 * time.Minute)
	if f.alive(capped) {
		t.Error("token outlived its explicit max TTL")
	}

	periodic, _ := f.create(t, f.root, "create", `{"policies":["a"],"period":"10m"}`)
	f.clock.Add(5 * time.Minute)
	resp = f.mustDo(t, logical.UpdateOperation, "renew", f.root, `{"token":"`+periodic+`","increment":"1h"}`)
	if resp.Auth.LeaseDuration != 600 {
		t.Errorf("periodic renew: lease_duration %d, want 600", resp.Auth.LeaseDuration)
	}

	fixed, _ := f.create(t, f.root, "create", `{"policies":["a"],"renewable":false}`)
	for name, tc := range map[string]struct{ path, token, body, want string }{
		"not renewable":        {"renew", f.root, `{"token":"` + fixed + `"}`, "not renewable"},
		"root never expires":   {"renew-self", f.root, `{}`, "not renewable"},
		"missing token":        {"renew", f.root, `{}`, "missing token"},
		"unknown token":        {"renew", f.root, `{"token":"hvs.nope"}`, "token not found"},
		"unknown accessor":     {"renew-accessor", f.root, `{"accessor":"nope"}`, "invalid accessor"},
		"increment not a time": {"renew", f.root, `{"token":"` + fixed + `","increment":"soon"}`, "duration"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := f.do(logical.UpdateOperation, tc.path, tc.token, tc.body)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
			wantCode(t, err, logical.Invalid)
		})
	}
}

func TestNumUses(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok, auth := f.create(t, f.root, "create", `{"policies":["a"],"num_uses":"2"}`)
	if auth.NumUses != 2 {
		t.Fatalf("num_uses = %d, want 2", auth.NumUses)
	}
	for i, left := range []int{1, 0} {
		e, err := f.store.Lookup(ctx, tok)
		if err != nil {
			t.Fatalf("use %d: Lookup = %v", i+1, err)
		}
		if err := f.store.Use(ctx, e); err != nil {
			t.Fatalf("use %d: %v", i+1, err)
		}
		if e.NumUses != left {
			t.Errorf("after use %d: %d uses left, want %d", i+1, e.NumUses, left)
		}
	}
	if f.alive(tok) {
		t.Error("token works after its last use")
	}
	if _, err := f.store.get(ctx, hashToken(tok)); !errors.Is(err, ErrNotFound) {
		t.Error("used-up token is still stored")
	}
	unlimited, _ := f.store.Lookup(ctx, f.root)
	for range 3 {
		if err := f.store.Use(ctx, unlimited); err != nil || !f.alive(f.root) {
			t.Fatalf("Use of an unlimited token = %v", err)
		}
	}
	_, err := f.do(logical.UpdateOperation, "create", f.root, `{"num_uses":-1}`)
	wantCode(t, err, logical.Invalid)
}

func TestRevokeTreeAndOrphans(t *testing.T) {
	f := newFixture(t)
	var revoked []string
	f.store.OnRevoke(func(ctx context.Context, e *Entry) error {
		revoked = append(revoked, e.Meta["name"])
		return nil
	})
	mk := func(parent, name string) string {
		tok, _ := f.create(t, parent, "create", `{"policies":["a"],"meta":{"name":"`+name+`"}}`)
		return tok
	}
	a := mk(f.root, "a")
	b := mk(a, "b")
	c := mk(b, "c")
	d := mk(a, "d")
	f.mustDo(t, logical.UpdateOperation, "revoke", f.root, `{"token":"`+a+`"}`)
	for _, tok := range []string{a, b, c, d} {
		if f.alive(tok) {
			t.Error("a token of the revoked tree still works")
		}
	}
	if slices.Index(revoked, "c") > slices.Index(revoked, "b") || revoked[len(revoked)-1] != "a" || len(revoked) != 4 {
		t.Errorf("revoked in order %v; want children before parents", revoked)
	}

	x := mk(f.root, "x")
	y := mk(x, "y")
	z := mk(y, "z")
	f.mustDo(t, logical.UpdateOperation, "revoke-orphan", f.root, `{"token":"`+x+`"}`)
	if f.alive(x) || !f.alive(y) || !f.alive(z) {
		t.Fatal("revoke-orphan: want x revoked, y and z alive")
	}
	if f.lookup(t, y)["orphan"] != true || f.lookup(t, z)["orphan"] != false {
		t.Error("revoke-orphan: y should be an orphan now, z still y's child")
	}

	ye, _ := f.store.Lookup(context.Background(), y)
	f.mustDo(t, logical.UpdateOperation, "revoke-accessor", f.root, `{"accessor":"`+ye.Accessor+`"}`)
	if f.alive(y) || f.alive(z) {
		t.Error("revoke-accessor left the tree alive")
	}

	self := mk(f.root, "self")
	if resp := f.mustDo(t, logical.UpdateOperation, "revoke-self", self, ""); resp != nil {
		t.Errorf("revoke-self returned %v, want nothing (204)", resp)
	}
	if f.alive(self) {
		t.Error("revoke-self left the token alive")
	}
	// Revoking what is gone is fine, as in Vault.
	f.mustDo(t, logical.UpdateOperation, "revoke", f.root, `{"token":"`+self+`"}`)
	if _, err := f.do(logical.UpdateOperation, "revoke-self", self, ""); !errors.Is(err, logical.ErrPermissionDenied) {
		t.Errorf("revoke-self with a revoked token = %v, want permission denied", err)
	}
	if keys := barriertest.Keys(t, f.mem, "sys/token/parent/"); len(keys) != 0 {
		t.Errorf("children index left behind: %v", keys)
	}
}

func TestFailingRevokeHookStopsRevocationButNotTheBlock(t *testing.T) {
	f := newFixture(t)
	fail := true
	f.store.OnRevoke(func(ctx context.Context, e *Entry) error {
		if fail {
			return errors.New("cubbyhole unavailable")
		}
		return nil
	})
	tok, _ := f.create(t, f.root, "create", `{"policies":["a"]}`)
	if _, err := f.do(logical.UpdateOperation, "revoke", f.root, `{"token":"`+tok+`"}`); err == nil {
		t.Fatal("revoke with a failing hook succeeded")
	} else if strings.Contains(err.Error(), tok) {
		t.Error("error shows the token")
	}
	if f.alive(tok) {
		t.Error("token works after its revocation began")
	}
	fail = false
	f.mustDo(t, logical.UpdateOperation, "revoke", f.root, `{"token":"`+tok+`"}`)
	if _, err := f.store.get(context.Background(), hashToken(tok)); !errors.Is(err, ErrNotFound) {
		t.Error("retried revocation left the token stored")
	}
}

func TestRoles(t *testing.T) {
	f := newFixture(t)
	if resp := f.mustDo(t, logical.ListOperation, "roles", f.root, ""); resp != nil {
		t.Errorf("LIST roles with none = %v, want nothing", resp.Data)
	}
	f.mustDo(t, logical.UpdateOperation, "roles/ci", f.root,
		`{"allowed_policies":"app-read,app-write","disallowed_policies":["app-write"],"orphan":true,"path_suffix":"v1","token_explicit_max_ttl":"2h","token_ttl":"30m"}`)
	f.mustDo(t, logical.UpdateOperation, "roles/ci", f.root, `{"renewable":false}`) // a partial update
	resp := f.mustDo(t, logical.ReadOperation, "roles/ci", f.root, "")
	data := resp.Data.(map[string]any)
	if data["orphan"] != true || data["renewable"] != false || data["path_suffix"] != "v1" ||
		data["token_explicit_max_ttl"] != int64(7200) || !slices.Equal(data["allowed_policies"].([]string), []string{"app-read", "app-write"}) {
		t.Errorf("role = %v", data)
	}
	if resp := f.mustDo(t, logical.ListOperation, "roles", f.root, ""); !slices.Equal(resp.Data.(map[string]any)["keys"].([]string), []string{"ci"}) {
		t.Errorf("LIST roles = %v", resp.Data)
	}

	parent, _ := f.create(t, f.root, "create", `{"policies":["other"]}`)
	tok, auth := f.create(t, parent, "create/ci", `{"policies":["app-read"]}`)
	data = f.lookup(t, tok)
	if data["path"] != "auth/token/create/ci/v1" || data["role"] != "ci" || data["orphan"] != true ||
		data["renewable"] != false || auth.LeaseDuration != 1800 || !slices.Equal(auth.Policies, []string{"app-read", "default"}) {
		t.Errorf("token from role: %v", data)
	}
	if _, auth := f.create(t, parent, "create", `{"role_name":"ci","ttl":"5h"}`); auth.LeaseDuration != 7200 {
		t.Errorf("role_name with ttl 5h: lease_duration %d, want the role's explicit max 7200", auth.LeaseDuration)
	}
	for name, tc := range map[string]struct{ path, body, want string }{
		"a policy the role does not allow": {"create/ci", `{"policies":["admin"]}`, "subset of the role"},
		"a disallowed policy":              {"create/ci", `{"policies":["app-write"]}`, "disallowed"},
		"an unknown role":                  {"create/nope", `{}`, "unknown role"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := f.do(logical.UpdateOperation, tc.path, parent, tc.body)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
		})
	}
	for name, body := range map[string]string{
		"negative uses":   `{"token_num_uses":-1}`,
		"uses not a num":  `{"token_num_uses":"many"}`,
		"batch tokens":    `{"token_type":"batch"}`,
		"ttl over max":    `{"token_ttl":"2h","token_max_ttl":"1h"}`,
		"suffix with ..":  `{"path_suffix":"../x"}`,
		"policies as num": `{"allowed_policies":5}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := f.do(logical.UpdateOperation, "roles/bad", f.root, body)
			wantCode(t, err, logical.Invalid)
		})
	}
	f.mustDo(t, logical.DeleteOperation, "roles/ci", f.root, "")
	if resp := f.mustDo(t, logical.ReadOperation, "roles/ci", f.root, ""); resp != nil {
		t.Error("role readable after delete")
	}
	if _, err := f.do(logical.UpdateOperation, "create/ci", parent, `{}`); err == nil {
		t.Error("created a token through a deleted role")
	}
}

func TestAccessors(t *testing.T) {
	f := newFixture(t)
	tok, auth := f.create(t, f.root, "create", `{"policies":["a"],"ttl":"1h"}`)
	resp := f.mustDo(t, logical.ListOperation, "accessors", f.root, "")
	if keys := resp.Data.(map[string]any)["keys"].([]string); len(keys) != 2 || !slices.Contains(keys, auth.Accessor) {
		t.Errorf("LIST accessors = %v", keys)
	}
	resp = f.mustDo(t, logical.UpdateOperation, "lookup-accessor", f.root, `{"accessor":"`+auth.Accessor+`"}`)
	data := resp.Data.(map[string]any)
	if data["id"] != "" || data["accessor"] != auth.Accessor || data["ttl"] != int64(3600) {
		t.Errorf("lookup-accessor = %v", data)
	}
	if e, err := f.store.LookupAccessor(context.Background(), auth.Accessor); err != nil || e.Caller().Accessor != auth.Accessor {
		t.Errorf("LookupAccessor = %v", err)
	}
	for _, p := range []string{"lookup-accessor", "revoke-accessor"} {
		_, err := f.do(logical.UpdateOperation, p, f.root, `{"accessor":"nope"}`)
		wantCode(t, err, logical.Invalid)
		_, err = f.do(logical.UpdateOperation, p, f.root, `{}`)
		wantCode(t, err, logical.Invalid)
	}
	f.mustDo(t, logical.UpdateOperation, "revoke-accessor", f.root, `{"accessor":"`+auth.Accessor+`"}`)
	if f.alive(tok) {
		t.Error("revoke-accessor left the token alive")
	}
	if _, err := f.store.LookupAccessor(context.Background(), auth.Accessor); !errors.Is(err, ErrNotFound) {
		t.Errorf("LookupAccessor after revoke = %v", err)
	}
}

func TestBadInput(t *testing.T) {
	f := newFixture(t)
	secret := "hvs.THISISASECRETVALUE000000"
	for name, tc := range map[string]struct {
		op          logical.Operation
		path, token string
		body        string
		code        logical.Code
	}{
		"ttl of the wrong type":      {logical.UpdateOperation, "create", f.root, `{"ttl":true}`, logical.Invalid},
		"policies of the wrong type": {logical.UpdateOperation, "create", f.root, `{"policies":5}`, logical.Invalid},
		"meta of the wrong type":     {logical.UpdateOperation, "create", f.root, `{"meta":"a=b"}`, logical.Invalid},
		"num_uses not a number":      {logical.UpdateOperation, "create", f.root, `{"num_uses":"x"}`, logical.Invalid},
		"malformed json":             {logical.UpdateOperation, "create", f.root, `{"ttl":`, logical.Invalid},
		"batch tokens":               {logical.UpdateOperation, "create", f.root, `{"type":"batch"}`, logical.Invalid},
		"token of the wrong type":    {logical.UpdateOperation, "lookup", f.root, `{"token":5}`, logical.Invalid},
		"unknown token to lookup":    {logical.UpdateOperation, "lookup", f.root, `{"token":"` + secret + `"}`, logical.PermissionDenied},
		"missing token to revoke":    {logical.UpdateOperation, "revoke", f.root, `{}`, logical.Invalid},
		"missing token to orphan":    {logical.UpdateOperation, "revoke-orphan", f.root, `{}`, logical.Invalid},
		"no caller token to create":  {logical.UpdateOperation, "create", "", `{}`, logical.PermissionDenied},
		"bad caller token":           {logical.UpdateOperation, "create", secret, `{}`, logical.PermissionDenied},
		"no caller for lookup-self":  {logical.ReadOperation, "lookup-self", "", ``, logical.PermissionDenied},
		"no caller for renew-self":   {logical.UpdateOperation, "renew-self", secret, `{}`, logical.PermissionDenied},
		"read of create":             {logical.ReadOperation, "create", f.root, ``, logical.Unsupported},
		"delete of lookup":           {logical.DeleteOperation, "lookup", f.root, ``, logical.Unsupported},
		"read of accessors":          {logical.ReadOperation, "accessors", f.root, ``, logical.Unsupported},
		"unknown path":               {logical.ReadOperation, "nope", f.root, ``, logical.NotFound},
		"role name with a slash":     {logical.UpdateOperation, "roles/a/b", f.root, `{}`, logical.Invalid},
		"an id with a token prefix":  {logical.UpdateOperation, "create", f.root, `{"id":"s.abc"}`, logical.Invalid},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := f.do(tc.op, tc.path, tc.token, tc.body)
			wantCode(t, err, tc.code)
			if err != nil && strings.Contains(err.Error(), "THISISASECRET") {
				t.Errorf("error shows the token: %v", err)
			}
		})
	}
	// An empty lookup body looks up the caller, as in Vault.
	resp := f.mustDo(t, logical.UpdateOperation, "lookup", f.root, ``)
	if resp.Data.(map[string]any)["id"] != f.root {
		t.Error("lookup without token did not look up the caller")
	}
}

func TestCallerAndRoot(t *testing.T) {
	f := newFixture(t)
	tok, auth := f.create(t, f.root, "create", `{"policies":["a"],"meta":{"k":"v"},"display_name":"ci job/1"}`)
	e, err := f.store.Lookup(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	c := e.Caller()
	if c.Accessor != auth.Accessor || c.DisplayName != "token-ci-job-1" || !slices.Equal(c.Policies, []string{"a", "default"}) ||
		c.Metadata["k"] != "v" || len(c.CubbyholeID) != 24 || c.CubbyholeID == auth.Accessor {
		t.Errorf("Caller() = %+v", c)
	}
	c.Policies[0] = "root"
	if e.IsRoot() {
		t.Error("changing the Caller changed the entry")
	}
	root, _ := f.store.Lookup(context.Background(), f.root)
	if !root.IsRoot() || !root.Orphan() || !root.ExpireTime.IsZero() {
		t.Errorf("root token: root %v, orphan %v, expires %v", root.IsRoot(), root.Orphan(), root.ExpireTime)
	}
	seen := map[string]bool{}
	for range 20 {
		tok, _ := f.create(t, f.root, "create", `{"policies":["a"]}`)
		if seen[tok] || strings.Trim(tok[4:], base62) != "" {
			t.Fatalf("token not unique or not base62")
		}
		seen[tok] = true
	}
}

func TestNewValidatesConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without storage succeeded")
	}
	if _, err := New(Config{Storage: barriertest.Storage(t)}); err == nil {
		t.Error("New without a lease manager succeeded")
	}
}
