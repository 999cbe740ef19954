package kubernetes

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coffer-dev/coffer/internal/k8stest"
	"github.com/coffer-dev/coffer/internal/logical"
)

// These tests run on a real kube-apiserver (k8stest): the tokens come from
// TokenRequest and are checked by TokenReview.

func configured(t *testing.T, c *k8stest.Cluster, reviewer string) *Backend {
	t.Helper()
	b := newBackend(t)
	body := map[string]any{"kubernetes_host": c.Host, "kubernetes_ca_cert": string(c.CACert)}
	if reviewer != "" {
		body["token_reviewer_jwt"] = reviewer
	}
	must(t, b, logical.UpdateOperation, "config", body)
	return b
}

func loginErr(t *testing.T, b *Backend, role, jwt string) *logical.Error {
	t.Helper()
	_, err := call(b, logical.UpdateOperation, "login", map[string]any{"role": role, "jwt": jwt})
	if err == nil {
		t.Fatal("login succeeded, want refused")
	}
	e, ok := err.(*logical.Error)
	if !ok || e.Code != logical.PermissionDenied || len(e.Messages) != 2 || e.Messages[0] != "permission denied" {
		t.Fatalf("login = %#v, want 403 permission denied with a reason", err)
	}
	if strings.Contains(e.Error(), jwt) {
		t.Fatal("the error holds the token")
	}
	return e
}

