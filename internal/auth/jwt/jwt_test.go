package jwt

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
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
	c := &clock{t: t0}
	b, err := New(Config{Storage: barriertest.Storage(t), Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return b, c
}

func call(b *Backend, op logical.Operation, path string, body any) (*logical.Response, error) {
	raw, _ := json.Marshal(body)
	if s, ok := body.(string); ok {
		raw = []byte(s)
	}
	return b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Body: raw, RemoteAddr: "10.0.0.1:1234"})
}

func must(t *testing.T, b *Backend, op logical.Operation, path string, body any) *logical.Response {
	t.Helper()
	r, err := call(b, op, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", op, path, err)
	}
	return r
}

func TestLoginWithPEMKeys(t *testing.T) {
	b, clk := newBackend(t)
	must(t, b, logical.UpdateOperation, "config", map[string]any{
		"jwt_validation_pubkeys": []string{pubPEM(t, testKeys.rsa.Public()), pubPEM(t, testKeys.ed.Public())},
		"bound_issuer":           "https://issuer.example",
	})
	must(t, b, logical.UpdateOperation, "role/app", map[string]any{
		"role_type": "jwt", "bound_audiences": "coffer", "user_claim": "sub",
		"bound_claims":   map[string]any{"team": []string{"payments", "ops"}, "/ctx/env": "prod"},
		"claim_mappings": map[string]string{"team": "team", "/ctx/env": "env"},
		"token_policies": "app-read", "token_ttl": "10m",
	})
	good := func() map[string]any {
		c := claimsAt(t0)
		c["team"] = "payments"
		c["ctx"] = map[string]any{"env": "prod"}
		return c
	}
	r, err := call(b, logical.UpdateOperation, "login", map[string]any{"role": "app", "jwt": sign(t, "RS256", "", testKeys.rsa, good())})
	if err != nil {
		t.Fatal(err)
	}
	a := r.Auth
	if !reflect.DeepEqual(a.Policies, []string{"app-read"}) || a.TTL != 10*time.Minute || !a.Renewable {
		t.Errorf("auth = %+v", a)
	}
	if want := map[string]string{"role": "app", "team": "payments", "env": "prod"}; !reflect.DeepEqual(a.Metadata, want) {
		t.Errorf("metadata = %v, want %v", a.Metadata, want)
	}
	if a.DisplayName != "user-1" || a.Alias != "user-1" {
		t.Errorf("display %q alias %q", a.DisplayName, a.Alias)
	}

	for name, tc := range map[string]struct {
		tok  func() string
		want string
	}{
		"a wrong issuer":   {func() string { c := good(); c["iss"] = "https://evil"; return sign(t, "RS256", "", testKeys.rsa, c) }, "issuer"},
		"a wrong audience": {func() string { c := good(); c["aud"] = "vault"; return sign(t, "RS256", "", testKeys.rsa, c) }, "audience"},
		"an expired token": {func() string {
			c := good()
			c["exp"] = t0.Add(-time.Hour).Unix()
			return sign(t, "RS256", "", testKeys.rsa, c)
		}, "expired"},
		"an unsigned token":  {func() string { return unsigned(t, good()) }, "algorithm"},
		"HS256 with the key": {func() string { return hmacWithKey(t, pubPEM(t, testKeys.rsa.Public()), good()) }, "algorithm"},
		"an unknown key":     {func() string { return sign(t, "ES256", "", testKeys.ec, good()) }, "signature"},
		"an unbound claim":   {func() string { c := good(); c["team"] = "web"; return sign(t, "RS256", "", testKeys.rsa, c) }, `claim "team" does not match`},
		"a missing claim":    {func() string { c := good(); delete(c, "ctx"); return sign(t, "RS256", "", testKeys.rsa, c) }, `claim "/ctx/env" is missing`},
		"garbage":            {func() string { return "garbage" }, "malformed"},
	} {
		t.Run(name, func(t *testing.T) {
			tok := tc.tok()
			_, err := call(b, logical.UpdateOperation, "login", map[string]any{"role": "app", "jwt": tok})
			if logical.CodeOf(err) != logical.Invalid || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("login = %v, want Invalid mentioning %q", err, tc.want)
			}
			if strings.Contains(err.Error(), tok) || strings.Contains(err.Error(), "payments") {
				t.Error("the error holds the token or a claim value")
			}
		})
	}
	t.Run("the clock moves past exp plus leeway", func(t *testing.T) {
		tok := sign(t, "RS256", "", testKeys.rsa, good())
		clk.add(time.Hour + 2*time.Minute)
		if _, err := call(b, logical.UpdateOperation, "login", map[string]any{"role": "app", "jwt": tok}); err != nil {
			t.Fatalf("within expiration_leeway: %v", err)
		}
		clk.add(time.Minute)
		if _, err := call(b, logical.UpdateOperation, "login", map[string]any{"role": "app", "jwt": tok}); logical.CodeOf(err) != logical.Invalid {
			t.Fatalf("past expiration_leeway: %v", err)
		}
	})
}

