package database

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

const readonlyCreation = `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';
GRANT SELECT ON public.items TO "{{name}}";`

func setupItems(t *testing.T) {
	adminExec(t, `CREATE TABLE IF NOT EXISTS public.items (id int);
CREATE TABLE IF NOT EXISTS public.hidden (id int);
TRUNCATE public.items; INSERT INTO public.items VALUES (1), (2);`)
}

func TestCredsCanSelectExactlyWhatWasGranted(t *testing.T) {
	setupItems(t)
	e := newEnv(t)
	e.configure("pg", map[string]any{"allowed_roles": []string{"readonly"}})
	e.must(logical.UpdateOperation, "roles/readonly", map[string]any{
		"db_name": "pg", "creation_statements": readonlyCreation, "default_ttl": "1h", "max_ttl": "24h"})

	r := e.must(logical.ReadOperation, "creds/readonly", nil)
	if r.Secret == nil || r.Secret.TTL != time.Hour || r.Secret.MaxTTL != 24*time.Hour || !r.Secret.Renewable {
		t.Fatalf("Secret = %+v, want TTL 1h, MaxTTL 24h, renewable", r.Secret)
	}
	var internal secretData
	if err := json.Unmarshal(r.Secret.InternalData, &internal); err != nil || internal.DBName != "pg" || internal.Role != "readonly" {
		t.Errorf("InternalData = %s (%v), want db_name pg and role readonly", r.Secret.InternalData, err)
	}
	data := r.Data.(map[string]any)
	user, pw := data["username"].(string), data["password"].(string)
	if !strings.HasPrefix(user, "v-token-readonly-") || len(user) > 63 || internal.Username != user {
		t.Errorf("username = %q, want v-token-readonly-<random>-<unix> within 63 chars, same as the lease's", user)
	}
	if len(pw) < 20 {
		t.Errorf("password has %d characters, want at least 20", len(pw))
	}

	ctx := ctxT(t)
	c, err := pg.Connect(ctx, user, pw)
	if err != nil {
		t.Fatalf("login with the issued credentials: %v", err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM public.items`).Scan(&n); err != nil || n != 2 {
		t.Errorf("SELECT count(*) FROM items = %d, %v; want 2, nil", n, err)
	}
	for _, sql := range []string{`INSERT INTO public.items VALUES (3)`, `SELECT * FROM public.hidden`, `CREATE ROLE sneaky`} {
		if _, err := c.Exec(ctx, sql); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("%s: err = %v, want permission denied", sql, err)
		}
	}

	var validUntil time.Time
	if err := c.QueryRow(ctx, `SELECT rolvaliduntil FROM pg_roles WHERE rolname = $1`, user).Scan(&validUntil); err != nil {
		t.Fatal(err)
	}
	if d := time.Until(validUntil); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("VALID UNTIL is %v from now, want about 1h", d)
	}
}

func TestRevokeDropsTheRoleAndTerminatesItsSessions(t *testing.T) {
	setupItems(t)
	e := newEnv(t)
	e.configure("pg", nil)
	e.must(logical.UpdateOperation, "roles/ro", map[string]any{"db_name": "pg", "creation_statements": []string{readonlyCreation}, "default_ttl": 600})
	user, pw, lease := e.creds("ro")

	ctx := ctxT(t)
	c, err := pg.Connect(ctx, user, pw)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `SELECT 1`); err != nil {
		t.Fatal(err)
	}

	if err := e.b.RevokeSecret(ctx, lease); err != nil {
		t.Fatalf("RevokeSecret: %v", err)
	}
	if roleExists(t, user) {
		t.Errorf("role %s still exists after revoke", user)
	}
	if _, err := c.Exec(ctx, `SELECT 1`); err == nil {
		t.Error("the revoked user's open session still runs queries")
	}
	if canLogin(t, user, pw) {
		t.Error("the revoked user still logs in")
	}
	if err := e.b.RevokeSecret(ctx, lease); err != nil {
		t.Errorf("second RevokeSecret = %v, want nil (idempotent)", err)
	}
}

func TestRevokeRunsTheRolesRevocationStatements(t *testing.T) {
	e := newEnv(t)
	e.configure("pg", nil)
	e.must(logical.UpdateOperation, "roles/custom", map[string]any{"db_name": "pg",
		"creation_statements":   `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}'`,
		"revocation_statements": `DROP ROLE "{{username}}"`})
	user, _, lease := e.creds("custom")
	if err := e.b.RevokeSecret(ctxT(t), lease); err != nil {
		t.Fatal(err)
	}
	if roleExists(t, user) {
		t.Errorf("role %s survived its revocation statement", user)
	}
}

