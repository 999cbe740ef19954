package jwt

import (
	"context"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coffer-dev/coffer/internal/barrier/barriertest"
	"github.com/coffer-dev/coffer/internal/k8stest"
	"github.com/coffer-dev/coffer/internal/logical"
)

func TestMain(m *testing.M) { k8stest.Main(m) }

// TestEnvtestServiceAccountTokensOffline validates a real cluster's
// service-account tokens with the issuer's own JWKS (/openid/v1/jwks), without TokenReview.
func TestEnvtestServiceAccountTokensOffline(t *testing.T) {
	c := k8stest.Env(t)
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "coffer-test-issuer-discovery"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:service-account-issuer-discovery"},
		Subjects:   []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "system:unauthenticated"}},
	}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(context.Background(), crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	c.ServiceAccount(t, "ci", "builder")
	c.ServiceAccount(t, "ci", "other")

	b, err := New(Config{Storage: barriertest.Storage(t)})
	if err != nil {
		t.Fatal(err)
	}
	// The discovery document's jwks_uri names the API server's advertise
	// address (unreachable in envtest), so the key set is fetched from the
	// API server's own URL, and the issuer bound explicitly.
	must(t, b, logical.UpdateOperation, "config", map[string]any{"jwks_url": strings.TrimSuffix(c.Host, "/") + "/openid/v1/jwks", "jwks_ca_pem": string(c.CACert), "bound_issuer": c.Issuer})
	must(t, b, logical.UpdateOperation, "role/builder", map[string]any{
		"bound_audiences": "coffer", "bound_subject": "system:serviceaccount:ci:builder",
		"claim_mappings": map[string]string{"/kubernetes.io/namespace": "namespace"}, "token_policies": "build",
	})
	r, err := call(b, logical.UpdateOperation, "login", map[string]any{"role": "builder", "jwt": c.Token(t, "ci", "builder", time.Hour, "coffer")})
	if err != nil {
		t.Fatal(err)
	}
	if r.Auth.Metadata["namespace"] != "ci" || r.Auth.DisplayName != "system:serviceaccount:ci:builder" {
		t.Errorf("auth = %+v", r.Auth)
	}
	if _, err := call(b, logical.UpdateOperation, "login", map[string]any{"role": "builder", "jwt": c.Token(t, "ci", "other", time.Hour, "coffer")}); logical.CodeOf(err) != logical.Invalid {
		t.Errorf("another service account = %v, want refused", err)
	}
	if _, err := call(b, logical.UpdateOperation, "login", map[string]any{"role": "builder", "jwt": c.Token(t, "ci", "builder", time.Hour, "vault")}); logical.CodeOf(err) != logical.Invalid {
		t.Errorf("wrong audience = %v, want refused", err)
	}
}
