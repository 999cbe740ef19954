package policy

import (
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/coffer-dev/coffer/internal/logical"
)

// check is one expectation on an ACL.
type check struct {
	op   logical.Operation
	path string
	want bool
}

func aclOf(t testing.TB, srcs ...string) *ACL {
	t.Helper()
	var ps []*Policy
	for i, s := range srcs {
		ps = append(ps, mustParse(t, "p"+string(rune('a'+i)), s))
	}
	return NewACL(ps...)
}

func runChecks(t *testing.T, a *ACL, checks []check) {
	t.Helper()
	for _, c := range checks {
		if got, _ := a.AllowedOperation(c.op, c.path); got != c.want {
			t.Errorf("AllowedOperation(%s, %q) = %v, want %v (capabilities %v)", c.op, c.path, got, c.want, a.Capabilities(c.path))
		}
	}
}

const (
	read   = logical.ReadOperation
	list   = logical.ListOperation
	update = logical.UpdateOperation
	create = logical.CreateOperation
	del    = logical.DeleteOperation
)

// The examples of Vault's "Policies" documentation, quoted in the rules.
func TestVaultDocExamples(t *testing.T) {
	a := aclOf(t, `
# Permit reading only "secret/foo". An attached token cannot read
# "secret/food" or "secret/foo/bar".
path "secret/foo" { capabilities = ["read"] }

# Permit reading everything under "secret/bar". An attached token could read
# "secret/bar/zip", "secret/bar/zip/zap", but not "secret/bars/zip".
path "secret/bar/*" { capabilities = ["read"] }

# Permit reading everything prefixed with "zip-". An attached token could
# read "secret/zip-zap" or "secret/zip-zap/zong", but not "secret/zip/zap".
path "secret/zip-*" { capabilities = ["read"] }

# Permit reading the "teamb" path under any top-level path under secret/.
path "secret/+/teamb" { capabilities = ["read"] }

# Permit reading secret/foo/bar/teamb, secret/bar/foo/teamb, etc.
path "secret/+/+/teamb" { capabilities = ["read"] }
`)
	runChecks(t, a, []check{
		{read, "secret/foo", true},
		{read, "secret/food", false},
		{read, "secret/foo/bar", false},
		{read, "secret/bar/zip", true},
		{read, "secret/bar/zip/zap", true},
		{read, "secret/bars/zip", false},
		{read, "secret/zip-zap", true},
		{read, "secret/zip-zap/zong", true},
		{read, "secret/zip/zap", false},
		{read, "secret/x/teamb", true},
		{read, "secret/x/teamb/more", false},
		{read, "secret/foo/bar/teamb", true},
		{read, "secret/bar/foo/teamb", true},
		{update, "secret/foo", false},
	})
}

