package compat

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/coffer-dev/coffer/api"
	"github.com/coffer-dev/coffer/internal/cli"
	"github.com/coffer-dev/coffer/internal/declarative"
)

// TestDeclarativePlanAgainstRealServer reads a real server's state the
// way "coffer operator apply --dry-run" does and plans a configuration
// against it: objects the configuration did not create are never changed.
func TestDeclarativePlanAgainstRealServer(t *testing.T) {
	p, c := startDev(t)
	mountTransit(t, c)
	if err := c.Sys().PutPolicy("ops", `path "sys/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := `
mount "secret" {
  type    = "kv"
  options = { version = "2" }
}
mount "transit" {
  type        = "transit"
  description = "changed by the file"
}
mount "payments" { type = "kv" }
policy "ops" {
  text = "path \"sys/*\" { capabilities = [\"read\"] }"
}
policy "app" {
  text = "path \"secret/data/app/*\" { capabilities = [\"read\"] }"
}
`
	if err := os.WriteFile(filepath.Join(dir, "day0.hcl"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	desired, err := declarative.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := api.NewClient(api.Config{Address: p.addr, Token: "root"})
	if err != nil {
		t.Fatal(err)
	}
	current, owned, _, err := cli.ReadState(ctx(t), ac)
	if err != nil {
		t.Fatalf("ReadState: %v", err)
	}
	if got := current[declarative.Key{Kind: declarative.Mount, Name: "secret/"}]; got.Type != "kv" || got.Options["version"] != "2" {
		t.Errorf("secret/ as read = %+v, want kv version 2", got)
	}
	if got := current[declarative.Key{Kind: declarative.Policy, Name: "ops"}].Text; got == "" {
		t.Error("policy ops not read")
	}
	var got []string
	for _, ch := range declarative.Plan(current, desired, owned) {
		got = append(got, string(ch.Op)+" "+ch.Key.String())
	}
	want := []string{
		"create policy app",
		"create mount payments/",
		"conflict mount transit/", // exists, not created by the file, described differently
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plan = %q, want %q", got, want)
	}
}
