package database

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"
)

func TestStatementsDecoding(t *testing.T) {
	for name, tc := range map[string]struct {
		in   string
		want []string
	}{
		"a string is one statement, commas and all": {`"GRANT SELECT, INSERT ON t TO x; SELECT 1"`, []string{"GRANT SELECT, INSERT ON t TO x; SELECT 1"}},
		"a list keeps its statements":               {`["A", " ", "B"]`, []string{"A", "B"}},
		"an empty string is no statement":           {`""`, nil},
		"null is no statement":                      {`null`, nil},
	} {
		t.Run(name, func(t *testing.T) {
			var got statements
			if err := json.Unmarshal([]byte(tc.in), &got); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint([]string(got)) != fmt.Sprint(tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	var s statements
	if err := json.Unmarshal([]byte(`{"a":1}`), &s); err == nil {
		t.Error("an object decoded as statements")
	}
}

func TestNewUsername(t *testing.T) {
	now := time.Unix(1700000000, 0)
	safe := regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	for name, tc := range map[string]struct{ display, role, prefix string }{
		"short names are kept":         {"token", "ro", "v-token-ro-"},
		"long names are cut to 8":      {"kubernetes-default-app", "readonly-role", "v-kubernet-readonly-"},
		"unsafe characters are masked": {`x"; DROP`, "r'o", "v-x___DROP-r_o-"},
	} {
		t.Run(name, func(t *testing.T) {
			u := newUsername(tc.display, tc.role, now)
			if !strings.HasPrefix(u, tc.prefix) || !strings.HasSuffix(u, "-1700000000") || len(u) > 63 || !safe.MatchString(u) {
				t.Errorf("newUsername(%q, %q) = %q, want prefix %q, unix suffix, <= 63 safe characters", tc.display, tc.role, u, tc.prefix)
			}
		})
	}
	if a, b := newUsername("t", "r", now), newUsername("t", "r", now); a == b {
		t.Error("two usernames in the same second are equal")
	}
}

func TestNewPassword(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		p := newPassword()
		if len(p) != passwordLen || strings.Trim(p, alphanum) != "" || seen[p] {
			t.Fatalf("newPassword() = %q: want %d fresh alphanumeric characters", p, passwordLen)
		}
		seen[p] = true
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		list []string
		name string
		want bool
	}{
		{nil, "a", false},
		{[]string{"*"}, "anything", true},
		{[]string{"ro"}, "ro", true},
		{[]string{"ro"}, "rw", false},
		{[]string{"app-*"}, "app-1", true},
		{[]string{"app-*"}, "web-1", false},
		{[]string{"*-ro"}, "app-ro", true},
		{[]string{"a*b*c"}, "axxbyyc", true},
		{[]string{"a*b*c"}, "axxc", false},
		{[]string{"a*a"}, "a", false},
	} {
		if got := globMatch(tc.list, tc.name); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tc.list, tc.name, got, tc.want)
		}
	}
}

func TestRedactedURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgresql://{{username}}:{{password}}@h:5432/db": "postgresql://{{username}}:{{password}}@h:5432/db",
		"postgresql://root:hunter2@h:5432/db?x=1":          "postgresql://root:*****@h:5432/db?x=1",
		"postgresql://root@h/db":                           "postgresql://root@h/db",
		"host=h user=root password=hunter2 dbname=db":      "host=h user=root password=***** dbname=db",
		"host=h password='hun ter2' dbname=db":             "host=h password=***** dbname=db",
		"host=h password={{password}}":                     "host=h password={{password}}",
	} {
		if got := redactedURL(in); got != want {
			t.Errorf("redactedURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestScramVerifierShape(t *testing.T) {
	v, err := scramVerifier("password")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$`).MatchString(v) {
		t.Errorf("scramVerifier = %q, not PostgreSQL's verifier format", v)
	}
	if w, _ := scramVerifier("password"); w == v {
		t.Error("two verifiers of one password share a salt")
	}
}

// FuzzRedactedURL checks that an inline password never survives redaction.
func FuzzRedactedURL(f *testing.F) {
	f.Add("postgresql://u:secretpw@h/db", "secretpw")
	f.Add("host=h password=secretpw", "secretpw")
	f.Fuzz(func(t *testing.T, prefix, pw string) {
		bad := func(s string) bool {
			return strings.ContainsAny(s, "@/?:'\\{}*=") || strings.IndexFunc(s, unicode.IsSpace) >= 0
		}
		if len(pw) < 6 || bad(pw) || bad(prefix) {
			return
		}
		for _, u := range []string{"postgresql://" + prefix + ":" + pw + "@h/db", "host=h password=" + pw + " dbname=" + prefix} {
			if strings.Contains(redactedURL(u), pw) && !strings.Contains(strings.Replace(u, pw, "", 1), pw) {
				t.Fatalf("redactedURL(%q) = %q still shows the password", u, redactedURL(u))
			}
		}
	})
}
