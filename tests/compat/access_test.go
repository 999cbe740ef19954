package compat

import (
	"os/exec"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"
)

// TestWhoCanReadThis checks sys/access lists exactly the policies whose
// rules touch the path, the token roles that hand them out, and that a 403
// names what was missing.
func TestWhoCanReadThis(t *testing.T) {
	p, root := startDev(t)
	cx := ctx(t)
	for name, text := range map[string]string{
		"payments-read": `path "secret/data/payments/*" { capabilities = ["read"] }`,
		"all-secrets":   `path "secret/data/*" { capabilities = ["read", "list"] }`,
		"no-payments":   `path "secret/data/payments/db" { capabilities = ["deny"] }`,
		"elsewhere":     `path "transit/*" { capabilities = ["update"] }`,
	} {
		if err := root.Sys().PutPolicyWithContext(cx, name, text); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := root.Logical().Write("auth/token/roles/payments-app", map[string]any{"allowed_policies": "payments-read"}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("auth/token/roles/unrelated", map[string]any{"allowed_policies": "elsewhere"}); err != nil {
		t.Fatal(err)
	}
	sec, err := root.Logical().ReadWithData("sys/access", map[string][]string{"path": {"secret/data/payments/db"}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, x := range sec.Data["policies"].([]any) {
		m := x.(map[string]any)
		got[m["name"].(string)] = m["effect"].(string) + " " + m["rule"].(string)
	}
	want := map[string]string{
		"payments-read": "grant secret/data/payments/*",
		"all-secrets":   "grant secret/data/*",
		"no-payments":   "deny secret/data/payments/db",
		"root":          "grant *",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("policy %s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if _, ok := got["elsewhere"]; ok {
		t.Error("a policy on another path is listed")
	}
	roles := sec.Data["roles"].([]any)
	if len(roles) != 1 || roles[0].(map[string]any)["name"] != "payments-app" {
		t.Errorf("roles = %v, want only payments-app", roles)
	}

	// A token without sudo on sys/access is refused; a 403 says what is missing.
	s, err := root.Auth().Token().CreateWithContext(cx, &vault.TokenCreateRequest{Policies: []string{"elsewhere"}})
	if err != nil {
		t.Fatal(err)
	}
	r := doRaw(t, "GET", p.addr+"/v1/secret/data/payments/db", s.Auth.ClientToken, nil, nil)
	if r.status != 403 || len(r.errors) != 2 || r.errors[0] != "permission denied" || !strings.Contains(r.errors[1], `missing "read" on "secret/data/payments/db"`) {
		t.Errorf("403 = %d %q", r.status, r.errors)
	}
	if r := doRaw(t, "GET", p.addr+"/v1/sys/access?path=secret/data/x", s.Auth.ClientToken, nil, nil); r.status != 403 {
		t.Errorf("sys/access without sudo = %d", r.status)
	}

	cmd := exec.Command(cofferBin, "access", "who", "secret/data/payments/db")
	cmd.Env = append(cmd.Environ(), "COFFER_ADDR="+p.addr, "COFFER_TOKEN=root")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "payments-read") || !strings.Contains(string(out), "payments-app") {
		t.Errorf("coffer access who: %v\n%s", err, out)
	}
}
