package compat

import (
	"reflect"
	"sort"
	"testing"

	vault "github.com/hashicorp/vault/api"
)

const appReadPolicy = `
path "secret/data/myapp" {
  capabilities = ["read"]
}
path "secret/data/team/+/config" {
  capabilities = ["read", "update", "create"]
}
path "secret/data/team/blue/config" {
  capabilities = ["deny"]
}
path "auth/token/create" {
  capabilities = ["create", "update"]
}
`

// TestPoliciesAndTokenTree checks policies as a child token sees them,
// and that revoking a parent revokes its whole tree.
func TestPoliciesAndTokenTree(t *testing.T) {
	p, root := startDev(t)
	cx := ctx(t)
	if err := root.Sys().PutPolicyWithContext(cx, "app-read", appReadPolicy); err != nil {
		t.Fatalf("write policy: %v", err)
	}
	pols, err := root.Sys().ListPoliciesWithContext(cx)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(pols)
	if !reflect.DeepEqual(pols, []string{"app-read", "default", "root"}) {
		t.Errorf("policies = %v", pols)
	}
	if got, err := root.Sys().GetPolicyWithContext(cx, "app-read"); err != nil || got != appReadPolicy {
		t.Errorf("read policy = %q, %v", got, err)
	}
	if err := root.Sys().PutPolicyWithContext(cx, "broken", `path "x" { capabilities = ["fly"] }`); err == nil {
		t.Error("a policy with an unknown capability was accepted")
	}

	for _, path := range []string{"myapp", "other", "team/red/config", "team/blue/config"} {
		if _, err := root.KVv2("secret").Put(cx, path, map[string]any{"k": "v"}); err != nil {
			t.Fatal(err)
		}
	}

	sec, err := root.Auth().Token().CreateWithContext(cx, &vault.TokenCreateRequest{
		Policies: []string{"app-read"}, TTL: "1h", DisplayName: "app", Metadata: map[string]string{"team": "a"},
	})
	if err != nil {
		t.Fatalf("create child: %v", err)
	}
	if sec.Auth.LeaseDuration != 3600 || !sec.Auth.Renewable || !reflect.DeepEqual(sec.Auth.Policies, []string{"app-read", "default"}) {
		t.Errorf("child auth = %+v", sec.Auth)
	}
	child := p.client(t, sec.Auth.ClientToken)

	for path, allowed := range map[string]bool{
		"myapp": true, "other": false, "team/red/config": true, "team/blue/config": false,
	} {
		_, err := child.KVv2("secret").Get(cx, path)
		if (err == nil) != allowed {
			t.Errorf("child read %s: err=%v, want allowed=%v", path, err, allowed)
		}
	}
	if _, err := child.KVv2("secret").Put(cx, "myapp", map[string]any{"k": "x"}); err == nil {
		t.Error("child wrote where it may only read")
	}
	caps, err := child.Sys().CapabilitiesSelfWithContext(cx, "secret/data/myapp")
	if err != nil || !reflect.DeepEqual(caps, []string{"read"}) {
		t.Errorf("capabilities-self = %v, %v", caps, err)
	}
	caps, _ = child.Sys().CapabilitiesSelfWithContext(cx, "secret/data/team/blue/config")
	if !reflect.DeepEqual(caps, []string{"deny"}) {
		t.Errorf("capabilities on a denied path = %v", caps)
	}

	// lookup-self carries what ESO checks: type, numeric ttl, expire_time.
	self, err := child.Auth().Token().LookupSelfWithContext(cx)
	if err != nil {
		t.Fatal(err)
	}
	if self.Data["type"] != "service" || self.Data["expire_time"] == nil {
		t.Errorf("lookup-self = %v", self.Data)
	}
	if ttl, err := self.TokenTTL(); err != nil || ttl <= 0 {
		t.Errorf("lookup-self ttl = %v, %v", ttl, err)
	}

	// A child may not get policies its parent lacks.
	if _, err := child.Auth().Token().CreateWithContext(cx, &vault.TokenCreateRequest{Policies: []string{"root"}}); err == nil {
		t.Error("a child minted a root token")
	}
	// Tree: child → grandchild; revoking child revokes grandchild.
	gsec, err := child.Auth().Token().CreateWithContext(cx, &vault.TokenCreateRequest{Policies: []string{"app-read"}})
	if err != nil {
		t.Fatalf("create grandchild: %v", err)
	}
	grand := p.client(t, gsec.Auth.ClientToken)
	if _, err := grand.KVv2("secret").Get(cx, "myapp"); err != nil {
		t.Fatalf("grandchild read: %v", err)
	}
	if err := root.Auth().Token().RevokeTreeWithContext(cx, sec.Auth.ClientToken); err != nil {
		t.Fatalf("revoke child: %v", err)
	}
	for name, c := range map[string]*vault.Client{"child": child, "grandchild": grand} {
		if _, err := c.KVv2("secret").Get(cx, "myapp"); err == nil {
			t.Errorf("%s still works after its parent was revoked", name)
		}
	}

	// revoke-orphan keeps the children as orphans.
	parent, _ := root.Auth().Token().CreateWithContext(cx, &vault.TokenCreateRequest{Policies: []string{"app-read"}})
	pc := p.client(t, parent.Auth.ClientToken)
	kid, err := pc.Auth().Token().CreateWithContext(cx, &vault.TokenCreateRequest{Policies: []string{"app-read"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Auth().Token().RevokeOrphanWithContext(cx, parent.Auth.ClientToken); err != nil {
		t.Fatal(err)
	}
	kc := p.client(t, kid.Auth.ClientToken)
	if _, err := kc.KVv2("secret").Get(cx, "myapp"); err != nil {
		t.Errorf("orphaned child lost access: %v", err)
	}
	if _, err := pc.KVv2("secret").Get(cx, "myapp"); err == nil {
		t.Error("revoked parent still works")
	}
}

// TestResponseWrapping wraps a KV read and unwraps it once.
func TestResponseWrapping(t *testing.T) {
	p, root := startDev(t)
	cx := ctx(t)
	if _, err := root.KVv2("secret").Put(cx, "wrapped", map[string]any{"pw": "hunter2"}); err != nil {
		t.Fatal(err)
	}
	wc := p.client(t, "root")
	wc.SetWrappingLookupFunc(func(op, path string) string { return "5m" })
	sec, err := wc.Logical().Read("secret/data/wrapped")
	if err != nil {
		t.Fatal(err)
	}
	if sec.WrapInfo == nil || sec.WrapInfo.Token == "" || sec.WrapInfo.TTL != 300 || sec.WrapInfo.CreationPath != "secret/data/wrapped" {
		t.Fatalf("wrap info = %+v", sec.WrapInfo)
	}
	if sec.Data != nil {
		t.Errorf("wrapped response leaked data: %v", sec.Data)
	}
	look, err := root.Logical().Write("sys/wrapping/lookup", map[string]any{"token": sec.WrapInfo.Token})
	if err != nil || look.Data["creation_path"] != "secret/data/wrapped" {
		t.Fatalf("wrapping lookup = %v, %v", look, err)
	}
	un := p.client(t, "")
	got, err := un.Logical().Unwrap(sec.WrapInfo.Token)
	if err != nil {
		t.Fatalf("unwrap: %v", err)
	}
	inner, _ := got.Data["data"].(map[string]any)
	if inner["pw"] != "hunter2" {
		t.Errorf("unwrapped = %v", got.Data)
	}
	if _, err := un.Logical().Unwrap(sec.WrapInfo.Token); err == nil {
		t.Error("a wrapping token unwrapped twice")
	}
	// Wrapped token creation, then sys/wrapping/wrap of arbitrary data.
	wsec, err := wc.Logical().Write("sys/wrapping/wrap", map[string]any{"a": "b"})
	if err != nil || wsec.WrapInfo == nil {
		t.Fatalf("wrap = %v, %v", wsec, err)
	}
	got, err = un.Logical().Unwrap(wsec.WrapInfo.Token)
	if err != nil || got.Data["a"] != "b" {
		t.Fatalf("unwrap of wrap = %v, %v", got, err)
	}
}

// TestCubbyholeIsPrivate checks that a token's cubbyhole is its own and
// disappears with it.
func TestCubbyholeIsPrivate(t *testing.T) {
	p, root := startDev(t)
	cx := ctx(t)
	mk := func() (*vault.Client, string) {
		s, err := root.Auth().Token().CreateWithContext(cx, &vault.TokenCreateRequest{Policies: []string{"default"}})
		if err != nil {
			t.Fatal(err)
		}
		return p.client(t, s.Auth.ClientToken), s.Auth.ClientToken
	}
	a, aTok := mk()
	b, _ := mk()
	if _, err := a.Logical().Write("cubbyhole/note", map[string]any{"v": "mine"}); err != nil {
		t.Fatalf("write cubbyhole: %v", err)
	}
	if s, err := a.Logical().Read("cubbyhole/note"); err != nil || s == nil || s.Data["v"] != "mine" {
		t.Fatalf("read own cubbyhole = %v, %v", s, err)
	}
	if s, _ := b.Logical().Read("cubbyhole/note"); s != nil {
		t.Errorf("another token read the cubbyhole: %v", s.Data)
	}
	if err := root.Auth().Token().RevokeTreeWithContext(cx, aTok); err != nil {
		t.Fatal(err)
	}
	a2, _ := mk()
	if s, _ := a2.Logical().Read("cubbyhole/note"); s != nil {
		t.Errorf("cubbyhole data outlived its token: %v", s.Data)
	}
}