func TestRenewIsCappedAtMaxTTL(t *testing.T) {
	e := newEnv(t)
	e.configure("pg", nil)
	e.must(logical.UpdateOperation, "roles/short", map[string]any{"db_name": "pg",
		"creation_statements": readonlyCreation, "default_ttl": "1h", "max_ttl": "2h"})
	setupItems(t)
	user, _, lease := e.creds("short")
	ctx := ctxT(t)

	validUntil := func() time.Duration {
		t.Helper()
		c, err := pg.Admin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		var v time.Time
		if err := c.QueryRow(ctx, `SELECT rolvaliduntil FROM pg_roles WHERE rolname = $1`, user).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v.Sub(e.clock.Now())
	}

	e.clock.Add(30 * time.Minute)
	got, err := e.b.RenewSecret(ctx, lease, 45*time.Minute)
	if err != nil || got != 45*time.Minute {
		t.Fatalf("RenewSecret(45m) after 30m = %v, %v; want 45m", got, err)
	}
	if d := validUntil(); d < 44*time.Minute || d > 46*time.Minute {
		t.Errorf("VALID UNTIL is %v ahead, want about 45m", d)
	}

	e.clock.Add(60 * time.Minute) // 90m after issue: 30m left of max_ttl
	got, err = e.b.RenewSecret(ctx, lease, time.Hour)
	if err != nil || got < 29*time.Minute || got > 30*time.Minute {
		t.Fatalf("RenewSecret(1h) 90m after issue = %v, %v; want about 30m (max_ttl 2h)", got, err)
	}
	if d := validUntil(); d < 29*time.Minute || d > 31*time.Minute {
		t.Errorf("VALID UNTIL is %v ahead, want about 30m", d)
	}

	e.clock.Add(31 * time.Minute)
	if _, err := e.b.RenewSecret(ctx, lease, time.Hour); logical.CodeOf(err) != logical.Invalid {
		t.Errorf("RenewSecret past max_ttl = %v, want an Invalid error", err)
	}
}