func TestPriority(t *testing.T) {
	for name, tc := range map[string]struct {
		policies []string
		checks   []check
	}{
		// Vault doc: "given the two paths, secret/* and secret/+/*, the first
		// wildcard appears in the same place, both end in * and the latter
		// has one wildcard segment while the former has zero. So we end up
		// with the former being given priority."
		"fewer + segments wins (secret/* over secret/+/*)": {
			[]string{`path "secret/*" { capabilities = ["read"] }
			          path "secret/+/*" { capabilities = ["update"] }`},
			[]check{{read, "secret/a/b", true}, {update, "secret/a/b", false}},
		},
		"exact beats any wildcard": {
			[]string{`path "secret/foo" { capabilities = ["update"] }
			          path "secret/foo*" { capabilities = ["read"] }
			          path "secret/+" { capabilities = ["read"] }`},
			[]check{{update, "secret/foo", true}, {read, "secret/foo", false}, {read, "secret/food", true}},
		},
		"capabilities are not unioned across different matching rules": {
			[]string{`path "secret/*" { capabilities = ["read"] }
			          path "secret/foo" { capabilities = ["update"] }`},
			[]check{{update, "secret/foo", true}, {read, "secret/foo", false}, {read, "secret/bar", true}},
		},
		"longer prefix wins": {
			[]string{`path "secret/*" { capabilities = ["read"] }
			          path "secret/app/*" { capabilities = ["update"] }`},
			[]check{{update, "secret/app/x", true}, {read, "secret/app/x", false}, {read, "secret/other", true}},
		},
		"later first wildcard wins (foo/bar/+/baz over foo/+/bar/baz)": {
			[]string{`path "foo/+/bar/baz" { capabilities = ["read"] }
			          path "foo/bar/+/baz" { capabilities = ["update"] }`},
			[]check{{update, "foo/bar/bar/baz", true}, {read, "foo/bar/bar/baz", false}},
		},
		"a glob later in the path beats an earlier + (foo/a* over foo/+)": {
			[]string{`path "foo/+" { capabilities = ["read"] }
			          path "foo/a*" { capabilities = ["update"] }`},
			[]check{{update, "foo/ab", true}, {read, "foo/ab", false}, {read, "foo/b", true}},
		},
		"no trailing * beats a trailing * at the same place (foo/+ over foo/*)": {
			[]string{`path "foo/*" { capabilities = ["read"] }
			          path "foo/+" { capabilities = ["update"] }`},
			[]check{{update, "foo/x", true}, {read, "foo/x", false}, {read, "foo/x/y", true}},
		},
		"no trailing * beats a trailing * (foo/+/bar over foo/+/ba*)": {
			[]string{`path "foo/+/ba*" { capabilities = ["read"] }
			          path "foo/+/bar" { capabilities = ["update"] }`},
			[]check{{update, "foo/x/bar", true}, {read, "foo/x/bar", false}, {read, "foo/x/baz", true}},
		},
		"fewer + segments wins (foo/bar/+/baz over foo/+/+/baz is by position; here same position)": {
			[]string{`path "foo/+/+/baz" { capabilities = ["read"] }
			          path "foo/+/x/baz" { capabilities = ["update"] }`},
			[]check{{update, "foo/a/x/baz", true}, {read, "foo/a/x/baz", false}, {read, "foo/a/y/baz", true}},
		},
		"longer wins (foo/+/bar/ba* over foo/+/bar/b*)": {
			[]string{`path "foo/+/bar/b*" { capabilities = ["read"] }
			          path "foo/+/bar/ba*" { capabilities = ["update"] }`},
			[]check{{update, "foo/x/bar/baz", true}, {read, "foo/x/bar/baz", false}, {read, "foo/x/bar/bz", true}},
		},
		"lexically larger wins when all else is equal": {
			[]string{`path "a/+/+/d" { capabilities = ["read"] }
			          path "a/+/c/+" { capabilities = ["update"] }`},
			[]check{{update, "a/x/c/d", true}, {read, "a/x/c/d", false}},
		},
		"+ matches exactly one segment": {
			[]string{`path "secret/+/config" { capabilities = ["read"] }`},
			[]check{{read, "secret/a/config", true}, {read, "secret/config", false}, {read, "secret/a/b/config", false}},
		},
		"+ with a trailing glob": {
			[]string{`path "secret/+/app/*" { capabilities = ["read"] }`},
			[]check{{read, "secret/a/app/x/y", true}, {read, "secret/a/app/", true}, {read, "secret/a/apps", false}, {read, "secret/app/x", false}},
		},
		"a deciding rule without capabilities grants nothing": {
			[]string{`path "secret/*" { capabilities = ["read"] }
			          path "secret/hidden" {}`},
			[]check{{read, "secret/hidden", false}, {read, "secret/other", true}},
		},
		"* alone matches everything": {
			[]string{`path "*" { capabilities = ["read"] }`},
			[]check{{read, "anything/at/all", true}, {read, "", true}, {update, "x", false}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			runChecks(t, aclOf(t, tc.policies...), tc.checks)
		})
	}
}

