package kv

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/coffer-dev/coffer/internal/logical"
)

func TestV1(t *testing.T) {
	b := NewV1(newTestStorage(t))
	must(t, b, C, "app/db", `{"user":"admin","port":5432,"nested":{"a":[1,"x"]}}`)
	must(t, b, C, "app/api", `{"token":"t"}`)
	must(t, b, C, "top", `{"k":"v"}`)

	raw, _ := json.Marshal(must(t, b, R, "app/db", "").Data)
	if want := `{"nested":{"a":[1,"x"]},"port":5432,"user":"admin"}`; string(raw) != want {
		t.Errorf("read = %s, want %s", raw, want)
	}
	if resp := must(t, b, R, "app/none", ""); resp != nil {
		t.Errorf("read of a missing path = %+v, want nil", resp)
	}
	for path, want := range map[string][]string{"": {"app/", "top"}, "app": {"api", "db"}, "app/": {"api", "db"}} {
		if got := wire(t, must(t, b, L, path, ""))["keys"]; !reflect.DeepEqual(got, toAny(want)) {
			t.Errorf("LIST %q = %v, want %v", path, got, want)
		}
	}
	_, err := call(t, b, L, "nothing/", "")
	wantCode(t, err, logical.NotFound)

	// A write replaces the whole object.
	must(t, b, U, "app/db", `{"user":"root"}`)
	if got := wire(t, must(t, b, R, "app/db", "")); !reflect.DeepEqual(got, map[string]any{"user": "root"}) {
		t.Errorf("after overwrite = %v", got)
	}
	must(t, b, D, "app/db", "")
	if resp := must(t, b, R, "app/db", ""); resp != nil {
		t.Errorf("read after delete = %+v, want nil", resp)
	}

	for name, tc := range map[string]struct{ path, body string }{
		"a string body":         {"k", `"secret"`},
		"an empty object":       {"k", `{}`},
		"no body":               {"k", ``},
		"malformed JSON":        {"k", `{"a":`},
		"an empty key":          {"", `{"a":"b"}`},
		"a key ending in slash": {"dir/", `{"a":"b"}`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := call(t, b, U, tc.path, tc.body)
			wantCode(t, err, logical.Invalid)
		})
	}
	_, err = call(t, b, P, "top", `{"a":"b"}`)
	wantCode(t, err, logical.Unsupported)
}

func TestV1Existence(t *testing.T) {
	b := NewV1(newTestStorage(t))
	check := func(want bool) {
		t.Helper()
		ok, ex, err := b.Exists(context.Background(), &logical.Request{Operation: U, Path: "k"})
		if err != nil || !ok || ex != want {
			t.Errorf("Exists = %v, %v, %v; want true, %v, nil", ok, ex, err, want)
		}
	}
	check(false)
	must(t, b, C, "k", `{"a":"b"}`)
	check(true)
}
