package approle

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

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

func newBackend(t *testing.T) (*Backend, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	b, err := New(Config{Storage: barriertest.Storage(t), Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return b, c
}

func call(b *Backend, op logical.Operation, path, body, remote string) (*logical.Response, error) {
	return b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Body: []byte(body), RemoteAddr: remote})
}

func must(t *testing.T, b *Backend, op logical.Operation, path, body string) *logical.Response {
	t.Helper()
	resp, err := call(b, op, path, body, "127.0.0.1:5000")
	if err != nil {
		t.Fatalf("%s %s: %v", op, path, err)
	}
	return resp
}

func data(t *testing.T, r *logical.Response) map[string]any {
	t.Helper()
	if r == nil {
		t.Fatal("nil response")
	}
	return r.Data.(map[string]any)
}

func roleAndSecret(t *testing.T, b *Backend, role, roleBody, secretBody string) (string, string) {
	t.Helper()
	must(t, b, logical.UpdateOperation, "role/"+role, roleBody)
	rid := data(t, must(t, b, logical.ReadOperation, "role/"+role+"/role-id", ""))["role_id"].(string)
	sid := data(t, must(t, b, logical.UpdateOperation, "role/"+role+"/secret-id", secretBody))["secret_id"].(string)
	return rid, sid
}

func login(b *Backend, rid, sid, remote string) (*logical.Response, error) {
	return call(b, logical.UpdateOperation, "login", fmt.Sprintf(`{"role_id":%q,"secret_id":%q}`, rid, sid), remote)
}

func TestLoginGivesTheRolesPoliciesAndMetadata(t *testing.T) {
	b, _ := newBackend(t)
	rid, sid := roleAndSecret(t, b, "web", `{"token_policies":"b,a","token_ttl":"1h","token_max_ttl":"4h"}`, `{"metadata":"{\"team\":\"x\"}"}`)
	resp, err := login(b, rid, sid, "10.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	a := resp.Auth
	if want := []string{"a", "b"}; !reflect.DeepEqual(a.Policies, want) {
		t.Errorf("policies = %v, want %v", a.Policies, want)
	}
	if a.TTL != time.Hour || a.MaxTTL != 4*time.Hour || !a.Renewable {
		t.Errorf("ttl %v max %v renewable %v, want 1h 4h true", a.TTL, a.MaxTTL, a.Renewable)
	}
	if want := map[string]string{"role_name": "web", "team": "x"}; !reflect.DeepEqual(a.Metadata, want) {
		t.Errorf("metadata = %v, want %v", a.Metadata, want)
	}
	if a.ClientToken != "" || a.Alias != rid || a.DisplayName != "web" {
		t.Errorf("client token %q alias %q display %q", a.ClientToken, a.Alias, a.DisplayName)
	}
}

func TestLoginRefusals(t *testing.T) {
	b, clk := newBackend(t)
	rid, sid := roleAndSecret(t, b, "r", `{"secret_id_num_uses":2,"secret_id_ttl":"10m","token_policies":"p"}`, "")
	_, other := roleAndSecret(t, b, "other", `{}`, "")

	for name, tc := range map[string]struct{ rid, sid string }{
		"a wrong secret ID is refused":        {rid, "nope"},
		"another role's secret ID is refused": {rid, other},
		"an unknown role ID is refused":       {"nope", sid},
		"an empty secret ID is refused":       {rid, ""},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := login(b, tc.rid, tc.sid, "1.2.3.4:5")
			if logical.CodeOf(err) != logical.Invalid {
				t.Fatalf("login = %v, want Invalid", err)
			}
			if strings.Contains(err.Error(), tc.sid) && tc.sid != "" {
				t.Errorf("error %q contains the secret ID", err)
			}
		})
	}

	t.Run("a secret ID is used up after secret_id_num_uses logins", func(t *testing.T) {
		for i := range 2 {
			if _, err := login(b, rid, sid, "1.2.3.4:5"); err != nil {
				t.Fatalf("login %d: %v", i+1, err)
			}
		}
		if _, err := login(b, rid, sid, "1.2.3.4:5"); err == nil || err.Error() != "invalid role or secret ID" {
			t.Fatalf("third login = %v, want invalid role or secret ID", err)
		}
		if r, _ := call(b, logical.ListOperation, "role/r/secret-id", "", ""); r != nil {
			t.Errorf("accessors left after use: %v", r.Data)
		}
	})

	t.Run("an expired secret ID is refused", func(t *testing.T) {
		sid := data(t, must(t, b, logical.UpdateOperation, "role/r/secret-id", ""))["secret_id"].(string)
		clk.add(10 * time.Minute)
		if _, err := login(b, rid, sid, "1.2.3.4:5"); logical.CodeOf(err) != logical.Invalid {
			t.Fatalf("login after ttl = %v, want Invalid", err)
		}
	})
}

