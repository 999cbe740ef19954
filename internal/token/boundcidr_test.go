package token

import (
	"context"
	"slices"
	"testing"

	"github.com/coffer-dev/coffer/internal/logical"
)

// boundCIDRs returns a token's bound CIDRs as root's lookup shows them;
// nil when the field is absent.
func (f *fixture) boundCIDRs(t *testing.T, tok string) []string {
	t.Helper()
	v, ok := f.lookup(t, tok)["bound_cidrs"]
	if !ok {
		return nil
	}
	got, isList := v.([]string)
	if !isList || len(got) == 0 {
		t.Fatalf("lookup bound_cidrs = %#v, want a non-empty []string or no field", v)
	}
	return got
}

func (f *fixture) entry(t *testing.T, tok string) *Entry {
	t.Helper()
	e, err := f.store.Lookup(context.Background(), tok)
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	return e
}

func TestEntryAllowsRemote(t *testing.T) {
	bound := &Entry{BoundCIDRs: []string{"192.0.2.0/24", "127.0.0.1/32", "::1/128"}}
	for name, tc := range map[string]struct {
		e      *Entry
		remote string
		want   bool
	}{
		"an unbound token is allowed from anywhere":   {&Entry{}, "203.0.113.9:443", true},
		"an unbound token is allowed with no address": {&Entry{}, "", true},
		"inside a block":                                {bound, "192.0.2.200:5000", true},
		"the single bound address":                      {bound, "127.0.0.1:8200", true},
		"IPv6 loopback":                                 {bound, "[::1]:8200", true},
		"outside every block":                           {bound, "127.0.0.2:8200", false},
		"an unknown address is outside":                 {bound, "", false},
		"an address that does not parse is outside":     {bound, "localhost:8200", false},
		"an IPv4-mapped IPv6 address is judged as IPv4": {bound, "[::ffff:192.0.2.1]:1", true},
	} {
		t.Run(name, func(t *testing.T) {
			if got := tc.e.AllowsRemote(tc.remote); got != tc.want {
				t.Errorf("AllowsRemote(%q) with %v = %v, want %v", tc.remote, tc.e.BoundCIDRs, got, tc.want)
			}
		})
	}
}

func TestLoginTokenKeepsItsBoundCIDRs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// What the core does with a login's Auth: an orphan with the CIDRs.
	tok, e, err := f.store.Create(ctx, nil, CreateRequest{
		Policies: []string{"app"}, TTL: logical.Duration(3600e9), BoundCIDRs: []string{"127.0.0.1", " 10.0.0.0/8 "},
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"127.0.0.1/32", "10.0.0.0/8"}; !slices.Equal(e.BoundCIDRs, want) {
		t.Errorf("entry BoundCIDRs = %v, want %v", e.BoundCIDRs, want)
	}
	// Read back from storage (and from the cache, in the other run).
	if got := f.entry(t, tok); !got.AllowsRemote("10.9.8.7:1") || got.AllowsRemote("192.0.2.1:1") {
		t.Errorf("stored entry with %v: allows 10.9.8.7 %v, 192.0.2.1 %v; want true, false",
			got.BoundCIDRs, got.AllowsRemote("10.9.8.7:1"), got.AllowsRemote("192.0.2.1:1"))
	}
	if got, want := f.boundCIDRs(t, tok), []string{"127.0.0.1", "10.0.0.0/8"}; !slices.Equal(got, want) {
		t.Errorf("lookup bound_cidrs = %v, want %v", got, want)
	}
	self := f.mustDo(t, logical.ReadOperation, "lookup-self", tok, "").Data.(map[string]any)
	if got, _ := self["bound_cidrs"].([]string); !slices.Equal(got, []string{"127.0.0.1", "10.0.0.0/8"}) {
		t.Errorf("lookup-self bound_cidrs = %v", self["bound_cidrs"])
	}

	if _, _, err := f.store.Create(ctx, nil, CreateRequest{Policies: []string{"app"}, BoundCIDRs: []string{"10.0.0.0/33"}}); err == nil {
		t.Error("a malformed bound CIDR was accepted")
	} else {
		wantCode(t, err, logical.Invalid)
	}
}

