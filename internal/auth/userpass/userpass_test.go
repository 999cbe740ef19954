package userpass

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/coffer-dev/coffer/internal/barrier/barriertest"
	"github.com/coffer-dev/coffer/internal/logical"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newBackend(t *testing.T, l Lockout) (*Backend, logical.Storage, *clock) {
	t.Helper()
	s := barriertest.Storage(t)
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	b, err := New(Config{Storage: s, Now: c.now, BcryptCost: bcrypt.MinCost, Lockout: l})
	if err != nil {
		t.Fatal(err)
	}
	return b, s, c
}

func call(b *Backend, op logical.Operation, path, body, remote string) (*logical.Response, error) {
	return b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Body: []byte(body), RemoteAddr: remote})
}

func must(t *testing.T, b *Backend, op logical.Operation, path, body string) *logical.Response {
	t.Helper()
	r, err := call(b, op, path, body, "127.0.0.1:1")
	if err != nil {
		t.Fatalf("%s %s: %v", op, path, err)
	}
	return r
}

func TestLoginAndPasswordChange(t *testing.T) {
	b, _, _ := newBackend(t, Lockout{})
	must(t, b, logical.UpdateOperation, "users/Alice", `{"password":"pw-one","token_policies":"dev,ops","token_ttl":"30m","token_period":"1h"}`)
	r, err := call(b, logical.UpdateOperation, "login/alice", `{"password":"pw-one"}`, "10.0.0.1:9")
	if err != nil {
		t.Fatal(err)
	}
	a := r.Auth
	if !reflect.DeepEqual(a.Policies, []string{"dev", "ops"}) || a.TTL != 30*time.Minute || a.Period != time.Hour || !a.Renewable {
		t.Errorf("auth = %+v", a)
	}
	if !reflect.DeepEqual(a.Metadata, map[string]string{"username": "alice"}) || a.DisplayName != "alice" || a.Alias != "alice" {
		t.Errorf("metadata %v display %q alias %q", a.Metadata, a.DisplayName, a.Alias)
	}
	must(t, b, logical.UpdateOperation, "users/alice/password", `{"password":"pw-two"}`)
	if _, err := call(b, logical.UpdateOperation, "login/alice", `{"password":"pw-one"}`, "10.0.0.1:9"); logical.CodeOf(err) != logical.Invalid {
		t.Errorf("old password = %v, want Invalid", err)
	}
	if _, err := call(b, logical.UpdateOperation, "login/ALICE", `{"password":"pw-two"}`, "10.0.0.1:9"); err != nil {
		t.Errorf("new password, upper-case name: %v", err)
	}
	must(t, b, logical.UpdateOperation, "users/alice/policies", `{"token_policies":["x"]}`)
	d := must(t, b, logical.ReadOperation, "users/alice", "").Data.(map[string]any)
	if !reflect.DeepEqual(d["token_policies"], []string{"x"}) || d["password"] != nil || d["password_hash"] != nil {
		t.Errorf("read = %v", d)
	}
	if got := must(t, b, logical.ListOperation, "users", "").Data.(map[string]any)["keys"]; !reflect.DeepEqual(got, []string{"alice"}) {
		t.Errorf("list = %v", got)
	}
	roles, _ := b.Roles(context.Background())
	if want := []RoleInfo{{Name: "alice", Policies: []string{"x"}}}; !reflect.DeepEqual(roles, want) {
		t.Errorf("Roles = %v, want %v", roles, want)
	}
	must(t, b, logical.DeleteOperation, "users/alice", "")
	if _, err := call(b, logical.UpdateOperation, "login/alice", `{"password":"pw-two"}`, "10.0.0.1:9"); logical.CodeOf(err) != logical.Invalid {
		t.Errorf("deleted user = %v, want Invalid", err)
	}
}

func TestPasswordIsStoredAsBcrypt(t *testing.T) {
	b, s, _ := newBackend(t, Lockout{})
	must(t, b, logical.UpdateOperation, "users/bob", `{"password":"hunter2-canary"}`)
	raw, err := s.Get(context.Background(), "user/bob")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "hunter2-canary") {
		t.Fatal("the stored user holds the password")
	}
	if !strings.Contains(string(raw), `"password_hash":"`) {
		t.Fatalf("no hash stored: %s", raw)
	}
}

func TestRateLimitEngagesAndReleases(t *testing.T) {
	b, _, clk := newBackend(t, Lockout{Threshold: 3, Duration: time.Minute})
	must(t, b, logical.UpdateOperation, "users/u", `{"password":"right"}`)
	for i := range 3 {
		if _, err := call(b, logical.UpdateOperation, "login/u", `{"password":"wrong"}`, "10.0.0.1:1"); logical.CodeOf(err) != logical.Invalid {
			t.Fatalf("failure %d = %v", i, err)
		}
	}
	_, err := call(b, logical.UpdateOperation, "login/u", `{"password":"right"}`, "10.0.0.2:1")
	e, ok := err.(*logical.Error)
	if !ok || e.Code != logical.RateLimited || e.RetryAfter != time.Minute {
		t.Fatalf("locked login = %v, want RateLimited with RetryAfter 1m", err)
	}
	if strings.Contains(e.Error(), "right") {
		t.Error("error holds the password")
	}
	clk.add(30 * time.Second)
	if _, err := call(b, logical.UpdateOperation, "login/u", `{"password":"right"}`, "10.0.0.2:1"); err.(*logical.Error).RetryAfter != 30*time.Second {
		t.Fatalf("RetryAfter after 30s = %v", err)
	}
	clk.add(30 * time.Second)
	if _, err := call(b, logical.UpdateOperation, "login/u", `{"password":"right"}`, "10.0.0.2:1"); err != nil {
		t.Fatalf("login after the lock = %v", err)
	}
}