func TestEnvtestLogin(t *testing.T) {
	c := k8stest.Env(t)
	c.ServiceAccount(t, "coffer-system", "reviewer")
	c.AllowTokenReview(t, "coffer-system", "reviewer")
	reviewer := c.Token(t, "coffer-system", "reviewer", time.Hour)
	app := c.ServiceAccount(t, "team-a", "app")
	c.ServiceAccount(t, "team-a", "other")
	c.ServiceAccount(t, "team-b", "app")

	b := configured(t, c, reviewer)
	must(t, b, logical.UpdateOperation, "role/app", map[string]any{
		"bound_service_account_names": "app", "bound_service_account_namespaces": "team-*",
		"audience": "coffer", "token_policies": "app-read,default", "token_ttl": "20m",
	})
	must(t, b, logical.UpdateOperation, "role/strict", map[string]any{
		"bound_service_account_names": "app", "bound_service_account_namespaces": "team-a", "token_policies": "x",
	})

	t.Run("a service account's token logs in with the role's policies and metadata", func(t *testing.T) {
		r, err := call(b, logical.UpdateOperation, "login", map[string]any{"role": "app", "jwt": c.Token(t, "team-a", "app", time.Hour, "coffer")})
		if err != nil {
			t.Fatal(err)
		}
		a := r.Auth
		if !reflect.DeepEqual(a.Policies, []string{"app-read", "default"}) || a.TTL != 20*time.Minute || !a.Renewable {
			t.Errorf("auth = %+v", a)
		}
		want := map[string]string{"service_account_name": "app", "service_account_namespace": "team-a",
			"service_account_uid": string(app.UID), "service_account_secret_name": "", "role": "app"}
		if !reflect.DeepEqual(a.Metadata, want) {
			t.Errorf("metadata = %v, want %v", a.Metadata, want)
		}
		if a.DisplayName != "team-a-app" || a.Alias != string(app.UID) {
			t.Errorf("display %q alias %q", a.DisplayName, a.Alias)
		}
	})
	t.Run("the API server's own audience works for a role without one", func(t *testing.T) {
		if _, err := call(b, logical.UpdateOperation, "login", map[string]any{"role": "strict", "jwt": c.Token(t, "team-a", "app", time.Hour)}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("another namespace is refused", func(t *testing.T) {
		e := loginErr(t, b, "strict", c.Token(t, "team-b", "app", time.Hour))
		if e.Messages[1] != "namespace not authorized" {
			t.Errorf("reason = %q", e.Messages[1])
		}
	})
	t.Run("an unbound name is refused", func(t *testing.T) {
		e := loginErr(t, b, "app", c.Token(t, "team-a", "other", time.Hour, "coffer"))
		if e.Messages[1] != "service account name not authorized" {
			t.Errorf("reason = %q", e.Messages[1])
		}
	})
	t.Run("a wrong audience is refused", func(t *testing.T) {
		e := loginErr(t, b, "app", c.Token(t, "team-a", "app", time.Hour, "vault"))
		if !strings.Contains(e.Messages[1], "audience") {
			t.Errorf("reason = %q", e.Messages[1])
		}
	})
	t.Run("a token for another audience is refused by the API server when the role has none", func(t *testing.T) {
		e := loginErr(t, b, "strict", c.Token(t, "team-a", "app", time.Hour, "coffer"))
		if !strings.Contains(e.Messages[1], "did not authenticate") {
			t.Errorf("reason = %q", e.Messages[1])
		}
	})
	t.Run("a garbage JWT is refused", func(t *testing.T) {
		loginErr(t, b, "app", "garbage.garbage.garbage")
	})
	t.Run("a forged token with valid claims is refused by TokenReview", func(t *testing.T) {
		e := loginErr(t, b, "strict", fakeJWT(map[string]any{"kubernetes.io": map[string]any{"namespace": "team-a", "serviceaccount": map[string]any{"name": "app", "uid": string(app.UID)}}}))
		if !strings.Contains(e.Messages[1], "did not authenticate") {
			t.Errorf("reason = %q", e.Messages[1])
		}
	})
	t.Run("a deleted service account cannot log in", func(t *testing.T) {
		c.ServiceAccount(t, "team-a", "gone")
		must(t, b, logical.UpdateOperation, "role/gone", map[string]any{"bound_service_account_names": "gone", "bound_service_account_namespaces": "team-a"})
		tok := c.Token(t, "team-a", "gone", time.Hour)
		if _, err := call(b, logical.UpdateOperation, "login", map[string]any{"role": "gone", "jwt": tok}); err != nil {
			t.Fatalf("before deletion: %v", err)
		}
		if err := c.Client.CoreV1().ServiceAccounts("team-a").Delete(context.Background(), "gone", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := call(b, logical.UpdateOperation, "login", map[string]any{"role": "gone", "jwt": tok})
			if logical.CodeOf(err) == logical.PermissionDenied {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("login after deletion = %v, want refused", err)
			}
			time.Sleep(100 * time.Millisecond) // the authenticator's cache
		}
	})
	t.Run("a reviewer without system:auth-delegator is refused with a clear reason", func(t *testing.T) {
		c.ServiceAccount(t, "coffer-system", "weak")
		b2 := configured(t, c, c.Token(t, "coffer-system", "weak", time.Hour))
		must(t, b2, logical.UpdateOperation, "role/strict", map[string]any{"bound_service_account_names": "app", "bound_service_account_namespaces": "team-a"})
		e := loginErr(t, b2, "strict", c.Token(t, "team-a", "app", time.Hour))
		if !strings.Contains(e.Messages[1], "system:auth-delegator") {
			t.Errorf("reason = %q", e.Messages[1])
		}
	})
}

func TestEnvtestCallerJWTReviewsItself(t *testing.T) {
	c := k8stest.Env(t)
	c.ServiceAccount(t, "self", "app")
	c.AllowTokenReview(t, "self", "app")
	b := configured(t, c, "") // no token_reviewer_jwt and no in-cluster token
	must(t, b, logical.UpdateOperation, "role/r", map[string]any{"bound_service_account_names": "app", "bound_service_account_namespaces": "self", "token_policies": "p"})
	r, err := call(b, logical.UpdateOperation, "login", map[string]any{"role": "r", "jwt": c.Token(t, "self", "app", time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Auth.Metadata["service_account_namespace"] != "self" {
		t.Errorf("metadata = %v", r.Auth.Metadata)
	}
}
