package compat

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/pgtest"
	vault "github.com/hashicorp/vault/api"
)

// startPG starts a throwaway PostgreSQL for one test; it fails (never
// skips) when PostgreSQL is not installed.
func startPG(t *testing.T) *pgtest.Server {
	t.Helper()
	pg, err := pgtest.Start(context.Background(), pgtest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Stop() })
	if err := pg.Exec(ctx(t), `CREATE TABLE items (id int); INSERT INTO items VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	return pg
}

// setupDatabase mounts the database engine at database/ and configures
// connection "pg" and role "ro" with the given TTLs.
func setupDatabase(t *testing.T, c *vault.Client, pg *pgtest.Server, defaultTTL, maxTTL string) {
	t.Helper()
	if err := c.Sys().Mount("database", &vault.MountInput{Type: "database"}); err != nil {
		t.Fatalf("mount database: %v", err)
	}
	if _, err := c.Logical().Write("database/config/pg", map[string]any{
		"plugin_name": "postgresql-database-plugin", "connection_url": pg.TemplateURL(),
		"username": pg.SuperUser, "password": pg.SuperPassword, "allowed_roles": "ro",
	}); err != nil {
		t.Fatalf("write config: %v", err)
	}
	if _, err := c.Logical().Write("database/roles/ro", map[string]any{
		"db_name": "pg", "default_ttl": defaultTTL, "max_ttl": maxTTL,
		"creation_statements": `CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON items TO "{{name}}";`,
	}); err != nil {
		t.Fatalf("write role: %v", err)
	}
}

func readCreds(t *testing.T, c *vault.Client) (*vault.Secret, string, string) {
	t.Helper()
	s, err := c.Logical().Read("database/creds/ro")
	if err != nil {
		t.Fatalf("read creds: %v", err)
	}
	if s == nil || s.LeaseID == "" || !s.Renewable {
		t.Fatalf("creds = %+v, want a renewable lease", s)
	}
	return s, s.Data["username"].(string), s.Data["password"].(string)
}

func waitRoleGone(t *testing.T, pg *pgtest.Server, user string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, err := pg.RoleExists(ctx(t), user)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("role %s still exists %v after its lease should have ended", user, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestDatabaseCredsLeaseLookupRenewRevoke(t *testing.T) {
	pg := startPG(t)
	_, c := startDev(t)
	setupDatabase(t, c, pg, "1h", "2h")

	s, user, pw := readCreds(t, c)
	if !strings.HasPrefix(s.LeaseID, "database/creds/ro/") || s.LeaseDuration != 3600 {
		t.Errorf("lease = %q for %ds, want database/creds/ro/... for 3600s", s.LeaseID, s.LeaseDuration)
	}
	conn, err := pg.Connect(ctx(t), user, pw)
	if err != nil {
		t.Fatalf("login with issued creds: %v", err)
	}
	defer conn.Close(context.Background())

	l, err := c.Sys().Lookup(s.LeaseID)
	if err != nil {
		t.Fatalf("lookup: %v", err)
	}
	if l.Data["id"] != s.LeaseID || l.Data["renewable"] != true {
		t.Errorf("lookup = %v", l.Data)
	}
	keys, err := c.Logical().List("sys/leases/lookup/database/creds/ro/")
	if err != nil || keys == nil || len(keys.Data["keys"].([]any)) != 1 {
		t.Errorf("LIST sys/leases/lookup/database/creds/ro/ = %v, %v; want one key", keys, err)
	}

	r, err := c.Sys().Renew(s.LeaseID, 3*3600)
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	if r.LeaseDuration > 7200 || r.LeaseDuration < 7100 {
		t.Errorf("renew for 3h granted %ds, want about 7200 (max_ttl 2h)", r.LeaseDuration)
	}

	if err := c.Sys().Revoke(s.LeaseID); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	waitRoleGone(t, pg, user, 10*time.Second)
	if _, err := conn.Exec(ctx(t), "SELECT 1"); err == nil {
		t.Error("the revoked user's open session still works")
	}
	if _, err := c.Sys().Lookup(s.LeaseID); err == nil {
		t.Error("lookup of a revoked lease succeeded")
	}
}

func TestDatabaseLeaseExpiryDropsTheRole(t *testing.T) {
	pg := startPG(t)
	_, c := startDev(t)
	setupDatabase(t, c, pg, "2s", "1m")
	_, user, _ := readCreds(t, c)
	waitRoleGone(t, pg, user, 15*time.Second)
}

func TestDatabaseBadInputThroughTheAPI(t *testing.T) {
	pg := startPG(t)
	_, c := startDev(t)
	setupDatabase(t, c, pg, "1h", "2h")
	_, err := c.Logical().Write("database/config/closed", map[string]any{
		"plugin_name": "postgresql-database-plugin", "connection_url": "postgresql://{{username}}:{{password}}@" + freeAddr(t) + "/postgres",
		"username": "u", "password": "a-password-never-shown",
	})
	var re *vault.ResponseError
	if err == nil || !asResponseError(err, &re) || re.StatusCode != 400 || strings.Contains(err.Error(), "a-password-never-shown") {
		t.Errorf("config with a closed port = %v, want a 400 without the password", err)
	}
	if s, err := c.Logical().Read("database/config/closed"); err != nil || s != nil {
		t.Errorf("refused config was stored: %v, %v", s, err)
	}
	if _, err := c.Logical().Write("database/roles/other", map[string]any{"db_name": "pg", "creation_statements": "SELECT 1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Logical().Read("database/creds/other"); err == nil || !strings.Contains(err.Error(), "allowed_roles") {
		t.Errorf("creds of a role outside allowed_roles = %v, want a 400 about allowed_roles", err)
	}
}

func TestDatabaseLeaseRevokedOnTimeAfterRestart(t *testing.T) {
	pg := startPG(t)
	dir := t.TempDir()
	p := startServer(t, dir, "")
	keys, root := initUnseal(t, p)
	c := p.client(t, root)
	setupDatabase(t, c, pg, "8s", "1m")
	_, user, _ := readCreds(t, c)
	p.stop()

	p2 := startServer(t, dir, "")
	unseal(t, p2, keys)
	if ok, err := pg.RoleExists(ctx(t), user); err != nil || !ok {
		t.Fatalf("role %s gone before its lease ended (%v)", user, err)
	}
	waitRoleGone(t, pg, user, 20*time.Second)
}

func asResponseError(err error, re **vault.ResponseError) bool {
	e, ok := err.(*vault.ResponseError)
	if ok {
		*re = e
	}
	return ok
}
