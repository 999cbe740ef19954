package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFuncs(t *testing.T) {
	now := func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	env := func(k string) string { return map[string]string{"HOME": "/home/app"}[k] }
	for name, tc := range map[string]struct{ src, want string }{
		"env reads the environment":     {`{{ env "HOME" }}`, "/home/app"},
		"base64 round trip":             {`{{ "s3cret" | base64Encode | base64Decode }}`, "s3cret"},
		"toJSON":                        {`{{ toJSON (dict) }}`, `{"a":1}`},
		"timestamp defaults to RFC3339": {`{{ timestamp }}`, "2026-01-02T03:04:05Z"},
		"timestamp unix":                {`{{ timestamp "unix" }}`, "1767323045"},
		"timestamp layout":              {`{{ timestamp "2006-01-02" }}`, "2026-01-02"},
	} {
		t.Run(name, func(t *testing.T) {
			fm := Funcs(env, now)
			fm["dict"] = func() map[string]int { return map[string]int{"a": 1} }
			tm, err := ParseTemplate("t", "")
			if err != nil {
				t.Fatal(err)
			}
			tm, err = tm.Funcs(fm).Parse(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := tm.Execute(&b, nil); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("got %q, want %q", b.String(), tc.want)
			}
		})
	}
	tm, _ := ParseTemplate("t", `{{ "%%%" | base64Decode }}`)
	if err := tm.Funcs(Funcs(env, now)).Execute(&bytes.Buffer{}, nil); err == nil || strings.Contains(err.Error(), "%%%") {
		t.Errorf("bad base64: err = %v, want an error without the input", err)
	}
}

func TestParseTemplateRejects(t *testing.T) {
	for _, src := range []string{`{{ secret }`, `{{ nosuchfunc "a" }}`, `{{ end }}`} {
		if _, err := ParseTemplate("t", src); err == nil {
			t.Errorf("ParseTemplate(%q) succeeded", src)
		}
	}
}

func TestNormalizePath(t *testing.T) {
	for in, want := range map[string]string{
		"secret/data/app":       "secret/app",
		"/secret/metadata/app/": "secret/app",
		"secret/destroy/a/b":    "secret/a/b",
		"kv/app":                "kv/app",
		"database/creds/ro":     "database/creds/ro",
		"secret":                "secret",
	} {
		if got := normalizePath(in); got != want {
			t.Errorf("normalizePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriteArgs(t *testing.T) {
	b, err := writeArgs([]string{"common_name=a.example", "ttl=1h"})
	if err != nil || b["common_name"] != "a.example" || b["ttl"] != "1h" {
		t.Errorf("writeArgs = %v, %v", b, err)
	}
	if _, err := writeArgs([]string{"novalue"}); err == nil {
		t.Error("an argument without = was accepted")
	}
	if secretKey("/a/", nil) != "a" || secretKey("a", []string{"x=1"}) == "a" {
		t.Error("secretKey does not separate reads from writes")
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "f")
	if err := writeFileAtomic(p, []byte("one"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(p, []byte("two"), 0o640); err != nil {
		t.Fatalf("replacing a read-only file: %v", err)
	}
	b, _ := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if string(b) != "two" || fi.Mode().Perm() != 0o640 {
		t.Errorf("file = %q mode %v, want two 0640", b, fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "sub"))
	if len(ents) != 1 {
		t.Errorf("temporary files left behind: %v", ents)
	}
	if err := writeFileAtomic(filepath.Join(p, "under-a-file"), []byte("x"), 0o400); err == nil {
		t.Error("writing under a regular file succeeded")
	}
}
