package declarative

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func mount(name, typ string, opts map[string]string) Object {
	return Object{Key: Key{Mount, name}, Type: typ, Options: opts}
}

func policy(name, text string) Object { return Object{Key: Key{Policy, name}, Text: text} }

func state(objs ...Object) State {
	s := State{}
	for _, o := range objs {
		s[o.Key] = o
	}
	return s
}

func set(keys ...Key) Set {
	s := Set{}
	for _, k := range keys {
		s[k] = true
	}
	return s
}

// ops summarizes a plan as "op kind name" lines.
func ops(cs []Change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, string(c.Op)+" "+c.Key.String())
	}
	return out
}

func TestPlan(t *testing.T) {
	kv2 := mount("secret/", "kv", map[string]string{"version": "2"})
	kv1 := mount("secret/", "kv", map[string]string{"version": "1"})
	transit := mount("transit/", "transit", nil)
	pApp := policy("app", `path "a" { capabilities = ["read"] }`)
	pApp2 := policy("app", `path "b" { capabilities = ["read"] }`)
	serverKV := mount("secret/", "kv", map[string]string{"version": "2", "other": "default"})
	serverKV.Config = map[string]string{"default_lease_ttl": "0"}
	for name, tc := range map[string]struct {
		current, desired State
		owned            Set
		want             []string
	}{
		"empty everything is no change": {State{}, State{}, nil, nil},
		"new objects are created, policies first": {
			State{}, state(transit, pApp, kv2), nil,
			[]string{"create policy app", "create mount secret/", "create mount transit/"},
		},
		"server defaults are not differences": {
			state(serverKV), state(kv2), set(kv2.Key), nil,
		},
		"owned and changed is updated": {
			state(kv1, pApp), state(kv2, pApp2), set(kv1.Key, pApp.Key),
			[]string{"update policy app", "update mount secret/"},
		},
		"not owned and changed is a conflict, never an update": {
			state(kv1, pApp), state(kv2, pApp2), nil,
			[]string{"conflict policy app", "conflict mount secret/"},
		},
		"durations compare by value": {
			state(Object{Key: Key{Mount, "t/"}, Type: "transit", Config: map[string]string{"default_lease_ttl": "3600"}}),
			state(Object{Key: Key{Mount, "t/"}, Type: "transit", Config: map[string]string{"default_lease_ttl": "1h"}}),
			nil, nil,
		},
		"not owned and equal is left alone": {
			state(kv2), state(kv2), nil, nil,
		},
		"owned and gone from the files is deleted, mounts before policies": {
			state(kv2, pApp, transit), state(transit), set(kv2.Key, pApp.Key, transit.Key),
			[]string{"delete mount secret/", "delete policy app"},
		},
		"not owned and absent from the files is never deleted": {
			state(kv2, pApp), State{}, nil, nil,
		},
		"owned, gone from files and server is forgotten": {
			State{}, State{}, set(kv2.Key), []string{"forget mount secret/"},
		},
		"owned mount changing type is a conflict": {
			state(mount("x/", "kv", nil)), state(mount("x/", "transit", nil)), set(Key{Mount, "x/"}),
			[]string{"conflict mount x/"},
		},
		"creates and deletes together": {
			state(kv2), state(transit), set(kv2.Key),
			[]string{"create mount transit/", "delete mount secret/"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			got := ops(Plan(tc.current, tc.desired, tc.owned))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Plan = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPlanIsIdempotentAfterApply(t *testing.T) {
	desired := state(mount("secret/", "kv", map[string]string{"version": "2"}), policy("app", "path \"a\" {}"))
	target := &recordingTarget{state: State{}}
	owned, err := Apply(t.Context(), target, nil, Plan(target.state, desired, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(owned, set(Key{Mount, "secret/"}, Key{Policy, "app"})) {
		t.Errorf("owned after apply = %v", owned)
	}
	if again := Plan(target.state, desired, owned); len(again) != 0 {
		t.Errorf("second plan = %q, want no changes", ops(again))
	}
	// Removing the mount from the files deletes it, and only it.
	target.state[Key{Mount, "other/"}] = mount("other/", "kv", nil) // created by someone else
	delete(desired, Key{Mount, "secret/"})
	owned, err = Apply(t.Context(), target, owned, Plan(target.state, desired, owned))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := target.state[Key{Mount, "secret/"}]; ok {
		t.Error("owned mount removed from the files still exists")
	}
	if _, ok := target.state[Key{Mount, "other/"}]; !ok {
		t.Error("a mount the configuration did not create was deleted")
	}
	if owned[Key{Mount, "secret/"}] {
		t.Error("deleted mount is still owned")
	}
}

// recordingTarget is an in-memory Target for Apply's bookkeeping (the
// core's real Target is tested with the core).
type recordingTarget struct {
	state  State
	failOn Key
	calls  []string
}

var errTarget = errors.New("target failed")

func (r *recordingTarget) Create(_ context.Context, o Object) error {
	r.calls = append(r.calls, "create "+o.Key.String())
	if o.Key == r.failOn {
		return errTarget
	}
	r.state[o.Key] = o
	return nil
}

func (r *recordingTarget) Update(_ context.Context, _, o Object) error {
	r.calls = append(r.calls, "update "+o.Key.String())
	r.state[o.Key] = o
	return nil
}

func (r *recordingTarget) Delete(_ context.Context, o Object) error {
	r.calls = append(r.calls, "delete "+o.Key.String())
	delete(r.state, o.Key)
	return nil
}

func TestApplyStopsAtFirstErrorKeepingWhatWasCreated(t *testing.T) {
	desired := state(policy("a", "x"), mount("m/", "kv", nil), mount("n/", "kv", nil))
	target := &recordingTarget{state: State{}, failOn: Key{Mount, "m/"}}
	before := set(Key{Policy, "old"})
	owned, err := Apply(t.Context(), target, before, Plan(target.state, desired, nil))
	if !errors.Is(err, errTarget) || !strings.Contains(err.Error(), "create mount m/") {
		t.Fatalf("Apply = %v, want the target's error naming the object", err)
	}
	if !reflect.DeepEqual(owned, set(Key{Policy, "old"}, Key{Policy, "a"})) {
		t.Errorf("owned = %v, want old and a", owned)
	}
	if len(before) != 1 {
		t.Error("Apply modified the owned set it was given")
	}
	if want := []string{"create policy a", "create mount m/"}; !reflect.DeepEqual(target.calls, want) {
		t.Errorf("calls = %q, want %q", target.calls, want)
	}
}

const sample = `
mount "secret" {
  type        = "kv"
  description = "team secrets"
  options     = { version = 2 }
  config      = { default_lease_ttl = "1h" }
}
auth "/kubernetes/" { type = "kubernetes" }
policy "App" {
  text = <<EOT
path "secret/data/app/*" { capabilities = ["read"] }
EOT
}
audit "file" {
  type    = "file"
  options = { file_path = "/var/log/coffer/audit.log" }
}
`

func TestParse(t *testing.T) {
	got, err := Parse("sample.hcl", []byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	want := state(
		Object{Key: Key{Mount, "secret/"}, Type: "kv", Description: "team secrets",
			Options: map[string]string{"version": "2"}, Config: map[string]string{"default_lease_ttl": "1h"}},
		Object{Key: Key{Auth, "kubernetes/"}, Type: "kubernetes"},
		Object{Key: Key{Policy, "app"}, Text: "path \"secret/data/app/*\" { capabilities = [\"read\"] }\n"},
		Object{Key: Key{Audit, "file/"}, Type: "file", Options: map[string]string{"file_path": "/var/log/coffer/audit.log"}},
	)
	if len(got) != len(want) {
		t.Fatalf("parsed %d objects, want %d: %+v", len(got), len(want), got)
	}
	for k, w := range want {
		if g := got[k]; !g.Equal(w) {
			t.Errorf("%s = %+v, want %+v", k, g, w)
		}
	}
}

func TestParseRejectsBadInput(t *testing.T) {
	for name, src := range map[string]string{
		"syntax error":              `mount "x" {`,
		"unknown block":             `secret "x" { type = "kv" }`,
		"unknown attribute":         `mount "x" { type = "kv"  colour = "red" }`,
		"mount without type":        `mount "x" { description = "d" }`,
		"mount without label":       `mount { type = "kv" }`,
		"reserved sys path":         `mount "sys" { type = "kv" }`,
		"reserved cubbyhole path":   `mount "cubbyhole/x" { type = "kv" }`,
		"dot-dot segment":           `mount "a/../b" { type = "kv" }`,
		"empty path":                `mount "/" { type = "kv" }`,
		"auth token is built in":    `auth "token" { type = "token" }`,
		"root policy":               `policy "root" { text = "path \"*\" {}" }`,
		"policy name with a slash":  `policy "a/b" { text = "x" }`,
		"empty policy":              `policy "a" { text = "  " }`,
		"duplicate mount":           "mount \"a\" { type = \"kv\" }\nmount \"a/\" { type = \"kv\" }",
		"options is not a map":      `mount "a" { type = "kv"  options = "v2" }`,
		"audit without type":        `audit "f" { options = {} }`,
		"policy text is not string": `policy "a" { text = ["x"] }`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse("bad.hcl", []byte(src)); !errors.Is(err, ErrInvalid) {
				t.Errorf("Parse = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeFile("10-mounts.hcl", `mount "secret" { type = "kv" }`)
	writeFile("20-policies.hcl", `policy "app" { text = "path \"a\" {}" }`)
	writeFile("README.md", "not hcl")
	s, err := Load(dir)
	if err != nil || len(s) != 2 {
		t.Fatalf("Load = %v, %v; want 2 objects", s, err)
	}
	writeFile("30-dup.hcl", `mount "secret/" { type = "kv" }`)
	if _, err := Load(dir); !errors.Is(err, ErrInvalid) {
		t.Errorf("Load with a duplicate across files = %v, want ErrInvalid", err)
	}
	if _, err := Load(filepath.Join(dir, "missing")); err == nil {
		t.Error("Load of a missing path succeeded")
	}
}

func TestRender(t *testing.T) {
	old := mount("secret/", "kv", map[string]string{"version": "1"})
	cs := []Change{
		{Op: Create, Key: Key{Mount, "transit/"}, New: &Object{Type: "transit"}},
		{Op: Update, Key: old.Key, Old: &old, New: &Object{Type: "kv", Options: map[string]string{"version": "2"}}},
		{Op: Delete, Key: Key{Policy, "gone"}},
		{Op: Conflict, Key: Key{Policy, "default"}, Reason: "not ours"},
	}
	want := "+ create mount transit/ (transit)\n~ update mount secret/ (options.version)\n- delete policy gone\n! conflict policy default: not ours\n"
	if got := Render(cs); got != want {
		t.Errorf("Render =\n%s\nwant\n%s", got, want)
	}
	if got := Render(nil); !strings.HasPrefix(got, "No changes") {
		t.Errorf("Render(nil) = %q", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(sample)
	f.Add(`mount "a" { type = "kv" }`)
	f.Fuzz(func(t *testing.T, src string) {
		s, err := Parse("fuzz.hcl", []byte(src))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		// Invariant: a parsed state planned against itself changes nothing,
		// and every path is normalized.
		if cs := Plan(s, s, nil); len(cs) != 0 {
			t.Fatalf("Plan(s, s) = %q", ops(cs))
		}
		for k := range s {
			if k.Kind != Policy && (!strings.HasSuffix(k.Name, "/") || strings.HasPrefix(k.Name, "/")) {
				t.Fatalf("path %q is not normalized", k.Name)
			}
		}
	})
}
