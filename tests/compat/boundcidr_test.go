package compat

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"testing"

	vault "github.com/hashicorp/vault/api"
)

// token_bound_cidrs end to end: the bound CIDRs of an auth role or a token
// role travel into the token, and the token is refused (403 "permission
// denied", as a bad token) on every use from elsewhere. The clients here
// all connect from 127.0.0.1.

// rawGet sends GET /v1/<path> with tok and returns the status and the
// decoded "errors" of the answer.
func rawGet(t *testing.T, p *proc, tok, path string) (int, []string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.addr+"/v1/"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Errors []string `json:"errors"`
	}
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatalf("GET %s: %d %q is not a JSON error", path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, body.Errors
}

// stringList reads a JSON list of strings out of a response's data.
func stringList(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, s := range l {
		str, _ := s.(string)
		out = append(out, str)
	}
	return out
}

func TestBoundCIDRLogin(t *testing.T) {
	p, root := startDev(t)
	putReader(t, root)
	enableAuth(t, root, "userpass", "userpass", nil)
	for user, cidrs := range map[string][]string{"inside": {"127.0.0.1/32"}, "outside": {"10.0.0.0/8"}} {
		if _, err := root.Logical().Write("auth/userpass/users/"+user, map[string]any{
			"password": "a-password-never-shown", "token_policies": "reader", "token_bound_cidrs": cidrs,
		}); err != nil {
			t.Fatal(err)
		}
	}
	anon := p.client(t, "")
	login := func(user string) (*vault.Secret, error) {
		return anon.Logical().Write("auth/userpass/login/"+user, map[string]any{"password": "a-password-never-shown"})
	}

	s, err := login("inside")
	if err != nil {
		t.Fatalf("login from 127.0.0.1 bound to 127.0.0.1/32: %v", err)
	}
	tok := s.Auth.ClientToken
	c := p.client(t, tok)
	self, err := c.Auth().Token().LookupSelf()
	if err != nil {
		t.Fatalf("lookup-self of a bound token from inside: %v", err)
	}
	if got := stringList(self.Data["bound_cidrs"]); !slices.Equal(got, []string{"127.0.0.1"}) {
		t.Errorf("lookup-self bound_cidrs = %v, want [127.0.0.1] (Vault's form)", self.Data["bound_cidrs"])
	}
	// It stays valid from the allowed address, use after use.
	checkPolicyScope(t, p, root, tok)
	if _, err := c.Auth().Token().RenewSelf(0); err != nil {
		t.Errorf("renew-self from inside: %v", err)
	}
	if _, err := c.KVv2("secret").Get(ctx(t), "allowed"); err != nil {
		t.Errorf("read after renewal: %v", err)
	}

	// Endpoints the HTTP layer serves itself (metrics, here) check the
	// bound CIDRs against the client's address too, not refuse the token.
	if err := root.Sys().PutPolicy("metrics", `path "sys/metrics" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("auth/userpass/users/scraper", map[string]any{
		"password": "a-password-never-shown", "token_policies": "metrics", "token_bound_cidrs": "127.0.0.1/32",
	}); err != nil {
		t.Fatal(err)
	}
	s, err = login("scraper")
	if err != nil {
		t.Fatal(err)
	}
	if code, errs := rawGet(t, p, s.Auth.ClientToken, "sys/metrics?format=prometheus"); code != 200 {
		t.Errorf("sys/metrics with a token bound to 127.0.0.1/32, from 127.0.0.1 = %d %q, want 200", code, errs)
	}

	if _, err := login("outside"); respCode(err) != 403 {
		t.Fatalf("login from 127.0.0.1 bound to 10.0.0.0/8 = %v, want 403", err)
	}

	// An approle login carries its role's CIDRs into the token too.
	enableAuth(t, root, "approle", "approle", nil)
	if _, err := root.Logical().Write("auth/approle/role/app", map[string]any{
		"token_policies": "reader", "token_bound_cidrs": "127.0.0.0/8",
	}); err != nil {
		t.Fatal(err)
	}
	rid, err := root.Logical().Read("auth/approle/role/app/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid, err := root.Logical().Write("auth/approle/role/app/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err = anon.Logical().Write("auth/approle/login", map[string]any{"role_id": rid.Data["role_id"], "secret_id": sid.Data["secret_id"]})
	if err != nil {
		t.Fatalf("approle login from inside: %v", err)
	}
	look, err := root.Auth().Token().Lookup(s.Auth.ClientToken)
	if err != nil {
		t.Fatal(err)
	}
	if got := stringList(look.Data["bound_cidrs"]); !slices.Equal(got, []string{"127.0.0.0/8"}) {
		t.Errorf("approle token bound_cidrs = %v, want [127.0.0.0/8]", look.Data["bound_cidrs"])
	}
	checkPolicyScope(t, p, root, s.Auth.ClientToken)
}

func TestBoundCIDRTokenRole(t *testing.T) {
	p, root := startDev(t)
	putReader(t, root)
	if _, err := root.Logical().Write("auth/token/roles/edge", map[string]any{
		"allowed_policies": "reader", "token_bound_cidrs": []string{"192.0.2.0/24"},
	}); err != nil {
		t.Fatal(err)
	}
	role, err := root.Logical().Read("auth/token/roles/edge")
	if err != nil {
		t.Fatal(err)
	}
	if got := stringList(role.Data["token_bound_cidrs"]); !slices.Equal(got, []string{"192.0.2.0/24"}) {
		t.Errorf("role token_bound_cidrs = %v", role.Data["token_bound_cidrs"])
	}

	// Vault creates it, even from an address outside its CIDRs...
	s, err := root.Logical().Write("auth/token/create/edge", map[string]any{"num_uses": 3})
	if err != nil {
		t.Fatalf("create against a role bound to 192.0.2.0/24: %v", err)
	}
	tok := s.Auth.ClientToken

	// ...but refuses every use of it from here, exactly as a bad token.
	_, bogus := rawGet(t, p, "hvs.bogusbogusbogusbogusbogus", "auth/token/lookup-self")
	for _, path := range []string{"auth/token/lookup-self", "secret/data/allowed", "sys/capabilities-self", "cubbyhole/x"} {
		code, errs := rawGet(t, p, tok, path)
		if code != 403 || !slices.Equal(errs, bogus) {
			t.Errorf("GET %s with the bound token = %d %v, want 403 %v (as a bad token)", path, code, errs, bogus)
		}
	}
	c := p.client(t, tok)
	if _, err := c.Auth().Token().RenewSelf(0); respCode(err) != 403 {
		t.Errorf("renew-self from outside = %v, want 403", err)
	}
	if err := c.Auth().Token().RevokeSelf(""); respCode(err) != 403 {
		t.Errorf("revoke-self from outside = %v, want 403", err)
	}
	if _, err := c.Logical().Write("auth/token/create", map[string]any{"policies": "reader"}); respCode(err) != 403 {
		t.Errorf("creating a child from outside = %v, want 403", err)
	}

	// Root sees it alive, bound, and with none of its uses spent.
	look, err := root.Auth().Token().Lookup(tok)
	if err != nil {
		t.Fatalf("root lookup of the bound token: %v", err)
	}
	if got := stringList(look.Data["bound_cidrs"]); !slices.Equal(got, []string{"192.0.2.0/24"}) {
		t.Errorf("lookup bound_cidrs = %v, want [192.0.2.0/24]", look.Data["bound_cidrs"])
	}
	if n, _ := look.Data["num_uses"].(json.Number).Int64(); n != 3 {
		t.Errorf("num_uses after refused uses = %v, want 3 (a refusal is no use)", look.Data["num_uses"])
	}
	if look.Data["role"] != "edge" {
		t.Errorf("lookup role = %v, want edge", look.Data["role"])
	}

	// A role bound to this address: its tokens work here.
	if _, err := root.Logical().Write("auth/token/roles/local", map[string]any{
		"allowed_policies": "reader", "token_bound_cidrs": "127.0.0.1",
	}); err != nil {
		t.Fatal(err)
	}
	s, err = root.Logical().Write("auth/token/create/local", nil)
	if err != nil {
		t.Fatal(err)
	}
	checkPolicyScope(t, p, root, s.Auth.ClientToken)
	if look, err := p.client(t, s.Auth.ClientToken).Auth().Token().LookupSelf(); err != nil ||
		!slices.Equal(stringList(look.Data["bound_cidrs"]), []string{"127.0.0.1"}) {
		t.Errorf("lookup-self of a token bound to 127.0.0.1 = %v, %v", look, err)
	}

	// An unbound token shows no bound_cidrs, as in Vault.
	s, err = root.Logical().Write("auth/token/create", map[string]any{"policies": "reader"})
	if err != nil {
		t.Fatal(err)
	}
	if look, err := root.Auth().Token().Lookup(s.Auth.ClientToken); err != nil || look.Data["bound_cidrs"] != nil {
		t.Errorf("lookup of an unbound token: bound_cidrs %v, err %v; want no field", look, err)
	}
}
