package cli

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runApply runs "apply" (not yet registered under "operator") against a
// fake server answering calls in order.
func runApply(t *testing.T, calls []exchange, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	fs := &fakeServer{t: t, token: "root", calls: calls}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	vars := map[string]string{"COFFER_ADDR": srv.URL, "COFFER_TOKEN": "root"}
	var out, errb bytes.Buffer
	a := &app{env: &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return vars[k] }}}
	cmd := a.applyCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	err = cmd.ExecuteContext(t.Context())
	if fs.next != len(fs.calls) {
		t.Errorf("server saw %d of %d expected requests", fs.next, len(fs.calls))
	}
	return out.String(), errb.String(), err
}

func TestApplyDryRun(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "day0.hcl")
	src := `
mount "secret" {
  type    = "kv"
  options = { version = "2" }
}
mount "transit" { type = "transit" }
policy "app" { text = "path \"a\" { capabilities = [\"read\"] }" }
`
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	mounts := `{"data":{"secret/":{"type":"kv","description":"","options":{"version":"2"},"config":{"default_lease_ttl":0}},
		"old/":{"type":"kv","options":null,"config":{}},"sys/":{"type":"system"}}}`
	calls := []exchange{
		{method: "GET", path: "sys/mounts", reply: mounts},
		{method: "GET", path: "sys/auth", reply: `{"data":{"token/":{"type":"token"}}}`},
		{method: "GET", path: "sys/audit", status: http.StatusNotFound, reply: `{"errors":[]}`},
		{method: "LIST", path: "sys/policies/acl", reply: `{"data":{"keys":["app","default","root"]}}`},
		{method: "GET", path: "sys/policies/acl/app", reply: `{"data":{"name":"app","policy":"path \"b\" {}"}}`},
		{method: "GET", path: "sys/policies/acl/default", reply: `{"data":{"name":"default","policy":"x"}}`},
		{method: "GET", path: "sys/declarative/owned", reply: `{"data":{"owned":["policy app","mount old/"]}}`},
	}
	out, _, err := runApply(t, calls, "--dry-run", cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := "~ update policy app (text)\n+ create mount transit/ (transit)\n- delete mount old/\n"
	if out != want {
		t.Errorf("plan =\n%s\nwant\n%s", out, want)
	}

	t.Run("a server without the owned set shows no deletions and says so", func(t *testing.T) {
		calls := append(calls[:len(calls)-1:len(calls)-1], exchange{method: "GET", path: "sys/declarative/owned", status: http.StatusNotFound, reply: `{"errors":[]}`})
		out, stderr, err := runApply(t, calls, "--dry-run", cfg)
		if err != nil {
			t.Fatal(err)
		}
		if want := "+ create mount transit/ (transit)\n! conflict policy app: exists on the server and was not created by the declarative configuration\n"; out != want {
			t.Errorf("plan =\n%s\nwant\n%s", out, want)
		}
		if !strings.Contains(stderr, "no deletions are shown") {
			t.Errorf("stderr = %q, want the note about deletions", stderr)
		}
	})
}

func TestApplyBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.hcl")
	if err := os.WriteFile(bad, []byte(`mount "sys" { type = "kv" }`), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"without --dry-run is a usage error": {[]string{bad}, "use --dry-run"},
		"invalid configuration":              {[]string{"--dry-run", bad}, "reserved"},
		"missing file":                       {[]string{"--dry-run", filepath.Join(dir, "nope")}, "no such file"},
		"no argument":                        {[]string{"--dry-run"}, "takes 1 argument"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := runApply(t, nil, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
