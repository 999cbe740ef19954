package kms

import (
	"errors"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestParseKeyID(t *testing.T) {
	for name, tc := range map[string]struct {
		in      string
		id      string
		version int
		err     error
	}{
		"id and version":             {"abc:v3", "abc", 3, nil},
		"id containing a colon":      {"a:b:v12", "a:b", 12, nil},
		"no version":                 {"abc", "", 0, ErrUnknownKeyID},
		"empty":                      {"", "", 0, ErrUnknownKeyID},
		"no id":                      {":v1", "", 0, ErrUnknownKeyID},
		"version zero":               {"abc:v0", "", 0, ErrUnknownKeyID},
		"negative version":           {"abc:v-1", "", 0, ErrUnknownKeyID},
		"leading zero":               {"abc:v01", "", 0, ErrUnknownKeyID},
		"version with a sign":        {"abc:v+1", "", 0, ErrUnknownKeyID},
		"trailing junk":              {"abc:v1x", "", 0, ErrUnknownKeyID},
		"longer than the API allows": {string(make([]byte, 2000)) + ":v1", "", 0, ErrUnknownKeyID},
		"version overflowing an int": {"abc:v99999999999999999999", "", 0, ErrUnknownKeyID},
	} {
		t.Run(name, func(t *testing.T) {
			id, v, err := ParseKeyID(tc.in)
			if !errors.Is(err, tc.err) || id != tc.id || v != tc.version {
				t.Errorf("ParseKeyID(%.20q) = %q, %d, %v; want %q, %d, %v", tc.in, id, v, err, tc.id, tc.version, tc.err)
			}
		})
	}
}

func TestDeriveKeyID(t *testing.T) {
	a := DeriveKeyID("transit/keys/k8s-etcd", 1700000000)
	if len(a) != 32 {
		t.Errorf("len = %d, want 32 hex digits", len(a))
	}
	if want := DeriveKeyID("transit/keys/k8s-etcd", 1700000000); a != want {
		t.Fatal("not deterministic")
	}
	for name, b := range map[string]string{
		"another second": DeriveKeyID("transit/keys/k8s-etcd", 1700000001),
		"another path":   DeriveKeyID("transit/keys/k8s-etcd2", 1700000000),
		"another mount":  DeriveKeyID("t/keys/k8s-etcd", 1700000000),
		"ambiguous join": DeriveKeyID("transit/keys/k8s-etcd1", 700000000),
	} {
		if a == b {
			t.Errorf("%s gives the same id", name)
		}
	}
}

func TestDeriveKeyIDFrozenVector(t *testing.T) {
	// Computed independently: sha256("coffer-kms-v2-key-id\x00" + path +
	// "\x00" + "1700000000")[:16] in hex. A change would give every
	// cluster a new key_id and make the plugin refuse existing data.
	const want = "c8026dff1eef02441ba0d601b02d7281"
	if got := DeriveKeyID("transit/keys/k8s-etcd", 1700000000); got != want {
		t.Errorf("DeriveKeyID = %s, want %s", got, want)
	}
}

func TestAnnotationKeyIsAnFQDN(t *testing.T) {
	// The API server's validateAnnotations rejects any other key.
	if errs := validation.IsFullyQualifiedDomainName(field.NewPath("annotations"), FormatAnnotation); len(errs) > 0 {
		t.Errorf("%s: %v", FormatAnnotation, errs)
	}
}

func TestSplitKeyPath(t *testing.T) {
	for in, want := range map[string][2]string{
		"transit/keys/k8s-etcd":   {"transit", "k8s-etcd"},
		"/transit/keys/k8s-etcd/": {"transit", "k8s-etcd"},
		"team/transit/keys/k":     {"team/transit", "k"},
		"transit/keys/":           {},
		"keys/k":                  {},
		"transit/k8s-etcd":        {},
		"transit/keys/a/b":        {},
		"":                        {},
	} {
		m, n, err := SplitKeyPath(in)
		if (err != nil) != (want[0] == "") || m != want[0] || n != want[1] {
			t.Errorf("SplitKeyPath(%q) = %q, %q, %v; want %q", in, m, n, err, want)
		}
	}
}

func TestCiphertextVersion(t *testing.T) {
	for in, want := range map[string]int{
		"vault:v1:abc": 1, "vault:v23:x": 23, "vault:v0:x": 0, "vault:v1": 0, "vault:x1:a": 0, "v1:abc": 0, "vault:v01:a": 0,
	} {
		if got, ok := ciphertextVersion(in); got != want || ok != (want > 0) {
			t.Errorf("ciphertextVersion(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
}

func FuzzParseKeyID(f *testing.F) {
	f.Add("abc:v1")
	f.Add("a:b:v12")
	f.Add(":v")
	f.Fuzz(func(t *testing.T, s string) {
		id, v, err := ParseKeyID(s)
		if err != nil {
			if !errors.Is(err, ErrUnknownKeyID) {
				t.Fatalf("error %v does not wrap ErrUnknownKeyID", err)
			}
			return
		}
		if FormatKeyID(id, v) != s {
			t.Fatalf("round trip: %q → %q, %d → %q", s, id, v, FormatKeyID(id, v))
		}
	})
}

func TestSeedCache(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newSeedCache(2, time.Minute, func() time.Time { return now })
	seed := []byte("seed-a")
	c.put("k:v1", []byte("ct-a"), seed)
	seed[0] = 'X' // the cache keeps its own copy
	if got, ok := c.get("k:v1", []byte("ct-a")); !ok || string(got) != "seed-a" {
		t.Fatalf("get = %q, %v", got, ok)
	}
	if _, ok := c.get("k:v2", []byte("ct-a")); ok {
		t.Error("hit under another key_id")
	}
	c.put("k:v1", []byte("ct-b"), []byte("seed-b"))
	c.get("k:v1", []byte("ct-a")) // a is now the most recent
	c.put("k:v1", []byte("ct-c"), []byte("seed-c"))
	if _, ok := c.get("k:v1", []byte("ct-b")); ok {
		t.Error("the least recently used entry was not evicted")
	}
	if c.len() != 2 {
		t.Errorf("len = %d, want 2", c.len())
	}
	now = now.Add(time.Minute)
	if _, ok := c.get("k:v1", []byte("ct-a")); ok {
		t.Error("hit after the TTL")
	}
	if newSeedCache(-1, time.Minute, time.Now) != nil || newSeedCache(10, -1, time.Now) != nil {
		t.Error("a negative size or TTL must disable the cache")
	}
	var off *seedCache
	off.put("k", nil, []byte("x"))
	if _, ok := off.get("k", nil); ok {
		t.Error("a disabled cache answered")
	}
}