func TestRotateRootKeepsTheEngineWorking(t *testing.T) {
	ctx := ctxT(t)
	rootPw, err := pg.CreateSuperuser(ctx, "rotated_root")
	if err != nil {
		t.Fatal(err)
	}
	setupItems(t)
	e := newEnv(t)
	e.must(logical.UpdateOperation, "config/pg", map[string]any{"plugin_name": PluginName,
		"connection_url": pg.TemplateURL(), "username": "rotated_root", "password": rootPw, "allowed_roles": "ro"})
	e.must(logical.UpdateOperation, "roles/ro", map[string]any{"db_name": "pg", "creation_statements": readonlyCreation})

	e.must(logical.UpdateOperation, "rotate-root/pg", nil)
	if canLogin(t, "rotated_root", rootPw) {
		t.Error("the old root password still logs in after rotate-root")
	}
	user, pw, _ := e.creds("ro")
	if !canLogin(t, user, pw) {
		t.Error("creds issued after rotate-root do not log in")
	}
	cfg := e.must(logical.ReadOperation, "config/pg", nil)
	raw, _ := json.Marshal(cfg.Data)
	if strings.Contains(string(raw), rootPw) || strings.Contains(string(raw), `"password":`) {
		t.Errorf("config read shows a password: %s", raw)
	}
	// A new engine over the same storage (a restart) uses the new password.
	restarted, err := New(Config{Storage: e.storage, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer restarted.Close()
	e.b.Close()
	e.b = restarted
	if user, pw, _ := e.creds("ro"); !canLogin(t, user, pw) {
		t.Error("creds from a restarted engine after rotate-root do not log in")
	}
}

func TestStaticRoleRotatesTheUsersPassword(t *testing.T) {
	adminExec(t, `CREATE ROLE static_one LOGIN PASSWORD 'initial-password-1'`)
	e := newEnv(t)
	e.configure("pg", nil)
	e.must(logical.UpdateOperation, "static-roles/one", map[string]any{"db_name": "pg", "username": "static_one", "rotation_period": "1h"})
	if canLogin(t, "static_one", "initial-password-1") {
		t.Error("the password from before the static role still logs in")
	}
	first := e.must(logical.ReadOperation, "static-creds/one", nil).Data.(map[string]any)
	if first["username"] != "static_one" || first["rotation_period"] != int64(3600) {
		t.Errorf("static-creds = %v", first)
	}
	if ttl := first["ttl"].(int64); ttl < 3590 || ttl > 3600 {
		t.Errorf("ttl = %d, want about 3600", ttl)
	}
	if !canLogin(t, "static_one", first["password"].(string)) {
		t.Fatal("static-creds do not log in")
	}
	// Not due yet: nothing changes.
	if err := e.b.RotateDue(ctxT(t), e.clock.Now().Add(59*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if again := e.must(logical.ReadOperation, "static-creds/one", nil).Data.(map[string]any); again["password"] != first["password"] {
		t.Error("RotateDue rotated before rotation_period passed")
	}
	if err := e.b.RotateDue(ctxT(t), e.clock.Now().Add(61*time.Minute)); err != nil {
		t.Fatal(err)
	}
	second := e.must(logical.ReadOperation, "static-creds/one", nil).Data.(map[string]any)
	if second["password"] == first["password"] {
		t.Fatal("RotateDue did not rotate a due role")
	}
	if canLogin(t, "static_one", first["password"].(string)) || !canLogin(t, "static_one", second["password"].(string)) {
		t.Error("after rotation the old password must fail and the new one log in")
	}
}

func TestAlternatingStaticRoleKeepsHandedOutCredentialsWorking(t *testing.T) {
	adminExec(t, `CREATE ROLE app_a LOGIN; CREATE ROLE app_b LOGIN`)
	e := newEnv(t)
	e.configure("pg", nil)
	e.must(logical.UpdateOperation, "static-roles/app", map[string]any{"db_name": "pg", "username": "app_a",
		"alternate_username": "app_b", "rotation_strategy": "alternating", "rotation_period": 3600})
	creds := func() (string, string) {
		d := e.must(logical.ReadOperation, "static-creds/app", nil).Data.(map[string]any)
		return d["username"].(string), d["password"].(string)
	}
	u1, p1 := creds()
	if u1 != "app_a" || !canLogin(t, u1, p1) {
		t.Fatalf("first static-creds = %s (login %v), want app_a logging in", u1, canLogin(t, u1, p1))
	}

	e.must(logical.UpdateOperation, "rotate-role/app", nil)
	u2, p2 := creds()
	if u2 != "app_b" || !canLogin(t, u2, p2) {
		t.Fatalf("after one rotation static-creds = %s, want app_b logging in", u2)
	}
	if !canLogin(t, u1, p1) {
		t.Error("the credentials handed out before the rotation stopped working")
	}

	e.must(logical.UpdateOperation, "rotate-role/app", nil)
	u3, p3 := creds()
	if u3 != "app_a" || p3 == p1 || !canLogin(t, u3, p3) {
		t.Fatalf("after two rotations static-creds = %s, want app_a with a new password", u3)
	}
	if canLogin(t, u1, p1) {
		t.Error("app_a's old password still logs in after it was rotated again")
	}
	if !canLogin(t, u2, p2) {
		t.Error("app_b's credentials, handed out one rotation ago, stopped working")
	}

	read := e.must(logical.ReadOperation, "static-roles/app", nil).Data.(map[string]any)
	if read["rotation_strategy"] != "alternating" || read["alternate_username"] != "app_b" || read["username"] != "app_a" {
		t.Errorf("static-roles read = %v", read)
	}
}

func TestScramPasswordAuthentication(t *testing.T) {
	setupItems(t)
	e := newEnv(t)
	e.configure("pg", map[string]any{"password_authentication": "scram-sha-256"})
	e.must(logical.UpdateOperation, "roles/ro", map[string]any{"db_name": "pg", "creation_statements": readonlyCreation})
	user, pw, _ := e.creds("ro")
	if !canLogin(t, user, pw) {
		t.Fatal("creds made with a SCRAM verifier do not log in with the password")
	}
	ctx := ctxT(t)
	c, err := pg.Admin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var stored string
	if err := c.QueryRow(ctx, `SELECT rolpassword FROM pg_authid WHERE rolname = $1`, user).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored, "SCRAM-SHA-256$4096:") {
		t.Errorf("stored password = %.20q..., want a SCRAM-SHA-256 verifier", stored)
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	e.configure("pg", map[string]any{"allowed_roles": []string{"ok-*"}})
	closed := closedPort(t)

	for name, tc := range map[string]struct {
		path string
		body map[string]any
		want string
	}{
		"a closed port fails verification": {"config/closed", map[string]any{"plugin_name": PluginName,
			"connection_url": "postgresql://{{username}}:{{password}}@" + closed + "/postgres?sslmode=disable",
			"username":       "x", "password": "closed-port-password"}, "error verifying connection"},
		"a wrong password fails verification": {"config/wrongpw", map[string]any{"plugin_name": PluginName,
			"connection_url": pg.TemplateURL(), "username": pg.SuperUser, "password": "wrong-password-123"}, "error verifying connection"},
		"another plugin is refused": {"config/mysql", map[string]any{"plugin_name": "mysql-database-plugin",
			"connection_url": pg.TemplateURL()}, "not supported"},
		"a missing plugin_name is refused":       {"config/none", map[string]any{"connection_url": pg.TemplateURL()}, "plugin_name must be provided"},
		"an unknown password_authentication":     {"config/pa", map[string]any{"plugin_name": PluginName, "connection_url": pg.TemplateURL(), "username": "u", "password": "p", "password_authentication": "md5"}, "password_authentication"},
		"a role without creation statements":     {"roles/empty", map[string]any{"db_name": "pg"}, "creation_statements are required"},
		"a role without db_name":                 {"roles/nodb", map[string]any{"creation_statements": "SELECT 1"}, "db_name is required"},
		"default_ttl above max_ttl":              {"roles/ttl", map[string]any{"db_name": "pg", "creation_statements": "SELECT 1", "default_ttl": "2h", "max_ttl": "1h"}, "default_ttl"},
		"a static role with a short period":      {"static-roles/fast", map[string]any{"db_name": "pg", "username": "x", "rotation_period": "1s"}, "rotation_period"},
		"an alternating role without alternate":  {"static-roles/alt", map[string]any{"db_name": "pg", "username": "x", "rotation_period": "1h", "rotation_strategy": "alternating"}, "alternate_username"},
		"an unknown rotation strategy":           {"static-roles/strat", map[string]any{"db_name": "pg", "username": "x", "rotation_period": "1h", "rotation_strategy": "random"}, "rotation_strategy"},
		"a role on a connection that is missing": {"static-roles/nodb", map[string]any{"db_name": "nope", "username": "x", "rotation_period": "1h"}, "does not exist"},
		"a malformed ttl":                        {"roles/badttl", map[string]any{"db_name": "pg", "creation_statements": "SELECT 1", "default_ttl": "soon"}, "duration"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := e.do(logical.UpdateOperation, tc.path, tc.body)
			if logical.CodeOf(err) != logical.Invalid || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("write %s = %v, want an Invalid error containing %q", tc.path, err, tc.want)
			}
			for _, secret := range []string{"closed-port-password", "wrong-password-123", pg.SuperPassword} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows a password: %v", err)
				}
			}
			if r, err := e.do(logical.ReadOperation, tc.path, nil); err != nil || r != nil {
				t.Errorf("after a refused write, read %s = %v, %v; want nothing stored", tc.path, r, err)
			}
		})
	}

	t.Run("a syntax error in creation statements leaves no role behind", func(t *testing.T) {
		e.must(logical.UpdateOperation, "roles/ok-broken", map[string]any{"db_name": "pg", "creation_statements": []string{
			`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}'`, `GRANT SELECT ON ON public.items TO "{{name}}"`}})
		_, err := e.do(logical.ReadOperation, "creds/ok-broken", nil)
		if logical.CodeOf(err) != logical.Invalid || !strings.Contains(err.Error(), "syntax error") {
			t.Fatalf("creds = %v, want an Invalid error with PostgreSQL's syntax error", err)
		}
		ctx := ctxT(t)
		c, cerr := pg.Admin(ctx)
		if cerr != nil {
			t.Fatal(cerr)
		}
		defer c.Close(ctx)
		var n int
		if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-token-ok-broke-%'`).Scan(&n); err != nil || n != 0 {
			t.Errorf("roles left behind = %d, %v; want 0", n, err)
		}
	})

	t.Run("a role not in allowed_roles gets no credentials", func(t *testing.T) {
		e.must(logical.UpdateOperation, "roles/other", map[string]any{"db_name": "pg", "creation_statements": readonlyCreation})
		_, err := e.do(logical.ReadOperation, "creds/other", nil)
		if logical.CodeOf(err) != logical.Invalid || !strings.Contains(err.Error(), "allowed_roles") {
			t.Fatalf("creds/other = %v, want an Invalid error about allowed_roles", err)
		}
	})

	t.Run("an unknown role", func(t *testing.T) {
		if _, err := e.do(logical.ReadOperation, "creds/ghost", nil); logical.CodeOf(err) != logical.Invalid {
			t.Fatalf("creds/ghost = %v, want Invalid", err)
		}
	})

	t.Run("unknown paths and operations", func(t *testing.T) {
		if _, err := e.do(logical.ReadOperation, "nope/x", nil); logical.CodeOf(err) != logical.NotFound {
			t.Errorf("read nope/x = %v, want NotFound", err)
		}
		if _, err := e.do(logical.DeleteOperation, "creds/x", nil); logical.CodeOf(err) != logical.Unsupported {
			t.Errorf("delete creds/x = %v, want Unsupported", err)
		}
	})
}