func TestDenyAndMerge(t *testing.T) {
	for name, tc := range map[string]struct {
		policies []string
		checks   []check
		caps     map[string][]string
	}{
		// Vault doc: "deny" takes precedence over any other capability.
		"deny on a more specific path wins": {
			[]string{`path "secret/*" { capabilities = ["read"] }`,
				`path "secret/super-secret" { capabilities = ["deny"] }`},
			[]check{{read, "secret/super-secret", false}, {read, "secret/other", true}},
			map[string][]string{"secret/super-secret": {"deny"}, "secret/other": {"read"}},
		},
		"same path in two policies: capabilities are unioned": {
			[]string{`path "secret/foo" { capabilities = ["read"] }`,
				`path "secret/foo" { capabilities = ["create", "update"] }`},
			[]check{{read, "secret/foo", true}, {update, "secret/foo", true}, {create, "secret/foo", true}, {del, "secret/foo", false}},
			map[string][]string{"secret/foo": {"create", "read", "update"}},
		},
		"same glob in two policies: unioned": {
			[]string{`path "secret/*" { capabilities = ["read"] }`,
				`path "secret/*" { capabilities = ["list"] }`},
			[]check{{read, "secret/a", true}, {list, "secret/", true}},
			map[string][]string{"secret/a": {"list", "read"}},
		},
		"same + path in two policies: unioned": {
			[]string{`path "secret/+/x" { capabilities = ["read"] }`,
				`path "secret/+/x" { capabilities = ["update"] }`},
			[]check{{read, "secret/a/x", true}, {update, "secret/a/x", true}},
			map[string][]string{"secret/a/x": {"read", "update"}},
		},
		"deny in one policy wins over the same path in another": {
			[]string{`path "secret/foo" { capabilities = ["read", "update"] }`,
				`path "secret/foo" { capabilities = ["deny"] }`,
				`path "secret/foo" { capabilities = ["delete"] }`},
			[]check{{read, "secret/foo", false}, {del, "secret/foo", false}},
			map[string][]string{"secret/foo": {"deny"}},
		},
		"same path twice in one policy: merged too": {
			[]string{`path "a" { capabilities = ["read"] }
			          path "a" { capabilities = ["list"] }`},
			nil,
			map[string][]string{"a": {"list", "read"}},
		},
		"deny on a glob loses to a more specific allow": {
			[]string{`path "secret/*" { capabilities = ["deny"] }
			          path "secret/open" { capabilities = ["read"] }`},
			[]check{{read, "secret/open", true}, {read, "secret/closed", false}},
			map[string][]string{"secret/open": {"read"}, "secret/closed": {"deny"}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			a := aclOf(t, tc.policies...)
			runChecks(t, a, tc.checks)
			for p, want := range tc.caps {
				if got := a.Capabilities(p); !slices.Equal(got, want) {
					t.Errorf("Capabilities(%q) = %v, want %v", p, got, want)
				}
			}
		})
	}
}

func TestList(t *testing.T) {
	for name, tc := range map[string]struct {
		policies []string
		checks   []check
	}{
		"secret/metadata/* allows LIST secret/metadata/": {
			[]string{`path "secret/metadata/*" { capabilities = ["list"] }`},
			[]check{{list, "secret/metadata/", true}, {list, "secret/metadata", true}, {list, "secret/metadata/app/", true}},
		},
		"an exact rule without the slash allows the list": {
			[]string{`path "secret/metadata" { capabilities = ["list"] }`},
			[]check{{list, "secret/metadata/", true}, {read, "secret/metadata/", false}},
		},
		"an exact rule with the slash allows the list": {
			[]string{`path "secret/metadata/" { capabilities = ["list"] }`},
			[]check{{list, "secret/metadata", true}},
		},
		"a + rule without the slash allows the list": {
			[]string{`path "+/sys/policies/acl" { capabilities = ["list"] }`},
			[]check{{list, "ns/sys/policies/acl/", true}},
		},
		// Vault matches "p" before "p/" for a LIST, so a broader glob that
		// matches "secret/metadata" decides over "secret/metadata/*".
		"Vault quirk: the glob matching the path without its slash decides": {
			[]string{`path "secret/*" { capabilities = ["read"] }
			          path "secret/metadata/*" { capabilities = ["list"] }`},
			[]check{{list, "secret/metadata/", false}, {list, "secret/metadata/app/", true}},
		},
		"list needs the list capability": {
			[]string{`path "secret/*" { capabilities = ["read"] }`},
			[]check{{list, "secret/", false}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			runChecks(t, aclOf(t, tc.policies...), tc.checks)
		})
	}
}

