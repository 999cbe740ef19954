package httpapi

import (
	"regexp"
	"testing"
)

func TestHasDotSegment(t *testing.T) {
	for p, want := range map[string]bool{
		"":                          false,
		"/v1/secret/data/a":         false,
		"/v1/secret/data/a.b":       false,
		"/v1/secret/data/..a":       false,
		"/v1/secret/data/...":       false,
		"/v1/secret/../sys/seal":    true,
		"/v1/secret/./data":         true,
		"/v1/secret/data/..":        true,
		"..":                        true,
		".":                         true,
		"/v1/secret/%2e%2e/x":       true,
		"/v1/secret/%2E%2e/x":       true,
		"/v1/secret/%2e/x":          true,
		"/v1/secret/%2e%2e%2e/x":    false,
		"/v1/secret//data":          false, // empty segments are refused elsewhere
		"/v1/secret/data/a/":        false,
		"/v1/secret/data/a/..":      true,
		"/v1/secret/data/a/../../b": true,
	} {
		if got := hasDotSegment(p); got != want {
			t.Errorf("hasDotSegment(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestNewRequestIDIsUUIDv4(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := newRequestID()
		if !re.MatchString(id) {
			t.Fatalf("request ID %q is not a version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("request ID %q repeated", id)
		}
		seen[id] = true
	}
}
