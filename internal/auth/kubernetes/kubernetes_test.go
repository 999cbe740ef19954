package kubernetes

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/coffer-dev/coffer/internal/barrier/barriertest"
	"github.com/coffer-dev/coffer/internal/k8stest"
	"github.com/coffer-dev/coffer/internal/logical"
)

// TestMain shares one API server among the envtest tests of the package;
// it is started only when one of them runs.
func TestMain(m *testing.M) { k8stest.Main(m) }

func newBackend(t *testing.T) *Backend {
	t.Helper()
	dir := t.TempDir()
	// No in-cluster files: the server is not running in a pod.
	b, err := New(Config{Storage: barriertest.Storage(t), LocalTokenFile: dir + "/token", LocalCAFile: dir + "/ca.crt"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func call(b *Backend, op logical.Operation, path string, body any) (*logical.Response, error) {
	raw, _ := json.Marshal(body)
	if s, ok := body.(string); ok {
		raw = []byte(s)
	}
	return b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Body: raw, RemoteAddr: "10.0.0.1:1"})
}

func must(t *testing.T, b *Backend, op logical.Operation, path string, body any) *logical.Response {
	t.Helper()
	r, err := call(b, op, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", op, path, err)
	}
	return r
}

// fakeJWT is an unsigned token with the given claims, for the checks made
// before any TokenReview (it is never reviewed).
func fakeJWT(claims map[string]any) string {
	e := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": "RS256"})
	c, _ := json.Marshal(claims)
	return e.EncodeToString(h) + "." + e.EncodeToString(c) + ".c2ln"
}

func TestConfigAndRoleCRUD(t *testing.T) {
	b := newBackend(t)
	must(t, b, logical.UpdateOperation, "config", map[string]any{"kubernetes_host": "https://10.0.0.1:443", "token_reviewer_jwt": fakeJWT(map[string]any{"sub": "x"})})
	d := must(t, b, logical.ReadOperation, "config", nil).Data.(map[string]any)
	if d["kubernetes_host"] != "https://10.0.0.1:443" || d["token_reviewer_jwt_set"] != true || d["token_reviewer_jwt"] != nil || d["disable_iss_validation"] != true {
		t.Errorf("config = %v", d)
	}
	must(t, b, logical.UpdateOperation, "role/app", map[string]any{
		"bound_service_account_names": "app,worker", "bound_service_account_namespaces": []string{"team-*"},
		"audience": "coffer", "token_policies": "read", "token_ttl": 600,
	})
	d = must(t, b, logical.ReadOperation, "role/app", nil).Data.(map[string]any)
	if !reflect.DeepEqual(d["bound_service_account_names"], []string{"app", "worker"}) || d["alias_name_source"] != "serviceaccount_uid" || d["token_ttl"] != int64(600) {
		t.Errorf("role = %v", d)
	}
	if got := must(t, b, logical.ListOperation, "role", nil).Data.(map[string]any)["keys"]; !reflect.DeepEqual(got, []string{"app"}) {
		t.Errorf("list = %v", got)
	}
	roles, _ := b.Roles(context.Background())
	if want := []RoleInfo{{Name: "app", Policies: []string{"read"}}}; !reflect.DeepEqual(roles, want) {
		t.Errorf("Roles = %v", roles)
	}
	must(t, b, logical.DeleteOperation, "role/app", nil)
	if r := must(t, b, logical.ReadOperation, "role/app", nil); r != nil {
		t.Errorf("read after delete = %v", r.Data)
	}
}

func TestBadInput(t *testing.T) {
	b := newBackend(t)
	for name, tc := range map[string]struct {
		path string
		body any
	}{
		"config without host":        {"config", map[string]any{}},
		"host that is not a URL":     {"config", map[string]any{"kubernetes_host": "10.0.0.1"}},
		"CA that is not PEM":         {"config", map[string]any{"kubernetes_host": "https://h", "kubernetes_ca_cert": "nope"}},
		"reviewer that is not a JWT": {"config", map[string]any{"kubernetes_host": "https://h", "token_reviewer_jwt": "nope"}},
		"role without names":         {"role/r", map[string]any{"bound_service_account_namespaces": "a"}},
		"role without namespaces":    {"role/r", map[string]any{"bound_service_account_names": "a"}},
		"star mixed with names":      {"role/r", map[string]any{"bound_service_account_names": "*,a", "bound_service_account_namespaces": "a"}},
		"bad alias_name_source":      {"role/r", map[string]any{"bound_service_account_names": "a", "bound_service_account_namespaces": "a", "alias_name_source": "pod"}},
		"malformed JSON":             {"role/r", `{"audience":`},
		"login without role":         {"login", map[string]any{"jwt": "x"}},
		"login without jwt":          {"login", map[string]any{"role": "r"}},
		"login before config":        {"login", map[string]any{"role": "r", "jwt": "x"}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := call(b, logical.UpdateOperation, tc.path, tc.body); logical.CodeOf(err) != logical.Invalid {
				t.Fatalf("got %v, want Invalid", err)
			}
		})
	}
}

// TestRefusedBeforeReview covers the refusals made from the token's
// claims, before the API server is asked: the configured host does not
// exist, so reaching it would fail differently.
func TestRefusedBeforeReview(t *testing.T) {
	b := newBackend(t)
	must(t, b, logical.UpdateOperation, "config", map[string]any{"kubernetes_host": "https://127.0.0.1:1"})
	must(t, b, logical.UpdateOperation, "role/r", map[string]any{"bound_service_account_names": "app", "bound_service_account_namespaces": "team-a", "audience": "coffer"})
	projected := func(ns, name string, aud any) map[string]any {
		return map[string]any{"aud": aud, "kubernetes.io": map[string]any{"namespace": ns, "serviceaccount": map[string]any{"name": name, "uid": "u"}}}
	}
	for name, tc := range map[string]struct {
		jwt, want string
	}{
		"garbage":                             {"garbage", "the jwt is not a well-formed JSON Web Token"},
		"not a service account token":         {fakeJWT(map[string]any{"sub": "x"}), "the jwt is not a Kubernetes service account token"},
		"an unbound name":                     {fakeJWT(projected("team-a", "other", "coffer")), "service account name not authorized"},
		"another namespace":                   {fakeJWT(projected("team-b", "app", "coffer")), "namespace not authorized"},
		"a wrong audience":                    {fakeJWT(projected("team-a", "app", []string{"vault"})), "invalid audience (aud) claim: audience claim does not match any expected audience"},
		"a legacy token of another namespace": {fakeJWT(map[string]any{"kubernetes.io/serviceaccount/namespace": "x", "kubernetes.io/serviceaccount/service-account.name": "app"}), "namespace not authorized"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := call(b, logical.UpdateOperation, "login", map[string]any{"role": "r", "jwt": tc.jwt})
			e, ok := err.(*logical.Error)
			if !ok || e.Code != logical.PermissionDenied || !reflect.DeepEqual(e.Messages, []string{"permission denied", tc.want}) {
				t.Fatalf("login = %#v, want 403 [permission denied, %s]", err, tc.want)
			}
		})
	}
}

func TestGlobMatch(t *testing.T) {
	for p, want := range map[[2]string]bool{
		{"*", "anything"}: true, {"team-*", "team-a"}: true, {"team-*", "teamx"}: false,
		{"*-prod", "a-prod"}: true, {"a*b*c", "abc"}: true, {"a*b*c", "acb"}: false, {"app", "app"}: true, {"app", "apps"}: false,
	} {
		if got := globMatch(p[0], p[1]); got != want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", p[0], p[1], got, want)
		}
	}
}
