package operator

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestParseReload(t *testing.T) {
	for in, want := range map[string][]string{
		"":            nil,
		"a":           {"a"},
		" b , a,,a ":  {"a", "b"},
		",":           nil,
		"db,api-keys": {"api-keys", "db"},
	} {
		if got := ParseReload(in); !slices.Equal(got, want) {
			t.Errorf("ParseReload(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReloadHash(t *testing.T) {
	mk := func(kv ...string) *corev1.Secret {
		s := &corev1.Secret{Data: map[string][]byte{}}
		for i := 0; i < len(kv); i += 2 {
			s.Data[kv[i]] = []byte(kv[i+1])
		}
		return s
	}
	base := ReloadHash([]string{"a", "b"}, map[string]*corev1.Secret{"a": mk("k", "1"), "b": mk("k", "2")})
	if again := ReloadHash([]string{"a", "b"}, map[string]*corev1.Secret{"a": mk("k", "1"), "b": mk("k", "2")}); again != base {
		t.Error("hash is not deterministic")
	}
	for name, secrets := range map[string]map[string]*corev1.Secret{
		"a value changes":                {"a": mk("k", "9"), "b": mk("k", "2")},
		"a key is added":                 {"a": mk("k", "1", "x", ""), "b": mk("k", "2")},
		"a secret is missing":            {"a": mk("k", "1")},
		"values move between keys":       {"a": mk("k", "2"), "b": mk("k", "1")},
		"concatenation is not ambiguous": {"a": mk("k", "1k"), "b": mk("", "2")},
	} {
		if ReloadHash([]string{"a", "b"}, secrets) == base {
			t.Errorf("%s: hash did not change", name)
		}
	}
	if ReloadHash([]string{"a"}, map[string]*corev1.Secret{}) == ReloadHash([]string{"a"}, map[string]*corev1.Secret{"a": mk()}) {
		t.Error("a missing secret hashes like an empty one")
	}
}

func FuzzParseReload(f *testing.F) {
	f.Add("a, b,,c")
	f.Fuzz(func(t *testing.T, s string) {
		names := ParseReload(s)
		if !slices.IsSorted(names) {
			t.Fatalf("not sorted: %q", names)
		}
		for _, n := range names {
			if n == "" || slices.Contains([]byte(n), ',') {
				t.Fatalf("bad name %q", n)
			}
		}
		if again := ParseReload(joinNames(names)); !slices.Equal(again, names) {
			t.Fatalf("round trip changed %q to %q", names, again)
		}
	})
}

func joinNames(n []string) string {
	s := ""
	for i, x := range n {
		if i > 0 {
			s += ","
		}
		s += x
	}
	return s
}