func TestCIDRBindings(t *testing.T) {
	b, _ := newBackend(t)
	rid, sid := roleAndSecret(t, b, "r", `{"secret_id_bound_cidrs":["10.0.0.0/8"],"token_bound_cidrs":"10.1.0.0/16"}`, "")
	for name, tc := range map[string]struct {
		remote string
		ok     bool
	}{
		"inside both blocks":             {"10.1.2.3:4", true},
		"outside secret_id_bound_cidrs":  {"192.168.0.1:4", false},
		"inside secret ID but not token": {"10.2.0.1:4", false},
		"an unparsable address":          {"", false},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := login(b, rid, sid, tc.remote)
			if tc.ok && err != nil {
				t.Fatalf("login from %s: %v", tc.remote, err)
			}
			if !tc.ok && logical.CodeOf(err) != logical.PermissionDenied {
				t.Fatalf("login from %s = %v, want PermissionDenied", tc.remote, err)
			}
		})
	}
	t.Run("a secret ID's cidr_list must be inside the role's", func(t *testing.T) {
		if _, err := call(b, logical.UpdateOperation, "role/r/secret-id", `{"cidr_list":"192.168.0.0/24"}`, ""); logical.CodeOf(err) != logical.Invalid {
			t.Fatalf("got %v, want Invalid", err)
		}
		must(t, b, logical.UpdateOperation, "role/r/secret-id", `{"cidr_list":"10.1.2.0/24"}`)
	})
}

func TestSecretIDLookupListDestroy(t *testing.T) {
	b, _ := newBackend(t)
	_, sid := roleAndSecret(t, b, "r", `{"secret_id_ttl":60}`, `{"metadata":"{\"a\":\"b\"}"}`)
	d := data(t, must(t, b, logical.UpdateOperation, "role/r/secret-id/lookup", fmt.Sprintf(`{"secret_id":%q}`, sid)))
	acc := d["secret_id_accessor"].(string)
	if d["secret_id_ttl"] != int64(60) || !reflect.DeepEqual(d["metadata"], map[string]string{"a": "b"}) || d["expiration_time"] == "" {
		t.Errorf("lookup = %v", d)
	}
	if got := data(t, must(t, b, logical.ListOperation, "role/r/secret-id", ""))["keys"]; !reflect.DeepEqual(got, []string{acc}) {
		t.Errorf("list = %v, want [%s]", got, acc)
	}
	if r := must(t, b, logical.UpdateOperation, "role/r/secret-id-accessor/lookup", fmt.Sprintf(`{"secret_id_accessor":%q}`, acc)); data(t, r)["secret_id_accessor"] != acc {
		t.Errorf("accessor lookup = %v", r.Data)
	}
	must(t, b, logical.UpdateOperation, "role/r/secret-id/destroy", fmt.Sprintf(`{"secret_id":%q}`, sid))
	if r := must(t, b, logical.UpdateOperation, "role/r/secret-id/lookup", fmt.Sprintf(`{"secret_id":%q}`, sid)); r != nil {
		t.Errorf("lookup after destroy = %v", r.Data)
	}
}

func TestRoleCRUDAndRoles(t *testing.T) {
	b, _ := newBackend(t)
	must(t, b, logical.UpdateOperation, "role/b", `{"policies":["x"],"secret_id_num_uses":"3"}`)
	must(t, b, logical.UpdateOperation, "role/a", `{"token_policies":["y","Y"]}`)
	d := data(t, must(t, b, logical.ReadOperation, "role/b", ""))
	if d["secret_id_num_uses"] != 3 || !reflect.DeepEqual(d["token_policies"], []string{"x"}) || d["bind_secret_id"] != true {
		t.Errorf("read = %v", d)
	}
	if got := data(t, must(t, b, logical.ListOperation, "role", ""))["keys"]; !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("list = %v", got)
	}
	roles, err := b.Roles(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []RoleInfo{{Name: "a", Policies: []string{"y"}}, {Name: "b", Policies: []string{"x"}}}; !reflect.DeepEqual(roles, want) {
		t.Errorf("Roles = %v, want %v", roles, want)
	}
	must(t, b, logical.UpdateOperation, "role/b/role-id", `{"role_id":"custom"}`)
	sid := data(t, must(t, b, logical.UpdateOperation, "role/b/secret-id", ""))["secret_id"].(string)
	if _, err := login(b, "custom", sid, "1.1.1.1:1"); err != nil {
		t.Errorf("login with custom role ID: %v", err)
	}
	if _, err := call(b, logical.UpdateOperation, "role/a/role-id", `{"role_id":"custom"}`, ""); logical.CodeOf(err) != logical.Invalid {
		t.Errorf("duplicate role_id = %v, want Invalid", err)
	}
	must(t, b, logical.DeleteOperation, "role/b", "")
	if _, err := login(b, "custom", sid, "1.1.1.1:1"); logical.CodeOf(err) != logical.Invalid {
		t.Errorf("login after delete = %v, want Invalid", err)
	}
	if r := must(t, b, logical.ReadOperation, "role/b", ""); r != nil {
		t.Errorf("read after delete = %v", r.Data)
	}
}

