package compat

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	vault "github.com/hashicorp/vault/api"
)

// TestDeclarativeAppliedAtUnseal checks day-0 config: what the files
// describe exists after unseal, what they stop describing is removed, and
// what they did not create is never touched.
func TestDeclarativeAppliedAtUnseal(t *testing.T) {
	dir := t.TempDir()
	decl := filepath.Join(dir, "coffer.d")
	os.Mkdir(decl, 0o700)
	write := func(body string) {
		if err := os.WriteFile(filepath.Join(decl, "main.hcl"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`
mount "apps/" {
  type    = "kv"
  options = { version = "2" }
}
policy "apps-read" {
  text = <<EOT
path "apps/data/*" { capabilities = ["read"] }
EOT
}
`)
	extra := fmt.Sprintf("declarative_config = %q", decl)
	p := startServer(t, dir, extra)
	keys, root := initUnseal(t, p)
	c := p.client(t, root)
	cx := ctx(t)
	mounts, err := c.Sys().ListMountsWithContext(cx)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := mounts["apps/"]; !ok || m.Options["version"] != "2" {
		t.Fatalf("declared mount missing after unseal: %v", mounts)
	}
	if _, err := c.Sys().GetPolicyWithContext(cx, "apps-read"); err != nil {
		t.Fatalf("declared policy: %v", err)
	}
	// An object the files did not create.
	if err := c.Sys().PutPolicyWithContext(cx, "handmade", `path "x/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	owned, err := c.Logical().Read("sys/declarative/owned")
	if err != nil || len(owned.Data["owned"].([]any)) != 2 {
		t.Fatalf("owned = %v, %v", owned, err)
	}

	// Drop the policy from the files and restart: it goes, handmade stays.
	write(`
mount "apps/" {
  type    = "kv"
  options = { version = "2" }
}
`)
	p.stop()
	p2 := startServer(t, dir, extra)
	unseal(t, p2, keys)
	c2 := p2.client(t, root)
	pols, err := c2.Sys().ListPoliciesWithContext(cx)
	if err != nil {
		t.Fatal(err)
	}
	has := map[string]bool{}
	for _, n := range pols {
		has[n] = true
	}
	if has["apps-read"] || !has["handmade"] {
		t.Errorf("policies after the second apply = %v; want apps-read removed and handmade kept", pols)
	}
	if err := c2.Sys().MountWithContext(cx, "apps", &vault.MountInput{Type: "kv"}); err == nil {
		t.Error("apps/ is not mounted any more")
	}
}
