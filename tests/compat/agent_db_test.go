package compat

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// leaseTimes looks a lease up as root and returns its issue and expiry
// times and whether it was renewed.
func leaseTimes(t *testing.T, c *vault.Client, id string) (issued, expires time.Time, renewed bool) {
	t.Helper()
	s, err := c.Sys().Lookup(id)
	if err != nil {
		t.Fatalf("lookup lease: %v", err)
	}
	parse := func(k string) time.Time {
		v, _ := s.Data[k].(string)
		tm, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			t.Fatalf("lease %s = %q: %v", k, v, err)
		}
		return tm
	}
	return parse("issue_time"), parse("expire_time"), s.Data["last_renewal"] != nil
}

// TestAgentDatabaseCredsRenewAndRefetch runs the real `coffer agent`
// against a real server and a real PostgreSQL: it renders
// database/creds/ro, renews the lease (the credential still logs in after
// its default TTL, and the server shows the renewal), and before the
// lease's max TTL fetches new credentials, re-renders the file and runs
// the command, so the application never holds a dead credential.
func TestAgentDatabaseCredsRenewAndRefetch(t *testing.T) {
	const defaultTTL, maxTTL = 4 * time.Second, 12 * time.Second
	testStart := time.Now()
	pg := startPG(t)
	p, root := startDev(t)
	setupDatabase(t, root, pg, "4s", "12s")
	cx := ctx(t)
	if err := root.Sys().PutPolicyWithContext(cx, "agent-db", `
path "database/creds/ro" { capabilities = ["read"] }
path "sys/leases/renew"  { capabilities = ["update"] }
`); err != nil {
		t.Fatal(err)
	}
	sec, err := root.Auth().Token().CreateWithContext(cx, &vault.TokenCreateRequest{Policies: []string{"agent-db"}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	tok := sec.Auth.ClientToken

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "db", "creds")
	cmdLog := filepath.Join(dir, "cmd.log")
	cfgPath := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
coffer { address = %q }
auto_auth {
  method "token_file" { config = { token_file_path = %q } }
}
template {
  contents    = "{{ with secret \"database/creds/ro\" }}{{ .Data.username }} {{ .Data.password }}{{ end }}"
  destination = %q
  perms       = "0600"
  command     = "echo rendered >> %s"
}
`, p.addr, tokenFile, out, cmdLog)), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startSide(t, "agent", "--config", cfgPath)

	creds := func() (user, pw string) {
		b, err := os.ReadFile(out)
		if err != nil {
			return "", ""
		}
		user, pw, _ = strings.Cut(string(b), " ")
		return user, pw
	}
	waitFor(t, "the first credentials rendered", 20*time.Second, func() bool { u, _ := creds(); return u != "" })
	user1, pw1 := creds()
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode of %s = %v (%v), want 0600", out, fi.Mode().Perm(), err)
	}
	keys, err := root.Logical().List("sys/leases/lookup/database/creds/ro/")
	if err != nil || keys == nil {
		t.Fatalf("list leases: %v, %v", keys, err)
	}
	ids, _ := keys.Data["keys"].([]any)
	if len(ids) != 1 {
		t.Fatalf("leases = %v, want the agent's one", ids)
	}
	lease1 := "database/creds/ro/" + ids[0].(string)
	issued, _, _ := leaseTimes(t, root, lease1)
	conn, err := pg.Connect(ctx(t), user1, pw1)
	if err != nil {
		t.Fatalf("log in with the rendered credentials: %v", err)
	}
	conn.Close(context.Background())

	// Past the default TTL the first credential still works: the agent
	// renewed the lease, in the server and in PostgreSQL (VALID UNTIL).
	time.Sleep(time.Until(issued.Add(defaultTTL + 1500*time.Millisecond)))
	if u, _ := creds(); u != user1 {
		t.Fatalf("the credentials changed at %v, before any need (default TTL %v, max %v)", time.Since(issued), defaultTTL, maxTTL)
	}
	_, expires, renewed := leaseTimes(t, root, lease1)
	if !renewed || !expires.After(issued.Add(defaultTTL)) {
		t.Errorf("lease after %v: renewed %v, expires %v after issue; want renewed past %v", time.Since(issued), renewed, expires.Sub(issued), defaultTTL)
	}
	conn, err = pg.Connect(ctx(t), user1, pw1)
	if err != nil {
		t.Fatalf("log in with the first credentials %v after issue (default TTL %v): %v", time.Since(issued).Round(time.Millisecond), defaultTTL, err)
	}
	conn.Close(context.Background())

	// Before the max TTL the agent fetches new credentials and re-renders.
	waitFor(t, "new credentials rendered", maxTTL, func() bool { u, _ := creds(); return u != "" && u != user1 })
	changedAt := time.Since(issued)
	user2, pw2 := creds()
	t.Logf("new credentials rendered %v after the first were issued: %v before their max TTL %v", changedAt.Round(time.Millisecond), (maxTTL - changedAt).Round(time.Millisecond), maxTTL)
	if changedAt >= maxTTL {
		t.Errorf("new credentials came %v after issue, not before the max TTL %v", changedAt, maxTTL)
	}
	conn, err = pg.Connect(ctx(t), user2, pw2)
	if err != nil {
		t.Fatalf("log in with the new credentials: %v", err)
	}
	conn.Close(context.Background())
	waitFor(t, "the command run after each render", 5*time.Second, func() bool {
		b, _ := os.ReadFile(cmdLog)
		return strings.Count(string(b), "rendered") == 2
	})
	// The first credential ends with its lease; the new one lives on.
	waitRoleGone(t, pg, user1, time.Until(issued.Add(maxTTL+5*time.Second)))
	if ok, err := pg.RoleExists(ctx(t), user2); err != nil || !ok {
		t.Errorf("the new role exists = %v, %v", ok, err)
	}

	logs := a.out.String()
	for _, want := range []string{"lease renewed", "re-fetching leased secret before it expires"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the agent's log lacks %q:\n%s", want, logs)
		}
	}
	for _, s := range []string{tok, pw1, pw2} {
		if strings.Contains(logs, s) {
			t.Error("the agent's log contains its token or a password")
		}
	}
	if d := time.Since(testStart); d > 60*time.Second {
		t.Errorf("the test took %v, over its 60 s bound", d)
	}
}
