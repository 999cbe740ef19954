package cli

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the layering: the CLI and the public client reach the
// server only over HTTP.
func TestImports(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for pkg, forbidden := range map[string][]string{
		"github.com/coffer-dev/coffer/internal/cli": {"github.com/coffer-dev/coffer/internal/core", "github.com/coffer-dev/coffer/internal/httpapi"},
		"github.com/coffer-dev/coffer/api":          {"github.com/coffer-dev/coffer/internal/"},
	} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Skipf("go list: %v", err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				if strings.HasPrefix(dep, f) {
					t.Errorf("%s imports %s", pkg, dep)
				}
			}
		}
	}
}