func TestCapabilities(t *testing.T) {
	a := aclOf(t, `path "secret/data/myapp" { capabilities = ["read"] }
path "transit/encrypt/sops" { capabilities = ["update", "sudo", "create"] }
path "secret/empty" {}`)
	for path, want := range map[string][]string{
		// As in golden/sys-capabilities-self.json.
		"secret/data/myapp":     {"read"},
		"secret/data/other":     {"deny"},
		"transit/encrypt/sops":  {"create", "sudo", "update"},
		"/transit/encrypt/sops": {"create", "sudo", "update"},
		"secret/empty":          {"deny"},
		"":                      {"deny"},
	} {
		if got := a.Capabilities(path); !slices.Equal(got, want) {
			t.Errorf("Capabilities(%q) = %v, want %v", path, got, want)
		}
	}
	if got := NewACL().Capabilities("x"); !slices.Equal(got, []string{"deny"}) {
		t.Errorf("empty ACL: Capabilities = %v, want [deny]", got)
	}
}

func TestSudo(t *testing.T) {
	a := aclOf(t, `path "sys/audit/*" { capabilities = ["update", "sudo"] }
path "sys/mounts/*" { capabilities = ["update"] }`)
	if ok, sudo := a.AllowedOperation(update, "sys/audit/file"); !ok || !sudo {
		t.Errorf("sys/audit/file: allowed %v sudo %v, want true true", ok, sudo)
	}
	if ok, sudo := a.AllowedOperation(update, "sys/mounts/kv"); !ok || sudo {
		t.Errorf("sys/mounts/kv: allowed %v sudo %v, want true false", ok, sudo)
	}
	if !a.Allowed(Sudo, "sys/audit/x") || a.Allowed(Sudo, "sys/mounts/x") {
		t.Error("Allowed(Sudo) disagrees with the policy")
	}
}

func TestRoot(t *testing.T) {
	a := NewACL(RootPolicy())
	if !a.IsRoot() {
		t.Fatal("IsRoot() = false")
	}
	if got := a.Capabilities("anything"); !slices.Equal(got, []string{"root"}) {
		t.Errorf("Capabilities = %v, want [root]", got)
	}
	for _, op := range []logical.Operation{read, list, update, create, del, logical.PatchOperation} {
		if ok, sudo := a.AllowedOperation(op, "sys/raw/x"); !ok || !sudo {
			t.Errorf("AllowedOperation(%s) = %v, %v, want true, true", op, ok, sudo)
		}
	}
	if a.Allowed(Deny, "x") {
		t.Error("Allowed(Deny) = true")
	}
	// Root with other policies is still root (Vault refuses the mix; only
	// root can grant root, so being lenient grants nothing new).
	if !NewACL(DefaultPolicy(), RootPolicy()).IsRoot() {
		t.Error("root mixed with default is not root")
	}
}

func TestDefaultPolicy(t *testing.T) {
	a := NewACL(DefaultPolicy())
	runChecks(t, a, []check{
		{read, "auth/token/lookup-self", true},
		{update, "auth/token/renew-self", true},
		{update, "auth/token/revoke-self", true},
		{update, "sys/capabilities-self", true},
		{read, "sys/internal/ui/resultant-acl", true},
		{update, "sys/renew", true},
		{update, "sys/leases/renew", true},
		{update, "sys/leases/lookup", true},
		{create, "cubbyhole/x", true},
		{read, "cubbyhole/x/y", true},
		{del, "cubbyhole/x", true},
		{list, "cubbyhole/", true},
		{update, "sys/wrapping/wrap", true},
		{update, "sys/wrapping/lookup", true},
		{update, "sys/wrapping/unwrap", true},
		{update, "sys/tools/hash", true},
		{update, "sys/tools/hash/sha2-256", true},
		{read, "identity/oidc/provider/p/authorize", true},
		{read, "auth/token/lookup", false},
		{update, "auth/token/create", false},
		{read, "secret/data/x", false},
		{read, "sys/mounts", false},
		{update, "auth/token/lookup-self", false},
	})
	if DefaultPolicy().Name != DefaultName {
		t.Errorf("DefaultPolicy().Name = %q", DefaultPolicy().Name)
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"":                   "",
		"/":                  "",
		"secret/x":           "secret/x",
		"/secret/x":          "secret/x",
		"//secret//x":        "secret/x",
		"secret/metadata/":   "secret/metadata/",
		"secret/a/../b":      "secret/b",
		"secret/./b/":        "secret/b/",
		"../../secret/b":     "secret/b",
		"secret/public/../x": "secret/x",
	} {
		if got := CleanPath(in); got != want {
			t.Errorf("CleanPath(%q) = %q, want %q", in, got, want)
		}
	}
	// A path that escapes its allowed prefix with ".." is checked where
	// it lands.
	a := aclOf(t, `path "secret/public/*" { capabilities = ["read"] }`)
	runChecks(t, a, []check{{read, "secret/public/../private", false}, {read, "secret/public/./x", true}})
}