func TestGlobAndSubject(t *testing.T) {
	b, _ := newBackend(t)
	must(t, b, logical.UpdateOperation, "config", map[string]any{"jwt_validation_pubkeys": pubPEM(t, testKeys.ed.Public())})
	must(t, b, logical.UpdateOperation, "role/g", map[string]any{
		"bound_audiences": []string{"coffer"}, "bound_subject": "user-1",
		"bound_claims_type": "glob", "bound_claims": map[string]any{"repo": "org/*/main"}, "token_policies": "p",
	})
	login := func(repo, sub string) error {
		c := claimsAt(t0)
		c["repo"], c["sub"] = repo, sub
		_, err := call(b, logical.UpdateOperation, "login", map[string]any{"role": "g", "jwt": sign(t, "EdDSA", "", testKeys.ed, c)})
		return err
	}
	if err := login("org/a/b/main", "user-1"); err != nil {
		t.Errorf("glob across slashes: %v", err)
	}
	if err := login("org/a/dev", "user-1"); err == nil {
		t.Error("a non-matching glob logged in")
	}
	if err := login("org/a/main", "user-2"); err == nil || !strings.Contains(err.Error(), "bound_subject") {
		t.Errorf("wrong subject = %v", err)
	}
	for p, s := range map[[2]string]bool{{"a*", "abc"}: true, {"*c", "abc"}: true, {"a*c", "ac"}: true, {"a*b*c", "a/b/c"}: true, {"a*c", "ab"}: false, {"abc", "abc"}: true, {"a*a", "a"}: false} {
		if got := globMatch(p[0], p[1]); got != s {
			t.Errorf("globMatch(%q, %q) = %v, want %v", p[0], p[1], got, s)
		}
	}
}

// keyServer serves a JWKS and an OIDC discovery document over TLS.
func keyServer(t *testing.T, kid *atomic.Value, hits *atomic.Int32) (*httptest.Server, string) {
	t.Helper()
	mux := http.NewServeMux()
	var srv *httptest.Server
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": srv.URL + "/keys"})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(jwks(t, kid.Load().(string)))
	})
	srv = httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	return srv, ca
}

func TestJWKSAndDiscovery(t *testing.T) {
	var kid atomic.Value
	kid.Store("k1")
	var hits atomic.Int32
	srv, ca := keyServer(t, &kid, &hits)

	for name, cfg := range map[string]map[string]any{
		"jwks_url":           {"jwks_url": srv.URL + "/keys", "jwks_ca_pem": ca},
		"oidc_discovery_url": {"oidc_discovery_url": srv.URL, "oidc_discovery_ca_pem": ca},
	} {
		t.Run(name, func(t *testing.T) {
			b, clk := newBackend(t)
			must(t, b, logical.UpdateOperation, "config", cfg)
			must(t, b, logical.UpdateOperation, "role/r", map[string]any{"bound_audiences": "coffer", "token_policies": "p"})
			c := claimsAt(t0)
			c["iss"] = srv.URL
			login := func(tok string) error {
				_, err := call(b, logical.UpdateOperation, "login", map[string]any{"role": "r", "jwt": tok})
				return err
			}
			if err := login(sign(t, "RS256", "k1", testKeys.rsa, c)); err != nil {
				t.Fatalf("RS256 with kid k1: %v", err)
			}
			if err := login(sign(t, "ES256", "k1-ec", testKeys.ec, c)); err != nil {
				t.Fatalf("ES256: %v", err)
			}
			// The issuer rotates its key IDs: an unknown kid makes the
			// backend fetch the set again (at most every refetchAfter).
			kid.Store("k2")
			before := hits.Load()
			clk.add(refetchAfter)
			if err := login(sign(t, "RS256", "k2", testKeys.rsa, c)); err != nil {
				t.Fatalf("after rotation: %v", err)
			}
			if hits.Load() != before+1 {
				t.Errorf("key set fetched %d times after rotation, want 1", hits.Load()-before)
			}
			if err := login(sign(t, "RS256", "k3", testKeys.rsa, c)); err == nil {
				t.Fatal("an unknown kid logged in")
			}
			if hits.Load() != before+1 {
				t.Error("an unknown kid within refetchAfter fetched the key set again")
			}
			kid.Store("k1")
		})
	}
	t.Run("a discovery document with another issuer is refused", func(t *testing.T) {
		b, _ := newBackend(t)
		_, err := call(b, logical.UpdateOperation, "config", map[string]any{"oidc_discovery_url": srv.URL + "/", "oidc_discovery_ca_pem": ca})
		if logical.CodeOf(err) != logical.Invalid {
			t.Fatalf("config = %v, want Invalid", err)
		}
	})
	t.Run("an untrusted certificate is refused", func(t *testing.T) {
		b, _ := newBackend(t)
		if _, err := call(b, logical.UpdateOperation, "config", map[string]any{"jwks_url": srv.URL + "/keys"}); logical.CodeOf(err) != logical.Invalid {
			t.Fatalf("config = %v, want Invalid", err)
		}
	})
}

