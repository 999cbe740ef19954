// Package deps holds the test that keeps the import rules of
// docs/architecture.md: the core stays free of HTTP and Kubernetes, and the
// client side never reaches into the server.
package deps

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/coffer-dev/coffer/"

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", module+pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	return strings.Fields(string(out))
}

func TestImportRules(t *testing.T) {
	for name, tc := range map[string]struct {
		pkg       string
		forbidden []string // exact package or prefix ending in "/" or "."
	}{
		"core has no HTTP and no Kubernetes": {"internal/core", []string{"net/http", "k8s.io/", "sigs.k8s.io/"}},
		"engines have no HTTP":               {"internal/engine/kv", []string{"net/http", "k8s.io/"}},
		"policy is pure":                     {"internal/policy", []string{"net/http", module + "internal/barrier", module + "internal/core"}},
		"cli never imports the server":       {"internal/cli", []string{module + "internal/core", module + "internal/server", module + "internal/barrier"}},
		"api imports no internal package":    {"api", []string{module + "internal/"}},
		"the agent is an API client":         {"internal/agent", []string{module + "internal/core", module + "internal/server", module + "internal/barrier"}},
		"the injector is an API client":      {"internal/k8s/injector", []string{module + "internal/core", module + "internal/server"}},
		"the KMS plugin is an API client":    {"internal/k8s/kms", []string{module + "internal/core", module + "internal/server"}},
		"the CSI provider is an API client":  {"internal/k8s/csi", []string{module + "internal/core", module + "internal/server"}},
		"the operator is an API client":      {"internal/k8s/operator", []string{module + "internal/core", module + "internal/server"}},
	} {
		t.Run(name, func(t *testing.T) {
			for _, d := range deps(t, tc.pkg) {
				for _, f := range tc.forbidden {
					if d == f || (strings.HasSuffix(f, "/") && strings.HasPrefix(d, f)) || strings.HasPrefix(d, f+"/") {
						t.Errorf("%s imports %s (directly or not)", tc.pkg, d)
					}
				}
			}
		})
	}
}