func TestUnknownOperationIsDenied(t *testing.T) {
	a := aclOf(t, `path "*" { capabilities = ["create", "read", "update", "delete", "list", "patch", "sudo"] }`)
	if ok, _ := a.AllowedOperation("rollback", "x"); ok {
		t.Error("an unknown operation was allowed")
	}
}

func TestConcurrentUse(t *testing.T) {
	a := NewACL(DefaultPolicy(), mustParse(t, "x", `path "secret/+/x*" { capabilities = ["read"] }`))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				a.AllowedOperation(read, "secret/a/xy")
				a.Capabilities("cubbyhole/x")
			}
		})
	}
	wg.Wait()
}

func FuzzACL(f *testing.F) {
	f.Add(`path "secret/+/x*" { capabilities = ["read", "list"] }
path "secret/*" { capabilities = ["deny"] }`, "secret/a/xy")
	f.Add(`path "+*" { capabilities = ["list"] }`, "a/b/")
	f.Add(`path "a/+" { capabilities = ["update"] }`, "a/")
	f.Add(`path "a/*" { capabilities = ["read"] }
path "a" { capabilities = ["deny"] }`, "a/")
	ops := map[logical.Operation]Capability{read: Read, update: Update, create: Create, del: Delete, logical.PatchOperation: Patch}
	f.Fuzz(func(t *testing.T, src, path string) {
		p, err := Parse("p", src)
		if err != nil {
			p = nil
		}
		a := NewACL(p, DefaultPolicy())
		caps := a.Capabilities(path)
		denied := slices.Equal(caps, []string{"deny"})
		for c := range capBits {
			if got := a.Allowed(c, path); got != (!denied && slices.Contains(caps, string(c))) {
				t.Fatalf("Allowed(%s, %q) = %v but Capabilities = %v", c, path, got, caps)
			}
		}
		clean := CleanPath(path)
		if !strings.HasSuffix(clean, "/") {
			for op, c := range ops {
				ok, sudo := a.AllowedOperation(op, path)
				if ok != a.Allowed(c, path) || sudo != a.Allowed(Sudo, path) {
					t.Fatalf("AllowedOperation(%s, %q) = %v, %v but Capabilities = %v", op, path, ok, sudo, caps)
				}
			}
		}
		if clean != "" && !strings.HasSuffix(clean, "/") {
			clean += "/"
		}
		if ok, _ := a.AllowedOperation(list, path); ok != a.Allowed(List, clean) {
			t.Fatalf("AllowedOperation(list, %q) = %v but Capabilities(%q) = %v", path, ok, clean, a.Capabilities(clean))
		}
	})
}

func TestDecideNamesTheDecidingRule(t *testing.T) {
	p, err := Parse("p", `
path "secret/data/*" { capabilities = ["read"] }
path "secret/data/team/+/db" { capabilities = ["read", "update"] }
path "secret/data/blocked" { capabilities = ["deny"] }
`)
	if err != nil {
		t.Fatal(err)
	}
	acl := NewACL(p)
	for path, want := range map[string]Decision{
		"secret/data/app":         {Rule: "secret/data/*", Capabilities: []string{"read"}, Matched: true},
		"secret/data/team/red/db": {Rule: "secret/data/team/+/db", Capabilities: []string{"read", "update"}, Matched: true},
		"secret/data/blocked":     {Rule: "secret/data/blocked", Capabilities: []string{"deny"}, Matched: true},
		"other/path":              {Capabilities: []string{"deny"}},
	} {
		got := acl.Decide(path)
		if got.Rule != want.Rule || got.Matched != want.Matched || strings.Join(got.Capabilities, ",") != strings.Join(want.Capabilities, ",") {
			t.Errorf("Decide(%q) = %+v, want %+v", path, got, want)
		}
	}
}
