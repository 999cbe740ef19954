package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func mustParse(t testing.TB, name, src string) *Policy {
	t.Helper()
	p, err := Parse(name, src)
	if err != nil {
		t.Fatalf("Parse(%q): %v", name, err)
	}
	return p
}

func TestParse(t *testing.T) {
	for name, tc := range map[string]struct {
		src  string
		want []Rule
	}{
		"empty policy has no rules": {"", nil},
		"capabilities are sorted and deduplicated": {
			`path "secret/*" { capabilities = ["update", "read", "read"] }`,
			[]Rule{{Path: "secret/*", Capabilities: []string{"read", "update"}}},
		},
		"deny absorbs the other capabilities": {
			`path "secret/x" { capabilities = ["read", "deny"] }`,
			[]Rule{{Path: "secret/x", Capabilities: []string{"deny"}, Deny: true}},
		},
		"a leading slash is dropped": {
			`path "/secret/x" { capabilities = ["read"] }`,
			[]Rule{{Path: "secret/x", Capabilities: []string{"read"}}},
		},
		"legacy policy write means the five capabilities": {
			`path "secret/*" { policy = "write" }`,
			[]Rule{{Path: "secret/*", Capabilities: []string{"create", "delete", "list", "read", "update"}}},
		},
		"legacy policy and capabilities are unioned": {
			"path \"secret/*\" {\n policy = \"read\"\n capabilities = [\"sudo\"]\n}",
			[]Rule{{Path: "secret/*", Capabilities: []string{"list", "read", "sudo"}}},
		},
		"a rule without capabilities grants nothing": {
			`path "secret/x" {}`,
			[]Rule{{Path: "secret/x"}},
		},
		"wrapping TTLs are kept": {
			`path "sys/wrapping/wrap" {
			   capabilities = ["update"]
			   min_wrapping_ttl = 60
			   max_wrapping_ttl = "1h"
			 }`,
			[]Rule{{Path: "sys/wrapping/wrap", Capabilities: []string{"update"}, MinWrappingTTL: time.Minute, MaxWrappingTTL: time.Hour}},
		},
		"the JSON form is accepted": {
			`{"path": {"secret/*": {"capabilities": ["read"]}, "secret/x": {"capabilities": ["deny"]}}}`,
			[]Rule{
				{Path: "secret/*", Capabilities: []string{"read"}},
				{Path: "secret/x", Capabilities: []string{"deny"}, Deny: true},
			},
		},
		"JSON strings are literal": {
			`{"path": {"secret/${x}": {"capabilities": ["read"]}}}`,
			[]Rule{{Path: "secret/${x}", Capabilities: []string{"read"}}},
		},
		"a name attribute is ignored, as in Vault": {
			`name = "old"
			 path "a" { capabilities = ["read"] }`,
			[]Rule{{Path: "a", Capabilities: []string{"read"}}},
		},
		"rules keep their order, duplicates included": {
			`path "b" { capabilities = ["read"] }
			 path "a" { capabilities = ["list"] }
			 path "b" { capabilities = ["update"] }`,
			[]Rule{
				{Path: "b", Capabilities: []string{"read"}},
				{Path: "a", Capabilities: []string{"list"}},
				{Path: "b", Capabilities: []string{"update"}},
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			p := mustParse(t, "p", tc.src)
			want := &Policy{Name: "p", Rules: tc.want}
			if !p.Equal(want) {
				t.Errorf("Parse = %+v, want %+v", p.Rules, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		src        string
		line, col  int
		wantInText string
	}{
		"unknown capability": {
			"path \"a\" {\n  capabilities = [\"reed\"]\n}", 2, 18, `invalid capability "reed"`,
		},
		"unknown attribute": {
			"path \"a\" {\n  capabilites = [\"read\"]\n}", 2, 3, `"capabilites"`,
		},
		"unknown block": {
			"paths \"a\" {\n}", 1, 1, `"paths"`,
		},
		"missing label": {
			"path {\n}", 1, 6, "label",
		},
		"syntax error": {
			"path \"a\" {\n  capabilities = [\"read\"\n}", 3, 1, "",
		},
		"star in the middle": {
			"\n\npath \"secret/*/x\" { capabilities = [\"read\"] }", 3, 6, `"*" is only allowed at the end`,
		},
		"capabilities not a list": {
			"path \"a\" { capabilities = \"read\" }", 1, 12, "list of strings",
		},
		"variables are refused": {
			"path \"a\" { capabilities = [var.x] }", 1, 28, "Variables not allowed",
		},
		"functions are refused": {
			"path \"a\" { capabilities = upper(\"x\") }", 1, 27, "Function calls not allowed",
		},
		"invalid legacy policy": {
			"path \"a\" { policy = \"all\" }", 1, 21, `invalid policy "all"`,
		},
		"allowed_parameters not supported yet": {
			"path \"a\" {\n capabilities = [\"update\"]\n allowed_parameters = { \"x\" = [] }\n}", 3, 2, "allowed_parameters is not supported yet",
		},
		"denied_parameters not supported yet": {
			"path \"a\" {\n denied_parameters = { \"x\" = [] }\n}", 2, 2, "denied_parameters is not supported yet",
		},
		"required_parameters not supported yet": {
			"path \"a\" {\n required_parameters = [\"x\"]\n}", 2, 2, "required_parameters is not supported yet",
		},
		"max below min wrapping TTL": {
			"path \"a\" {\n min_wrapping_ttl = 60\n max_wrapping_ttl = 30\n}", 1, 6, "max_wrapping_ttl cannot be less",
		},
		"bad duration": {
			"path \"a\" {\n min_wrapping_ttl = \"soon\"\n}", 2, 2, "not a valid duration",
		},
		"negative duration": {
			"path \"a\" {\n min_wrapping_ttl = -5\n}", 2, 2, "whole number of seconds",
		},
		"control character in path": {
			"path \"a\\u0000b\" { capabilities = [\"read\"] }", 1, 6, "control characters",
		},
		"JSON unknown attribute": {
			"{\"path\": {\"a\": {\"capabilitys\": [\"read\"]}}}", 1, 17, `"capabilitys"`,
		},
		"JSON unknown capability": {
			"{\"path\": {\"a\": {\"capabilities\": [\"rd\"]}}}", 1, 33, `invalid capability "rd"`,
		},
		"JSON syntax error": {
			"{\"path\": ", 1, 10, "",
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("p", tc.src)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse error = %v, want a *ParseError", err)
			}
			if pe.Line != tc.line || pe.Column != tc.col {
				t.Errorf("error at %d:%d, want %d:%d (%v)", pe.Line, pe.Column, tc.line, tc.col, err)
			}
			if !strings.Contains(err.Error(), tc.wantInText) {
				t.Errorf("error %q does not contain %q", err, tc.wantInText)
			}
		})
	}
}

func TestStringRoundTrip(t *testing.T) {
	for name, src := range map[string]string{
		"default policy": DefaultPolicyText,
		"escapes":        `path "a/$${x}/%%{y}/\"q\"/\\/é/\u200b/$$/%" { capabilities = ["read"] }`,
		"deny and empty": `path "a" { capabilities = ["deny"] }` + "\n" + `path "b" {}`,
		"wrapping":       "path \"a\" {\n min_wrapping_ttl = \"90s\"\n max_wrapping_ttl = 3600\n}",
	} {
		t.Run(name, func(t *testing.T) {
			p := mustParse(t, "p", src)
			q, err := Parse("p", p.String())
			if err != nil {
				t.Fatalf("Parse(String()) = %v\n%s", err, p.String())
			}
			if !p.Equal(q) {
				t.Errorf("round trip changed the policy:\n%+v\n%+v", p.Rules, q.Rules)
			}
		})
	}
}

func TestStringIsCanonical(t *testing.T) {
	p := mustParse(t, "p", `path "b" { capabilities = ["update","read"] }
path "a/*" { policy = "deny" }`)
	want := `path "b" {
  capabilities = ["read", "update"]
}

path "a/*" {
  capabilities = ["deny"]
}
`
	if got := p.String(); got != want {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
	if got := RootPolicy().String(); got != "" {
		t.Errorf("RootPolicy().String() = %q, want empty", got)
	}
}

func TestRootIsNotParsed(t *testing.T) {
	// Only RootPolicy() makes a root ACL, never a parsed policy that
	// happens to be called root.
	p := mustParse(t, RootName, "")
	if acl := NewACL(p); acl.IsRoot() || acl.Allowed(Read, "secret/x") {
		t.Error("a parsed policy named root grants root")
	}
	if RootPolicy().Equal(p) {
		t.Error("RootPolicy() equals a parsed empty policy named root")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(DefaultPolicyText)
	f.Add(`path "secret/+/x*" { capabilities = ["read", "deny"] min_wrapping_ttl = 5 }`)
	f.Add(`{"path": {"a/$${b}": {"policy": "sudo"}}}`)
	f.Add(`path "a\"\\$${x}%%{y}" { capabilities = [] }`)
	f.Fuzz(func(t *testing.T, src string) {
		p, err := Parse("p", src)
		if err != nil {
			return
		}
		q, err := Parse("p", p.String())
		if err != nil {
			t.Fatalf("String() does not parse: %v\n%s", err, p.String())
		}
		if !p.Equal(q) {
			t.Fatalf("policy changed on round trip:\n%+v\n%+v", p.Rules, q.Rules)
		}
	})
}