func TestConfigReadListAndDelete(t *testing.T) {
	e := newEnv(t)
	e.configure("pg", map[string]any{"allowed_roles": "a,b", "max_open_connections": "2"})
	r := e.must(logical.ReadOperation, "config/pg", nil)
	raw, _ := json.Marshal(r.Data)
	var got struct {
		PluginName   string   `json:"plugin_name"`
		AllowedRoles []string `json:"allowed_roles"`
		Details      struct {
			URL      string `json:"connection_url"`
			Username string `json:"username"`
			MaxOpen  int    `json:"max_open_connections"`
		} `json:"connection_details"`
		Verify bool `json:"verify_connection"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.PluginName != PluginName || fmt.Sprint(got.AllowedRoles) != "[a b]" || got.Details.URL != pg.TemplateURL() ||
		got.Details.Username != pg.SuperUser || got.Details.MaxOpen != 2 || !got.Verify {
		t.Errorf("config read = %s", raw)
	}
	if strings.Contains(string(raw), pg.SuperPassword) {
		t.Errorf("config read shows the password: %s", raw)
	}
	if keys := e.must(logical.ListOperation, "config/", nil).Data.(map[string]any)["keys"]; fmt.Sprint(keys) != "[pg]" {
		t.Errorf("LIST config = %v, want [pg]", keys)
	}
	e.must(logical.DeleteOperation, "config/pg", nil)
	if r, _ := e.do(logical.ReadOperation, "config/pg", nil); r != nil {
		t.Error("config still readable after delete")
	}
	if r, _ := e.do(logical.ListOperation, "config/", nil); r != nil {
		t.Errorf("LIST of no configs = %v, want nil (404)", r.Data)
	}
}

func TestExistenceCheck(t *testing.T) {
	e := newEnv(t)
	e.configure("pg", nil)
	for path, want := range map[string][2]bool{"config/pg": {true, true}, "config/other": {true, false}, "creds/x": {false, false}} {
		ok, exists, err := e.b.Exists(ctxT(t), &logical.Request{Operation: logical.UpdateOperation, Path: path})
		if err != nil || ok != want[0] || exists != want[1] {
			t.Errorf("Exists(%s) = %v, %v, %v; want %v", path, ok, exists, err, want)
		}
	}
}

func TestConcurrentCredsAndRevokes(t *testing.T) {
	e := newEnv(t)
	e.configure("pg", map[string]any{"max_open_connections": 2})
	e.must(logical.UpdateOperation, "roles/many", map[string]any{"db_name": "pg", "creation_statements": `CREATE ROLE "{{name}}" LOGIN PASSWORD '{{password}}'`})
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			_, _, lease := e.creds("many")
			errs <- e.b.RevokeSecret(context.Background(), lease)
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