func TestBoundCIDRsOfCreatedTokens(t *testing.T) {
	f := newFixture(t)
	f.mustDo(t, logical.UpdateOperation, "roles/edge", f.root, `{"allowed_policies":"app","token_bound_cidrs":["192.0.2.0/24","127.0.0.1"]}`)
	f.mustDo(t, logical.UpdateOperation, "roles/open", f.root, `{"allowed_policies":"app"}`)
	f.mustDo(t, logical.UpdateOperation, "roles/legacy", f.root, `{"bound_cidrs":"198.51.100.0/24"}`)
	f.mustDo(t, logical.UpdateOperation, "roles/anyroot", f.root, `{"token_bound_cidrs":"192.0.2.0/24"}`)

	role := f.mustDo(t, logical.ReadOperation, "roles/edge", f.root, "").Data.(map[string]any)
	if got, _ := role["token_bound_cidrs"].([]string); !slices.Equal(got, []string{"192.0.2.0/24", "127.0.0.1"}) {
		t.Errorf("role token_bound_cidrs = %#v", role["token_bound_cidrs"])
	}
	if role := f.mustDo(t, logical.ReadOperation, "roles/open", f.root, "").Data.(map[string]any); role["token_bound_cidrs"] != nil {
		t.Errorf("role without CIDRs shows token_bound_cidrs %v; Vault leaves the field out", role["token_bound_cidrs"])
	}

	// A parent bound to one network, made as the core makes login tokens.
	bound, _, err := f.store.Create(context.Background(), nil, CreateRequest{
		Policies: []string{"app"}, TTL: logical.Duration(3600e9), BoundCIDRs: []string{"203.0.113.0/24"},
	})
	if err != nil {
		t.Fatal(err)
	}
	unbound, _ := f.create(t, f.root, "create", `{"policies":["app"],"ttl":"1h"}`)

	for name, tc := range map[string]struct {
		parent, path, body string
		want               []string // as lookup shows them; nil: no bound_cidrs
	}{
		"a role binds its tokens":                        {unbound, "create/edge", `{}`, []string{"192.0.2.0/24", "127.0.0.1"}},
		"role_name binds like create/<role>":             {unbound, "create", `{"role_name":"edge"}`, []string{"192.0.2.0/24", "127.0.0.1"}},
		"a role's CIDRs replace the parent's":            {bound, "create/edge", `{}`, []string{"192.0.2.0/24", "127.0.0.1"}},
		"a role without CIDRs unbinds (as Vault)":        {bound, "create/open", `{}`, nil},
		"the deprecated bound_cidrs binds too":           {f.root, "create/legacy", `{"policies":["app"]}`, []string{"198.51.100.0/24"}},
		"a child keeps its parent's":                     {bound, "create", `{}`, []string{"203.0.113.0/24"}},
		"a child of an unbound parent is unbound":        {unbound, "create", `{}`, nil},
		"an orphan without a role is unbound (as Vault)": {bound, "create-orphan", `{}`, nil},
		"a root token that never expires is unbound":     {f.root, "create/anyroot", `{}`, nil},
		"a root token that expires is bound":             {f.root, "create/anyroot", `{"ttl":"1h"}`, []string{"192.0.2.0/24"}},
	} {
		t.Run(name, func(t *testing.T) {
			tok, _ := f.create(t, tc.parent, tc.path, tc.body)
			if got := f.boundCIDRs(t, tok); !slices.Equal(got, tc.want) {
				t.Errorf("bound_cidrs = %v, want %v", got, tc.want)
			}
			if e := f.entry(t, tok); e.AllowsRemote("") != (tc.want == nil) {
				t.Errorf("AllowsRemote(unknown address) = %v with %v", e.AllowsRemote(""), e.BoundCIDRs)
			}
		})
	}

	// Updating other fields keeps the CIDRs; an empty list clears them.
	f.mustDo(t, logical.UpdateOperation, "roles/edge", f.root, `{"renewable":false}`)
	if tok, _ := f.create(t, unbound, "create/edge", `{}`); f.boundCIDRs(t, tok) == nil {
		t.Error("a partial role update dropped its token_bound_cidrs")
	}
	f.mustDo(t, logical.UpdateOperation, "roles/edge", f.root, `{"token_bound_cidrs":[]}`)
	if tok, _ := f.create(t, unbound, "create/edge", `{}`); f.boundCIDRs(t, tok) != nil {
		t.Error("token_bound_cidrs=[] did not clear the role's CIDRs")
	}
	for name, body := range map[string]string{
		"a malformed block":           `{"token_bound_cidrs":["192.0.2.0/33"]}`,
		"a name that is no address":   `{"token_bound_cidrs":"gateway"}`,
		"a malformed deprecated form": `{"bound_cidrs":"10.0.0/8"}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := f.do(logical.UpdateOperation, "roles/bad", f.root, body)
			wantCode(t, err, logical.Invalid)
		})
	}
	// Vault's create takes no bound CIDRs from the body.
	if tok, _ := f.create(t, f.root, "create", `{"policies":["app"],"bound_cidrs":["10.0.0.0/8"]}`); f.boundCIDRs(t, tok) != nil {
		t.Error("auth/token/create took bound_cidrs from its body")
	}
}