func TestBadInput(t *testing.T) {
	b, _ := newBackend(t)
	for name, tc := range map[string]struct {
		op   logical.Operation
		path string
		body string
		want logical.Code
	}{
		"malformed JSON":                     {logical.UpdateOperation, "role/r", `{`, logical.Invalid},
		"bad CIDR":                           {logical.UpdateOperation, "role/r", `{"secret_id_bound_cidrs":"10.0.0/8"}`, logical.Invalid},
		"negative num uses":                  {logical.UpdateOperation, "role/r", `{"secret_id_num_uses":-1}`, logical.Invalid},
		"ttl above max":                      {logical.UpdateOperation, "role/r", `{"token_ttl":"2h","token_max_ttl":"1h"}`, logical.Invalid},
		"batch tokens":                       {logical.UpdateOperation, "role/r", `{"token_type":"batch"}`, logical.Invalid},
		"no constraint at all":               {logical.UpdateOperation, "role/r", `{"bind_secret_id":false}`, logical.Invalid},
		"bad role name":                      {logical.UpdateOperation, "role/a*b", `{}`, logical.Invalid},
		"secret ID for a missing role":       {logical.UpdateOperation, "role/missing/secret-id", ``, logical.Invalid},
		"login without role_id":              {logical.UpdateOperation, "login", `{}`, logical.Invalid},
		"read of login":                      {logical.ReadOperation, "login", ``, logical.Unsupported},
		"unknown path":                       {logical.ReadOperation, "nope", ``, logical.NotFound},
		"metadata that is not a JSON object": {logical.UpdateOperation, "role/r/secret-id", `{"metadata":"[1]"}`, logical.Invalid},
	} {
		t.Run(name, func(t *testing.T) {
			if name == "metadata that is not a JSON object" {
				must(t, b, logical.UpdateOperation, "role/r", `{}`)
			}
			_, err := call(b, tc.op, tc.path, tc.body, "")
			if got := logical.CodeOf(err); err == nil || got != tc.want {
				t.Fatalf("got %v (code %d), want code %d", err, got, tc.want)
			}
		})
	}
}

func TestTidyRemovesExpiredSecretIDs(t *testing.T) {
	b, clk := newBackend(t)
	roleAndSecret(t, b, "r", `{"secret_id_ttl":"1m"}`, "")
	must(t, b, logical.UpdateOperation, "role/r/secret-id", `{"ttl":"30s"}`)
	clk.add(45 * time.Second)
	if n, err := b.Tidy(context.Background()); err != nil || n != 1 {
		t.Fatalf("Tidy = %d, %v; want 1", n, err)
	}
	clk.add(time.Minute)
	if err := b.Periodic(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := must(t, b, logical.ListOperation, "role/r/secret-id", ""); r != nil {
		t.Errorf("left after tidy: %v", r.Data)
	}
}

func TestConcurrentLoginsNeverExceedNumUses(t *testing.T) {
	b, _ := newBackend(t)
	rid, sid := roleAndSecret(t, b, "r", `{"secret_id_num_uses":5}`, "")
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := login(b, rid, sid, "1.1.1.1:1"); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ok != 5 {
		t.Errorf("%d logins succeeded, want 5", ok)
	}
}

func TestStorageHoldsNoSecretID(t *testing.T) {
	s := barriertest.Storage(t)
	b, err := New(Config{Storage: s})
	if err != nil {
		t.Fatal(err)
	}
	_, sid := roleAndSecret(t, b, "r", `{}`, "")
	keys := barriertest.Keys(t, s, "")
	if len(keys) == 0 {
		t.Fatal("storage holds nothing")
	}
	for _, k := range keys {
		if strings.Contains(k, sid) {
			t.Errorf("key %s holds the secret ID", k)
		}
		v, err := s.Get(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(v), sid) {
			t.Errorf("value at %s holds the secret ID", k)
		}
	}
}

func TestNewRequiresStorage(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without storage succeeded")
	}
}
