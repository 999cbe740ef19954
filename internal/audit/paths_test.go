package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/coffer-dev/coffer/internal/logical"
)

func TestAllowedDirs(t *testing.T) {
	allowed := t.TempDir()
	outside := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(allowed, "sub"), 0o700))
	must(os.Symlink(outside, filepath.Join(allowed, "escape")))                            // a directory symlink out
	must(os.WriteFile(filepath.Join(outside, "victim"), nil, 0o600))                       //
	must(os.Symlink(filepath.Join(outside, "victim"), filepath.Join(allowed, "link.log"))) // a file symlink out
	must(os.Symlink(filepath.Join(allowed, "sub"), filepath.Join(allowed, "inside")))      // a symlink that stays in
	linkedAllowed := filepath.Join(t.TempDir(), "allowed-link")                            //
	must(os.Symlink(allowed, linkedAllowed))                                               // the allowed dir itself through a symlink
	for name, tc := range map[string]struct {
		path     string
		allowed  []string
		any      bool
		declared bool
		ok       bool
	}{
		"a file in an allowed dir":                 {filepath.Join(allowed, "a.log"), []string{allowed}, false, false, true},
		"a file in a subdirectory":                 {filepath.Join(allowed, "sub", "a.log"), []string{allowed}, false, false, true},
		"a symlinked directory that stays inside":  {filepath.Join(allowed, "inside", "a.log"), []string{allowed}, false, false, true},
		"an allowed dir named through a symlink":   {filepath.Join(allowed, "a.log"), []string{linkedAllowed}, false, false, true},
		"a ../ escape":                             {allowed + "/../" + filepath.Base(outside) + "/a.log", []string{allowed}, false, false, false},
		"a ../ that would land inside":             {allowed + "/sub/../a.log", []string{allowed}, false, false, false},
		"a directory symlink out":                  {filepath.Join(allowed, "escape", "a.log"), []string{allowed}, false, false, false},
		"a file symlink out":                       {filepath.Join(allowed, "link.log"), []string{allowed}, false, false, false},
		"a file symlink out even with --dev":       {filepath.Join(allowed, "link.log"), nil, true, false, false},
		"a file outside":                           {filepath.Join(outside, "a.log"), []string{allowed}, false, false, false},
		"the allowed dir itself":                   {allowed, []string{allowed}, false, false, false},
		"no allowed dirs":                          {filepath.Join(allowed, "a.log"), nil, false, false, false},
		"no allowed dirs with --dev":               {filepath.Join(outside, "a.log"), nil, true, false, true},
		"a config-declared device writes anywhere": {filepath.Join(outside, "cfg.log"), nil, false, true, true},
		"stdout through the API with no dirs":      {"stdout", nil, false, false, true},
		"discard through the API with no dirs":     {"discard", nil, false, false, true},
		"a device file":                            {"/dev/null", []string{"/dev"}, false, false, false},
		"a directory that does not exist":          {filepath.Join(allowed, "nope", "a.log"), []string{allowed}, false, false, false},
	} {
		t.Run(name, func(t *testing.T) {
			b := newBroker(t, Config{AllowedDirs: tc.allowed, AllowAnyPath: tc.any})
			err := b.Enable(context.Background(), "f", DeviceConfig{Type: "file", Options: map[string]string{"file_path": tc.path}}, tc.declared)
			if tc.ok && err != nil {
				t.Fatalf("Enable(%s) = %v, want success", tc.path, err)
			}
			if !tc.ok && (err == nil || logical.CodeOf(err) != logical.Invalid) {
				t.Fatalf("Enable(%s) = %v, want an Invalid error", tc.path, err)
			}
			if !tc.ok && !tc.declared && tc.path != "/dev/null" && !errors.Is(err, ErrPathNotAllowed) {
				t.Errorf("Enable(%s) = %v, want ErrPathNotAllowed", tc.path, err)
			}
		})
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "victim")); len(b) != 0 {
		t.Errorf("the file behind a symlink was written")
	}
}
