package compat

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/k8stest"
)

// TestAuthKubernetes logs in to a real coffer process with service-account
// tokens from a real kube-apiserver (envtest; KUBEBUILDER_ASSETS from
// hack/build-envtest-bins.sh), uses the token within its policy, and finds
// the service account in the audit log.
func TestAuthKubernetes(t *testing.T) {
	kc, err := k8stest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kc.Stop() })
	kc.ServiceAccount(t, "coffer-system", "reviewer")
	kc.AllowTokenReview(t, "coffer-system", "reviewer")
	sa := kc.ServiceAccount(t, "payments", "api")
	kc.ServiceAccount(t, "web", "api")

	p, root := startDev(t)
	logPath := filepath.Join(t.TempDir(), "audit.log")
	enableFileAudit(t, root, "file", logPath, nil)
	putReader(t, root)
	enableAuth(t, root, "kubernetes", "kubernetes", nil)
	if _, err := root.Logical().Write("auth/kubernetes/config", map[string]any{
		"kubernetes_host":    kc.Host,
		"kubernetes_ca_cert": string(kc.CACert),
		"token_reviewer_jwt": kc.Token(t, "coffer-system", "reviewer", time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("auth/kubernetes/role/payments", map[string]any{
		"bound_service_account_names":      "api",
		"bound_service_account_namespaces": "payments",
		"audience":                         "coffer",
		"token_policies":                   "reader",
		"token_ttl":                        "15m",
	}); err != nil {
		t.Fatal(err)
	}
	anon := p.client(t, "")
	s, err := anon.Logical().Write("auth/kubernetes/login", map[string]any{"role": "payments", "jwt": kc.Token(t, "payments", "api", time.Hour, "coffer")})
	if err != nil {
		t.Fatal(err)
	}
	if s.Auth.LeaseDuration != 900 || !s.Auth.Renewable || !slices.Contains(s.Auth.Policies, "reader") {
		t.Errorf("auth = %+v", s.Auth)
	}
	if s.Auth.Metadata["service_account_uid"] != string(sa.UID) || s.Auth.Metadata["service_account_namespace"] != "payments" {
		t.Errorf("metadata = %v", s.Auth.Metadata)
	}
	checkPolicyScope(t, p, root, s.Auth.ClientToken)
	self, err := p.client(t, s.Auth.ClientToken).Auth().Token().LookupSelf()
	if err != nil {
		t.Fatal(err)
	}
	if meta, _ := self.Data["meta"].(map[string]any); meta["service_account_name"] != "api" {
		t.Errorf("lookup-self meta = %v", self.Data["meta"])
	}

	for name, tok := range map[string]string{
		"another namespace": kc.Token(t, "web", "api", time.Hour, "coffer"),
		"a wrong audience":  kc.Token(t, "payments", "api", time.Hour, "other"),
		"a garbage JWT":     "not-a-jwt",
	} {
		_, err := anon.Logical().Write("auth/kubernetes/login", map[string]any{"role": "payments", "jwt": tok})
		if respCode(err) != 403 || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("%s: login = %v, want 403 permission denied", name, err)
		}
	}

	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, "secret/data/allowed") && strings.Contains(l, string(sa.UID)) {
			found = true
		}
	}
	if !found {
		t.Errorf("no audit entry of the read names the service account's UID:\n%s", raw)
	}
}
