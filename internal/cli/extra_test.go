package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestRewriteArgs(t *testing.T) {
	for name, tc := range map[string]struct{ in, want []string }{
		"vault single-dash long flag":      {[]string{"kv", "get", "-field=x", "secret/a"}, []string{"kv", "get", "--field=x", "secret/a"}},
		"flag with separate value":         {[]string{"-format", "json"}, []string{"--format", "json"}},
		"gnu flags are kept":               {[]string{"--format=json"}, []string{"--format=json"}},
		"one-letter flag is kept":          {[]string{"-h"}, []string{"-h"}},
		"lone dash is stdin":               {[]string{"kv", "put", "a", "-"}, []string{"kv", "put", "a", "-"}},
		"negative numbers are kept":        {[]string{"--cas", "-1", "-2.5", "-3=x"}, []string{"--cas", "-1", "-2.5", "-3=x"}},
		"words after -- are kept":          {[]string{"write", "--", "-notaflag"}, []string{"write", "--", "-notaflag"}},
		"values are not flags":             {[]string{"write", "p", "k=-v"}, []string{"write", "p", "k=-v"}},
		"empty":                            {[]string{}, []string{}},
		"negative flag value after equals": {[]string{"-cas=-1"}, []string{"--cas=-1"}},
	} {
		t.Run(name, func(t *testing.T) {
			if got := RewriteArgs(tc.in); !slices.Equal(got, tc.want) {
				t.Errorf("RewriteArgs(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	for name, tc := range map[string]struct {
		err  error
		want int
	}{
		"success":           {nil, 0},
		"usage error":       {usageErrorf("bad"), 2},
		"wrapped exit code": {errors.Join(errors.New("x"), &ExitError{Code: 2, Err: errors.New("y")}), 2},
		"other error":       {errors.New("boom"), 1},
	} {
		t.Run(name, func(t *testing.T) {
			if got := ExitCode(tc.err); got != tc.want {
				t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

func TestDecodeRootTokenRejectsBadInput(t *testing.T) {
	for name, tc := range map[string]struct{ encoded, otp string }{
		"not base64":       {"%%%", "abc"},
		"otp wrong length": {encodeRootToken("s.tok", "abcde"), "abc"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeRootToken(tc.encoded, tc.otp); ExitCode(err) != 2 {
				t.Errorf("decodeRootToken(%q, %q) = %v, want a usage error", tc.encoded, tc.otp, err)
			}
		})
	}
	// Padding is accepted as well.
	if got, err := decodeRootToken(encodeRootToken("s.tok", "abcde")+"=", "abcde"); err != nil || got != "s.tok" {
		t.Errorf("decode with padding = %q, %v", got, err)
	}
}

func TestLoginStoresTokenPrivately(t *testing.T) {
	for name, tc := range map[string]struct {
		args  []string
		stdin string
		files []string
	}{
		"token as argument":                  {[]string{"login", "s.good"}, "", []string{".coffer-token"}},
		"token from stdin":                   {[]string{"login"}, "s.good\n", []string{".coffer-token"}},
		"also the vault token file for sops": {[]string{"login", "-vault-token-file", "s.good"}, "", []string{".coffer-token", ".vault-token"}},
	} {
		t.Run(name, func(t *testing.T) {
			home := t.TempDir()
			// A stale file with loose permissions must be replaced, not reused.
			os.WriteFile(filepath.Join(home, ".coffer-token"), []byte("old"), 0o644)
			r := runCLI(t, cliCase{args: tc.args, stdin: tc.stdin, token: "s.good",
				calls: []exchange{{method: "GET", path: "auth/token/lookup-self", reply: "@auth-token-lookup-self"}}}, home)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if strings.Contains(r.stdout+r.stderr, "s.good") {
				t.Errorf("login printed the token:\n%s%s", r.stdout, r.stderr)
			}
			for _, f := range tc.files {
				p := filepath.Join(home, f)
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode().Perm(); got != 0o600 {
					t.Errorf("%s mode = %o, want 600", f, got)
				}
				if b, _ := os.ReadFile(p); string(b) != "s.good" {
					t.Errorf("%s = %q, want s.good", f, b)
				}
			}
			// Later commands read the stored token when no variable is set.
			r = runCLI(t, cliCase{args: []string{"token", "lookup"}, token: "s.good",
				env:   map[string]string{"COFFER_TOKEN": "-"},
				calls: []exchange{{method: "GET", path: "auth/token/lookup-self", reply: "@auth-token-lookup-self"}}}, home)
			if r.code != 0 {
				t.Errorf("token lookup with the stored token: exit %d: %s", r.code, r.stderr)
			}
		})
	}
}

func TestLoginRejectsBadTokenAndWritesNothing(t *testing.T) {
	home := t.TempDir()
	r := runCLI(t, cliCase{args: []string{"login", "s.bad"}, token: "s.bad",
		calls: []exchange{{method: "GET", path: "auth/token/lookup-self", status: 403, reply: `{"errors":["permission denied"]}`}}}, home)
	if r.code != 1 || !strings.Contains(r.stderr, "Error: token not accepted: permission denied") {
		t.Errorf("exit %d, stderr %q; want 1 and a plain error", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "s.bad") {
		t.Errorf("error shows the token: %q", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(home, ".coffer-token")); !os.IsNotExist(err) {
		t.Errorf("token file written for a rejected token (stat: %v)", err)
	}
}

// storageServer serves a backup and records a restore.
func storageServer(t *testing.T, backup []byte, lie bool) (*httptest.Server, *[]byte) {
	t.Helper()
	var restored []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Vault-Token") != "root" {
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"errors":["permission denied"]}`)
			return
		}
		switch r.Method + " " + r.URL.Path {
		case "GET /v1/sys/storage/backup":
			n := len(backup)
			if lie {
				n += 10 // promise more than is sent: a cut connection
			}
			w.Header().Set("Content-Length", strconv.Itoa(n))
			w.Write(backup)
		case "POST /v1/sys/storage/restore":
			if r.ContentLength < 0 || r.Header.Get("Content-Type") != "application/octet-stream" {
				t.Errorf("restore sent length %d type %q, want a known length and octet-stream", r.ContentLength, r.Header.Get("Content-Type"))
			}
			restored, _ = io.ReadAll(r.Body)
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &restored
}

func runWith(t *testing.T, addr string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	vars := map[string]string{"COFFER_ADDR": addr, "COFFER_TOKEN": "root"}
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return vars[k] }, home: t.TempDir()}
	err := Execute(context.Background(), newRoot(e), args)
	return out.String(), errb.String(), ExitCode(err)
}

func TestBackupAndRestore(t *testing.T) {
	data := bytes.Repeat([]byte("bolt"), 64<<10) // 256 KiB
	srv, restored := storageServer(t, data, false)
	file := filepath.Join(t.TempDir(), "coffer.db")

	stdout, stderr, code := runWith(t, srv.URL, "operator", "backup", file)
	if code != 0 {
		t.Fatalf("backup: exit %d: %s", code, stderr)
	}
	got, err := os.ReadFile(file)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("backup file has %d bytes (%v), want the %d served", len(got), err, len(data))
	}
	if want := "backup: 10%\n"; !strings.HasPrefix(stderr, want) || !strings.HasSuffix(stderr, "backup: 100%\n") || strings.Count(stderr, "\n") != 10 {
		t.Errorf("progress on a non-terminal = %q, want ten lines from 10%% to 100%%", stderr)
	}
	if want := "Success! Backup written to " + file + " (262144 bytes)\n"; stdout != want {
		t.Errorf("stdout = %q, want %q", stdout, want)
	}

	stdout, stderr, code = runWith(t, srv.URL, "operator", "restore", file)
	if code != 0 {
		t.Fatalf("restore: exit %d: %s", code, stderr)
	}
	if !bytes.Equal(*restored, data) {
		t.Errorf("server received %d bytes, want %d", len(*restored), len(data))
	}
	if !strings.HasSuffix(stderr, "restore: 100%\n") {
		t.Errorf("restore progress = %q", stderr)
	}
}

func TestBackupFailuresLeaveNoFile(t *testing.T) {
	srv, _ := storageServer(t, []byte("partial"), true)
	dir := t.TempDir()
	file := filepath.Join(dir, "coffer.db")
	if _, stderr, code := runWith(t, srv.URL, "operator", "backup", file); code != 1 {
		t.Errorf("truncated backup: exit %d, want 1 (%s)", code, stderr)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("files left after a failed backup: %v", entries)
	}
	if _, stderr, code := runWith(t, srv.URL, "operator", "restore", filepath.Join(dir, "none.db")); code != 1 || !strings.HasPrefix(stderr, "Error: restore:") {
		t.Errorf("restore of a missing file: exit %d, stderr %q", code, stderr)
	}
}

func TestProgressBarOnTerminal(t *testing.T) {
	var buf bytes.Buffer
	p := &progress{w: &buf, label: "backup", tty: true, total: 200}
	p.Write(make([]byte, 100))
	p.Write(make([]byte, 100))
	p.finish()
	got := buf.String()
	if !strings.Contains(got, "\rbackup [==============>               ]  50%") || !strings.Contains(got, "100%") || !strings.HasSuffix(got, "\n") {
		t.Errorf("bar = %q", got)
	}
}