func TestConfigAndRoleBadInput(t *testing.T) {
	b, _ := newBackend(t)
	key := pubPEM(t, testKeys.rsa.Public())
	for name, tc := range map[string]struct {
		path string
		body any
	}{
		"no key source":            {"config", map[string]any{"bound_issuer": "x"}},
		"two key sources":          {"config", map[string]any{"jwt_validation_pubkeys": key, "jwks_url": "https://x"}},
		"a key that is not PEM":    {"config", map[string]any{"jwt_validation_pubkeys": []string{"nope"}}},
		"HS256 in supported algs":  {"config", map[string]any{"jwt_validation_pubkeys": key, "jwt_supported_algs": "HS256"}},
		"role_type oidc":           {"role/r", map[string]any{"role_type": "oidc"}},
		"empty user_claim":         {"role/r", map[string]any{"user_claim": ""}},
		"bound claim of an object": {"role/r", map[string]any{"bound_claims": map[string]any{"a": map[string]any{}}}},
		"bad bound_claims_type":    {"role/r", map[string]any{"bound_claims_type": "regex"}},
		"bad leeway":               {"role/r", map[string]any{"expiration_leeway": "soon"}},
		"claim mapped to role":     {"role/r", map[string]any{"claim_mappings": map[string]string{"x": "role"}}},
		"malformed JSON":           {"role/r", `{"user_claim":`},
		"a role name with a slash": {"role/a/b", map[string]any{}},
		"login without jwt":        {"login", map[string]any{"role": "r"}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := call(b, logical.UpdateOperation, tc.path, tc.body); logical.CodeOf(err) != logical.Invalid {
				t.Fatalf("got %v, want Invalid", err)
			}
		})
	}
	t.Run("login before config", func(t *testing.T) {
		if _, err := call(b, logical.UpdateOperation, "login", map[string]any{"role": "r", "jwt": "a.b.c"}); logical.CodeOf(err) != logical.Invalid {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("login to a missing role", func(t *testing.T) {
		must(t, b, logical.UpdateOperation, "config", map[string]any{"jwt_validation_pubkeys": key})
		if _, err := call(b, logical.UpdateOperation, "login", map[string]any{"role": "ghost", "jwt": "a.b.c"}); logical.CodeOf(err) != logical.Invalid {
			t.Fatalf("got %v", err)
		}
	})
}

func TestRoleReadListRolesAndDefaultRole(t *testing.T) {
	b, _ := newBackend(t)
	must(t, b, logical.UpdateOperation, "config", map[string]any{"jwt_validation_pubkeys": pubPEM(t, testKeys.ec.Public()), "default_role": "d"})
	must(t, b, logical.UpdateOperation, "role/d", map[string]any{"policies": "x,y", "bound_audiences": "coffer", "expiration_leeway": -1})
	d := must(t, b, logical.ReadOperation, "role/d", nil).Data.(map[string]any)
	if d["user_claim"] != "sub" || d["expiration_leeway"] != int64(-1) || !reflect.DeepEqual(d["token_policies"], []string{"x", "y"}) {
		t.Errorf("read = %v", d)
	}
	cfg := must(t, b, logical.ReadOperation, "config", nil).Data.(map[string]any)
	if cfg["default_role"] != "d" {
		t.Errorf("config = %v", cfg)
	}
	c := claimsAt(t0)
	r, err := call(b, logical.UpdateOperation, "login", map[string]any{"jwt": sign(t, "ES256", "", testKeys.ec, c)})
	if err != nil {
		t.Fatalf("login with default_role: %v", err)
	}
	if r.Auth.Metadata["role"] != "d" {
		t.Errorf("metadata = %v", r.Auth.Metadata)
	}
	c["exp"] = t0.Add(-time.Second).Unix()
	if _, err := call(b, logical.UpdateOperation, "login", map[string]any{"jwt": sign(t, "ES256", "", testKeys.ec, c)}); err == nil {
		t.Error("expired by one second with no leeway logged in")
	}
	if got := must(t, b, logical.ListOperation, "role", nil).Data.(map[string]any)["keys"]; fmt.Sprint(got) != "[d]" {
		t.Errorf("list = %v", got)
	}
	roles, _ := b.Roles(context.Background())
	if want := []RoleInfo{{Name: "d", Policies: []string{"x", "y"}}}; !reflect.DeepEqual(roles, want) {
		t.Errorf("Roles = %v", roles)
	}
	must(t, b, logical.DeleteOperation, "role/d", nil)
	if r := must(t, b, logical.ReadOperation, "role/d", nil); r != nil {
		t.Errorf("read after delete = %v", r.Data)
	}
}