func TestRateLimitPerAddress(t *testing.T) {
	b, _, clk := newBackend(t, Lockout{Threshold: 1, Duration: time.Minute})
	must(t, b, logical.UpdateOperation, "users/v", `{"password":"right"}`)
	// One address tries four different (unknown) users: the address, not
	// any user, reaches its limit (4 × threshold).
	for _, u := range []string{"a", "b", "c", "d"} {
		call(b, logical.UpdateOperation, "login/"+u, `{"password":"x"}`, "192.0.2.1:1")
	}
	if _, err := call(b, logical.UpdateOperation, "login/v", `{"password":"right"}`, "192.0.2.1:2"); logical.CodeOf(err) != logical.RateLimited {
		t.Fatalf("login from the locked address = %v, want RateLimited", err)
	}
	if _, err := call(b, logical.UpdateOperation, "login/v", `{"password":"right"}`, "192.0.2.2:2"); err != nil {
		t.Fatalf("login from another address = %v", err)
	}
	clk.add(time.Hour)
	if err := b.Periodic(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(b.limit.seen); n != 0 {
		t.Errorf("%d counts left after prune", n)
	}
}

func TestLockoutDisabledAndOptions(t *testing.T) {
	l, err := LockoutFromOptions(map[string]string{"lockout_threshold": "2", "lockout_duration": "10s", "lockout_counter_reset": "1m", "lockout_disable": "true"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Lockout{Threshold: 2, Duration: 10 * time.Second, CounterReset: time.Minute, Disable: true}); l != want {
		t.Errorf("LockoutFromOptions = %+v, want %+v", l, want)
	}
	for _, bad := range []map[string]string{{"lockout_threshold": "x"}, {"lockout_duration": "-1"}, {"lockout_disable": "maybe"}} {
		if _, err := LockoutFromOptions(bad); logical.CodeOf(err) != logical.Invalid {
			t.Errorf("LockoutFromOptions(%v) = %v, want Invalid", bad, err)
		}
	}
	b, _, _ := newBackend(t, l)
	must(t, b, logical.UpdateOperation, "users/u", `{"password":"right"}`)
	for range 5 {
		call(b, logical.UpdateOperation, "login/u", `{"password":"wrong"}`, "10.0.0.1:1")
	}
	if _, err := call(b, logical.UpdateOperation, "login/u", `{"password":"right"}`, "10.0.0.1:1"); err != nil {
		t.Fatalf("login with lockout disabled = %v", err)
	}
}

func TestBadInput(t *testing.T) {
	b, _, _ := newBackend(t, Lockout{})
	long := strings.Repeat("x", 73)
	for name, tc := range map[string]struct {
		op         logical.Operation
		path, body string
		want       logical.Code
	}{
		"a new user without a password":   {logical.UpdateOperation, "users/n", `{}`, logical.Invalid},
		"an empty password":               {logical.UpdateOperation, "users/n", `{"password":""}`, logical.Invalid},
		"a password over 72 bytes":        {logical.UpdateOperation, "users/n", `{"password":"` + long + `"}`, logical.Invalid},
		"a password of the wrong type":    {logical.UpdateOperation, "users/n", `{"password":1}`, logical.Invalid},
		"a bad user name":                 {logical.UpdateOperation, "users/a b", `{"password":"p"}`, logical.Invalid},
		"a password change of a non-user": {logical.UpdateOperation, "users/ghost/password", `{"password":"p"}`, logical.Invalid},
		"login without password":          {logical.UpdateOperation, "login/n", `{}`, logical.Invalid},
		"login to a bad name":             {logical.UpdateOperation, "login/a%2fb", `{"password":"p"}`, logical.Invalid},
		"read of login":                   {logical.ReadOperation, "login/n", ``, logical.Unsupported},
		"unknown path":                    {logical.ReadOperation, "nope", ``, logical.NotFound},
		"malformed JSON":                  {logical.UpdateOperation, "login/n", `{"password":`, logical.Invalid},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := call(b, tc.op, tc.path, tc.body, "")
			if got := logical.CodeOf(err); err == nil || got != tc.want {
				t.Fatalf("got %v (code %d), want code %d", err, got, tc.want)
			}
		})
	}
}

func TestTokenBoundCIDRsAtLogin(t *testing.T) {
	b, _, _ := newBackend(t, Lockout{})
	must(t, b, logical.UpdateOperation, "users/c", `{"password":"p","token_bound_cidrs":"10.0.0.0/8"}`)
	if _, err := call(b, logical.UpdateOperation, "login/c", `{"password":"p"}`, "10.9.9.9:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := call(b, logical.UpdateOperation, "login/c", `{"password":"p"}`, "[2001:db8::1]:1"); logical.CodeOf(err) != logical.PermissionDenied {
		t.Fatalf("login from outside = %v, want PermissionDenied", err)
	}
}
