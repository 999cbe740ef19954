package kv

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/barrier/barriertest"
	"github.com/coffer-dev/coffer/internal/logical"
)

const (
	R = logical.ReadOperation
	C = logical.CreateOperation
	U = logical.UpdateOperation
	P = logical.PatchOperation
	D = logical.DeleteOperation
	L = logical.ListOperation
)

// TestGoldenLifecycle replays the calls captured from a Vault-API server
// in /work/shared/golden, in the same order, and compares every response.
func TestGoldenLifecycle(t *testing.T) {
	f := newV2(t)
	b := f.b

	matchGolden(t, "kv2-write-v1", must(t, b, C, "data/myapp", `{"data":{"username":"admin","password":"s3cr3t"}}`))
	matchGolden(t, "kv2-write-v2-cas", must(t, b, U, "data/myapp", `{"options":{"cas":1},"data":{"username":"admin","password":"n3w"}}`))

	_, err := call(t, b, U, "data/myapp", `{"options":{"cas":1},"data":{"x":"y"}}`)
	wantCode(t, err, logical.Conflict)
	if got, want := err.Error(), "check-and-set parameter did not match the current version"; got != want {
		t.Errorf("cas mismatch message = %q, want %q", got, want)
	}

	matchGolden(t, "kv2-read", must(t, b, R, "data/myapp", ""))
	matchGolden(t, "kv2-read-version1", must(t, b, R, "data/myapp?version=1", ""))
	matchGolden(t, "kv2-metadata-read", must(t, b, R, "metadata/myapp", ""))

	if resp := must(t, b, U, "metadata/myapp", `{"max_versions":5,"custom_metadata":{"owner":"team-a"}}`); resp != nil {
		t.Errorf("metadata write returned %+v, want nil (204)", resp)
	}
	after := must(t, b, R, "metadata/myapp", "")
	matchGolden(t, "kv2-metadata-read-after", after)
	if m := wire(t, after); m["updated_time"] == m["created_time"] {
		t.Error("metadata write did not move updated_time")
	}

	if resp := must(t, b, D, "data/myapp", ""); resp != nil {
		t.Errorf("delete returned %+v, want nil (204)", resp)
	}
	resp := must(t, b, R, "data/myapp", "")
	if resp == nil || resp.StatusCode != 404 {
		t.Fatalf("read after delete = %+v, want a 404 with data", resp)
	}
	matchGolden(t, "kv2-read-after-delete", resp)

	must(t, b, U, "undelete/myapp", `{"versions":[2]}`)
	matchGolden(t, "kv2-read", withoutCustom(must(t, b, R, "data/myapp", "")))

	must(t, b, U, "destroy/myapp", `{"versions":[1]}`)
	resp = must(t, b, R, "data/myapp?version=1", "")
	if resp == nil || resp.StatusCode != 404 {
		t.Fatalf("read of destroyed version = %+v, want a 404 with data", resp)
	}
	matchGolden(t, "kv2-read-destroyed-v1", resp)

	matchGolden(t, "kv2-metadata-list", must(t, b, L, "metadata/", ""))
	matchGolden(t, "kv2-metadata-list-get", must(t, b, L, "metadata", ""))
	matchGolden(t, "kv2-config-read", must(t, b, R, "config", ""))

	if resp := must(t, b, R, "data/does-not-exist", ""); resp != nil {
		t.Errorf("read of a missing key = %+v, want nil", resp)
	}
}

// withoutCustom drops the custom metadata the golden kv2-read predates.
func withoutCustom(resp *logical.Response) *logical.Response {
	resp.Data.(map[string]any)["metadata"].(map[string]any)["custom_metadata"] = nil
	return resp
}

func TestTimesAreRFC3339NanoUTC(t *testing.T) {
	f := newV2(t)
	must(t, f.b, U, "data/a", `{"data":{"k":"v"}}`)
	md := wire(t, must(t, f.b, R, "metadata/a", ""))
	for _, field := range []string{"created_time", "updated_time"} {
		s, _ := md[field].(string)
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil || tm.Location() != time.UTC || !strings.HasSuffix(s, "Z") {
			t.Errorf("%s = %q, want RFC 3339 in UTC", field, s)
		}
	}
}

func TestCheckAndSet(t *testing.T) {
	f := newV2(t)
	b := f.b
	// cas 0 writes only a key that does not exist yet.
	must(t, b, U, "data/k", `{"data":{"a":"1"},"options":{"cas":0}}`)
	_, err := call(t, b, U, "data/k", `{"data":{"a":"2"},"options":{"cas":0}}`)
	wantCode(t, err, logical.Conflict)
	// cas given as a string, as the CLI sends it.
	must(t, b, U, "data/k", `{"data":{"a":"2"},"options":{"cas":"1"}}`)

	t.Run("cas_required on the mount refuses writes without cas", func(t *testing.T) {
		must(t, b, U, "config", `{"cas_required":true}`)
		defer must(t, b, U, "config", `{"cas_required":false}`)
		_, err := call(t, b, U, "data/k", `{"data":{"a":"3"}}`)
		wantCode(t, err, logical.Invalid)
		if !strings.Contains(err.Error(), "check-and-set parameter required") {
			t.Errorf("message = %q", err.Error())
		}
		must(t, b, U, "data/k", `{"data":{"a":"3"},"options":{"cas":2}}`)
	})
	t.Run("cas_required on the key refuses writes and patches without cas", func(t *testing.T) {
		must(t, b, U, "metadata/k", `{"cas_required":"true"}`)
		_, err := call(t, b, U, "data/k", `{"data":{"a":"4"}}`)
		wantCode(t, err, logical.Invalid)
		_, err = call(t, b, P, "data/k", `{"data":{"a":"4"}}`)
		wantCode(t, err, logical.Invalid)
		must(t, b, P, "data/k", `{"data":{"a":"4"},"options":{"cas":3}}`)
		if _, err := call(t, b, U, "data/other", `{"data":{"a":"1"}}`); err != nil {
			t.Errorf("another key was affected: %v", err)
		}
	})
}

func TestMaxVersionsPrunes(t *testing.T) {
	f := newV2(t)
	b := f.b
	must(t, b, U, "config", `{"max_versions":3}`)
	for i := 1; i <= 5; i++ {
		must(t, b, U, "data/k", fmt.Sprintf(`{"data":{"i":%d}}`, i))
	}
	md := wire(t, must(t, b, R, "metadata/k", ""))
	if got, want := keysOf(md["versions"]), []string{"3", "4", "5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("versions = %v, want %v", got, want)
	}
	if md["oldest_version"] != float64(3) || md["current_version"] != float64(5) {
		t.Errorf("oldest, current = %v, %v; want 3, 5", md["oldest_version"], md["current_version"])
	}
	if resp := must(t, b, R, "data/k?version=2", ""); resp != nil {
		t.Errorf("read of a pruned version = %+v, want nil", resp)
	}
	for _, n := range []int{1, 2} {
		if _, err := f.s.Get(context.Background(), fmt.Sprintf("versions/k/%d", n)); err == nil {
			t.Errorf("data of pruned version %d is still stored", n)
		}
	}
	// The key's own max_versions wins over the mount's.
	must(t, b, U, "metadata/k", `{"max_versions":1}`)
	must(t, b, U, "data/k", `{"data":{"i":6}}`)
	md = wire(t, must(t, b, R, "metadata/k", ""))
	if got, want := keysOf(md["versions"]), []string{"6"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after max_versions 1: versions = %v, want %v", got, want)
	}
	// Without any setting a key keeps 10 versions.
	for i := 1; i <= 12; i++ {
		must(t, b, U, "config", `{"max_versions":0}`)
		must(t, b, U, "data/ten", `{"data":{"x":"y"}}`)
	}
	if got := len(wire(t, must(t, b, R, "metadata/ten", ""))["versions"].(map[string]any)); got != 10 {
		t.Errorf("default keeps %d versions, want 10", got)
	}
}

func keysOf(v any) []string {
	m, _ := v.(map[string]any)
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sortStrings(ks)
	return ks
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestDeleteUndeleteDestroy(t *testing.T) {
	f := newV2(t)
	b := f.b
	for i := 1; i <= 3; i++ {
		must(t, b, U, "data/k", fmt.Sprintf(`{"data":{"i":%d}}`, i))
	}
	status := func(v int) int {
		t.Helper()
		resp := must(t, b, R, fmt.Sprintf("data/k?version=%d", v), "")
		if resp == nil {
			return 0
		}
		if resp.StatusCode == 0 {
			return 200
		}
		return resp.StatusCode
	}
	must(t, b, U, "delete/k", `{"versions":"1,2"}`)
	if got := []int{status(1), status(2), status(3)}; !reflect.DeepEqual(got, []int{404, 404, 200}) {
		t.Errorf("after delete 1,2: statuses %v", got)
	}
	must(t, b, U, "undelete/k", `{"versions":["1"]}`)
	must(t, b, U, "destroy/k", `{"versions":[2,3,99]}`)
	if got := []int{status(1), status(2), status(3)}; !reflect.DeepEqual(got, []int{200, 404, 404}) {
		t.Errorf("after undelete 1, destroy 2,3: statuses %v", got)
	}
	// Undelete cannot bring back destroyed data.
	must(t, b, U, "undelete/k", `{"versions":[3]}`)
	if got := status(3); got != 404 {
		t.Errorf("destroyed version after undelete: status %d, want 404", got)
	}
	md := wire(t, must(t, b, R, "metadata/k", ""))
	if v3 := md["versions"].(map[string]any)["3"].(map[string]any); v3["destroyed"] != true {
		t.Errorf("version 3 metadata = %v, want destroyed", v3)
	}
	if _, err := f.s.Get(context.Background(), "versions/k/3"); err == nil {
		t.Error("destroyed data is still stored")
	}
	t.Run("no versions is invalid", func(t *testing.T) {
		for _, body := range []string{`{}`, `{"versions":[]}`, `{"versions":""}`} {
			_, err := call(t, b, U, "delete/k", body)
			wantCode(t, err, logical.Invalid)
		}
		_, err := call(t, b, U, "destroy/k", `{"versions":["x"]}`)
		wantCode(t, err, logical.Invalid)
		_, err = call(t, b, U, "undelete/k", `{"versions":[-1]}`)
		wantCode(t, err, logical.Invalid)
	})
	t.Run("a missing key is no error", func(t *testing.T) {
		must(t, b, U, "delete/nope", `{"versions":[1]}`)
		must(t, b, D, "data/nope", "")
		must(t, b, D, "metadata/nope", "")
	})
}

func TestDeleteVersionAfter(t *testing.T) {
	f := newV2(t)
	b := f.b
	must(t, b, U, "config", `{"delete_version_after":"1h"}`)
	if got := wire(t, must(t, b, R, "config", ""))["delete_version_after"]; got != "1h0m0s" {
		t.Errorf("config delete_version_after = %v, want 1h0m0s", got)
	}
	w := wire(t, must(t, b, U, "data/k", `{"data":{"a":"b"}}`))
	if w["deletion_time"] == "" {
		t.Fatal("write response has no deletion_time")
	}
	resp := must(t, b, R, "data/k", "")
	if resp.StatusCode != 0 || wire(t, resp)["data"] == nil {
		t.Fatalf("read before deletion time: %+v", resp)
	}
	f.clk.Advance(61 * time.Minute)
	if resp := must(t, b, R, "data/k", ""); resp.StatusCode != 404 {
		t.Errorf("read after deletion time: status %d, want 404", resp.StatusCode)
	}

	// A key's shorter setting wins; a longer one is capped by the mount's.
	for name, tc := range map[string]struct {
		key  string
		want time.Duration
	}{
		"a shorter key setting applies":   {"10m", 10 * time.Minute},
		"a longer key setting is capped":  {"3h", time.Hour},
		"an unset key uses the mount's":   {"0s", time.Hour},
		"seconds as a number are allowed": {"120", 2 * time.Minute},
	} {
		t.Run(name, func(t *testing.T) {
			key := "data/" + strings.ReplaceAll(name, " ", "-")
			must(t, b, U, "metadata/"+strings.TrimPrefix(key, "data/"), fmt.Sprintf(`{"delete_version_after":%q}`, tc.key))
			w := wire(t, must(t, b, U, key, `{"data":{"a":"b"}}`))
			created, _ := time.Parse(time.RFC3339Nano, w["created_time"].(string))
			deletion, _ := time.Parse(time.RFC3339Nano, w["deletion_time"].(string))
			if got := deletion.Sub(created); got != tc.want {
				t.Errorf("deletion - creation = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPatch(t *testing.T) {
	for name, tc := range map[string]struct {
		base, patch, want string
	}{
		"a new key is added":           {`{"a":"1"}`, `{"b":"2"}`, `{"a":"1","b":"2"}`},
		"a value is replaced":          {`{"a":"1","b":"2"}`, `{"a":"x"}`, `{"a":"x","b":"2"}`},
		"null removes a key":           {`{"a":"1","b":"2"}`, `{"a":null}`, `{"b":"2"}`},
		"nested objects merge":         {`{"o":{"x":1,"y":2}}`, `{"o":{"y":null,"z":3}}`, `{"o":{"x":1,"z":3}}`},
		"an array is replaced":         {`{"l":[1,2]}`, `{"l":[3]}`, `{"l":[3]}`},
		"an object replaces a scalar":  {`{"a":"1"}`, `{"a":{"b":null,"c":1}}`, `{"a":{"c":1}}`},
		"numbers keep their precision": {`{"n":12345678901234567890}`, `{"m":0.1}`, `{"m":0.1,"n":12345678901234567890}`},
	} {
		t.Run(name, func(t *testing.T) {
			f := newV2(t)
			must(t, f.b, U, "data/k", `{"data":`+tc.base+`}`)
			w := wire(t, must(t, f.b, P, "data/k", `{"data":`+tc.patch+`}`))
			if w["version"] != float64(2) {
				t.Errorf("patch made version %v, want 2", w["version"])
			}
			raw, _ := json.Marshal(must(t, f.b, R, "data/k", "").Data.(map[string]any)["data"])
			if string(raw) != tc.want {
				t.Errorf("after patch: %s, want %s", raw, tc.want)
			}
		})
	}
	t.Run("a missing key is not found", func(t *testing.T) {
		f := newV2(t)
		_, err := call(t, f.b, P, "data/none", `{"data":{"a":"b"}}`)
		wantCode(t, err, logical.NotFound)
	})
	t.Run("a deleted latest version is a 404 with metadata", func(t *testing.T) {
		f := newV2(t)
		must(t, f.b, U, "data/k", `{"data":{"a":"b"}}`)
		must(t, f.b, D, "data/k", "")
		resp := must(t, f.b, P, "data/k", `{"data":{"a":"c"}}`)
		if resp == nil || resp.StatusCode != 404 {
			t.Fatalf("patch of deleted = %+v, want 404", resp)
		}
	})
	t.Run("cas mismatch is refused", func(t *testing.T) {
		f := newV2(t)
		must(t, f.b, U, "data/k", `{"data":{"a":"b"}}`)
		_, err := call(t, f.b, P, "data/k", `{"data":{"a":"c"},"options":{"cas":5}}`)
		wantCode(t, err, logical.Conflict)
	})
}

func TestBadInput(t *testing.T) {
	const secret = "hunter2-secret-value"
	f := newV2(t)
	must(t, f.b, U, "data/k", `{"data":{"a":"b"}}`)
	for name, tc := range map[string]struct {
		op         logical.Operation
		path, body string
	}{
		"data as a string":              {U, "data/k", `{"data":"` + secret + `"}`},
		"data as a list":                {U, "data/k", `{"data":["` + secret + `"]}`},
		"no data":                       {U, "data/k", `{"options":{}}`},
		"null data":                     {U, "data/k", `{"data":null}`},
		"malformed JSON":                {U, "data/k", `{"data":{"a":"` + secret + `"`},
		"trailing garbage":              {U, "data/k", `{"data":{"a":"b"}} ` + secret},
		"cas not a number":              {U, "data/k", `{"data":{"a":"b"},"options":{"cas":"` + secret + `"}}`},
		"options not an object":         {U, "data/k", `{"data":{"a":"b"},"options":"` + secret + `"}`},
		"empty key":                     {U, "data/", `{"data":{"a":"b"}}`},
		"key ending in a slash":         {U, "data/dir/", `{"data":{"a":"b"}}`},
		"patch data as a string":        {P, "data/k", `{"data":"` + secret + `"}`},
		"version not a number":          {R, "data/k?version=" + secret, ""},
		"negative version":              {R, "data/k?version=-1", ""},
		"negative depth":                {R, "subkeys/k?depth=-1", ""},
		"negative max_versions":         {U, "config", `{"max_versions":-1}`},
		"bad duration":                  {U, "config", `{"delete_version_after":"` + secret + `"}`},
		"negative duration":             {U, "metadata/k", `{"delete_version_after":"-1h"}`},
		"custom_metadata not strings":   {U, "metadata/k", `{"custom_metadata":{"a":1}}`},
		"custom_metadata value too big": {U, "metadata/k", `{"custom_metadata":{"a":"` + strings.Repeat("x", 513) + `"}}`},
		"metadata patch not strings":    {P, "metadata/k", `{"custom_metadata":{"a":true}}`},
		"metadata_cas_required":         {U, "config", `{"metadata_cas_required":true}`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := call(t, f.b, tc.op, tc.path, tc.body)
			wantCode(t, err, logical.Invalid)
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "hunter") {
				t.Errorf("error %q quotes the input", err)
			}
		})
	}
	// Nothing above changed the key.
	if md := wire(t, must(t, f.b, R, "metadata/k", "")); md["current_version"] != float64(1) {
		t.Errorf("current_version = %v after bad writes, want 1", md["current_version"])
	}
}

func TestUnsupported(t *testing.T) {
	f := newV2(t)
	resp := must(t, f.b, R, "myapp", "")
	if resp == nil || resp.StatusCode != 404 || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "vault kv get") {
		t.Errorf("read outside the v2 API = %+v, want a 404 with Vault's warning", resp)
	}
	for _, tc := range []struct {
		op   logical.Operation
		path string
	}{{L, "data/"}, {P, "config"}, {R, "delete/k"}, {D, "subkeys/k"}} {
		_, err := call(t, f.b, tc.op, tc.path, "")
		wantCode(t, err, logical.Unsupported)
	}
}

func TestConcurrentWritesKeepEveryVersion(t *testing.T) {
	f := newV2(t)
	must(t, f.b, U, "config", `{"max_versions":100}`)
	const n = 32
	versions := make(chan uint64, n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			resp, err := call(t, f.b, U, "data/shared", fmt.Sprintf(`{"data":{"writer":%d}}`, i))
			if err != nil {
				errs <- err
				return
			}
			versions <- resp.Data.(map[string]any)["version"].(uint64)
		}()
	}
	seen := map[uint64]bool{}
	for range n {
		select {
		case err := <-errs:
			t.Fatal(err)
		case v := <-versions:
			if seen[v] {
				t.Errorf("version %d returned twice", v)
			}
			seen[v] = true
		}
	}
	writers := map[string]bool{}
	for v := uint64(1); v <= n; v++ {
		if !seen[v] {
			t.Errorf("version %d missing", v)
		}
		d := wire(t, must(t, f.b, R, fmt.Sprintf("data/shared?version=%d", v), ""))["data"].(map[string]any)
		writers[fmt.Sprint(d["writer"])] = true
	}
	if len(writers) != n {
		t.Errorf("%d distinct writers stored, want %d", len(writers), n)
	}
	if md := wire(t, must(t, f.b, R, "metadata/shared", "")); md["current_version"] != float64(n) {
		t.Errorf("current_version = %v, want %d", md["current_version"], n)
	}
}

func TestConcurrentCASAdmitsOneWriter(t *testing.T) {
	f := newV2(t)
	must(t, f.b, U, "data/k", `{"data":{"a":"b"}}`)
	const n = 16
	ok := make(chan bool, n)
	for range n {
		go func() {
			_, err := call(t, f.b, U, "data/k", `{"data":{"a":"c"},"options":{"cas":1}}`)
			ok <- err == nil
		}()
	}
	wins := 0
	for range n {
		if <-ok {
			wins++
		}
	}
	if wins != 1 {
		t.Errorf("%d writers passed cas=1, want exactly 1", wins)
	}
}

func TestListFolders(t *testing.T) {
	f := newV2(t)
	for _, k := range []string{"a", "b/c", "b/d/e", "b/d/f"} {
		must(t, f.b, U, "data/"+k, `{"data":{"x":"y"}}`)
	}
	for name, tc := range map[string]struct {
		path string
		want []string
	}{
		"the root":                 {"metadata/", []string{"a", "b/"}},
		"the root without a slash": {"metadata", []string{"a", "b/"}},
		"a folder":                 {"metadata/b/", []string{"c", "d/"}},
		"a folder without a slash": {"metadata/b", []string{"c", "d/"}},
		"a nested folder":          {"metadata/b/d", []string{"e", "f"}},
	} {
		t.Run(name, func(t *testing.T) {
			got := wire(t, must(t, f.b, L, tc.path, ""))["keys"]
			if !reflect.DeepEqual(got, toAny(tc.want)) {
				t.Errorf("keys = %v, want %v", got, tc.want)
			}
		})
	}
	_, err := call(t, f.b, L, "metadata/nope/", "")
	wantCode(t, err, logical.NotFound)

	must(t, f.b, D, "metadata/b/c", "")
	if got := wire(t, must(t, f.b, L, "metadata/b/", ""))["keys"]; !reflect.DeepEqual(got, toAny([]string{"d/"})) {
		t.Errorf("after metadata delete: keys = %v", got)
	}
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, x := range s {
		out[i] = x
	}
	return out
}

func TestMetadataDeleteRemovesEverything(t *testing.T) {
	f := newV2(t)
	for range 3 {
		must(t, f.b, U, "data/k", `{"data":{"a":"b"}}`)
	}
	must(t, f.b, U, "destroy/k", `{"versions":[2]}`)
	must(t, f.b, D, "metadata/k", "")
	if resp := must(t, f.b, R, "data/k?version=1", ""); resp != nil {
		t.Errorf("read after metadata delete = %+v, want nil", resp)
	}
	if left := barriertest.Keys(t, f.s, ""); len(left) != 0 {
		t.Errorf("entries left behind: %q", left)
	}
	// The key starts again from version 1.
	if v := wire(t, must(t, f.b, U, "data/k", `{"data":{"a":"b"}}`))["version"]; v != float64(1) {
		t.Errorf("new version = %v, want 1", v)
	}
}

func TestMetadataWriteAndPatch(t *testing.T) {
	f := newV2(t)
	b := f.b
	// Metadata may be written before any data.
	must(t, b, U, "metadata/k", `{"max_versions":"4","custom_metadata":{"owner":"a","team":"b"}}`)
	md := wire(t, must(t, b, R, "metadata/k", ""))
	if md["current_version"] != float64(0) || md["max_versions"] != float64(4) || md["created_time"] == "" {
		t.Errorf("metadata before data = %v", md)
	}
	w := wire(t, must(t, b, U, "data/k", `{"data":{"a":"b"}}`))
	if !reflect.DeepEqual(w["custom_metadata"], map[string]any{"owner": "a", "team": "b"}) {
		t.Errorf("write response custom_metadata = %v", w["custom_metadata"])
	}
	must(t, b, P, "metadata/k", `{"custom_metadata":{"owner":null,"env":"prod"},"cas_required":true}`)
	md = wire(t, must(t, b, R, "metadata/k", ""))
	if want := map[string]any{"team": "b", "env": "prod"}; !reflect.DeepEqual(md["custom_metadata"], want) {
		t.Errorf("custom_metadata after patch = %v, want %v", md["custom_metadata"], want)
	}
	if md["cas_required"] != true || md["max_versions"] != float64(4) || md["current_metadata_version"] != float64(2) {
		t.Errorf("after patch: %v", md)
	}
	must(t, b, P, "metadata/k", `{"custom_metadata":null,"max_versions":null}`)
	md = wire(t, must(t, b, R, "metadata/k", ""))
	if md["custom_metadata"] != nil || md["max_versions"] != float64(0) {
		t.Errorf("after null patch: custom_metadata %v, max_versions %v", md["custom_metadata"], md["max_versions"])
	}
	_, err := call(t, b, P, "metadata/none", `{"max_versions":1}`)
	wantCode(t, err, logical.NotFound)
}

func TestSubkeys(t *testing.T) {
	f := newV2(t)
	must(t, f.b, U, "data/k", `{"data":{"a":1,"b":{"c":"x","d":{"e":true}},"f":[1],"g":{}}}`)
	for name, tc := range map[string]struct {
		query, want string
	}{
		"all levels": {"", `{"a":null,"b":{"c":null,"d":{"e":null}},"f":null,"g":{}}`},
		"depth 1":    {"?depth=1", `{"a":null,"b":null,"f":null,"g":null}`},
		"depth 2":    {"?depth=2", `{"a":null,"b":{"c":null,"d":null},"f":null,"g":{}}`},
	} {
		t.Run(name, func(t *testing.T) {
			resp := must(t, f.b, R, "subkeys/k"+tc.query, "")
			raw, _ := json.Marshal(resp.Data.(map[string]any)["subkeys"])
			if string(raw) != tc.want {
				t.Errorf("subkeys = %s, want %s", raw, tc.want)
			}
		})
	}
	must(t, f.b, D, "data/k", "")
	if resp := must(t, f.b, R, "subkeys/k", ""); resp.StatusCode != 404 || wire(t, resp)["subkeys"] != nil {
		t.Errorf("subkeys of a deleted version = %+v, want a 404 with null subkeys", resp)
	}
}

func TestExistence(t *testing.T) {
	f := newV2(t)
	exists := func(path string) (bool, bool) {
		ok, ex, err := f.b.Exists(context.Background(), &logical.Request{Operation: U, Path: path})
		if err != nil {
			t.Fatal(err)
		}
		return ok, ex
	}
	if ok, ex := exists("data/k"); !ok || ex {
		t.Errorf("new key: ok=%v exists=%v, want true false", ok, ex)
	}
	must(t, f.b, U, "data/k", `{"data":{"a":"b"}}`)
	for _, p := range []string{"data/k", "metadata/k"} {
		if ok, ex := exists(p); !ok || !ex {
			t.Errorf("%s: ok=%v exists=%v, want true true", p, ok, ex)
		}
	}
	if ok, _ := exists("config"); ok {
		t.Error("config has an existence check; its writes must be updates")
	}
}

func TestFactory(t *testing.T) {
	s := newTestStorage(t)
	for _, v := range []string{"", "1"} {
		b, err := Factory(context.Background(), logical.BackendConfig{Storage: s, Options: map[string]string{"version": v}})
		if _, ok := b.(*V1); err != nil || !ok {
			t.Errorf("version %q: %T, %v; want *V1", v, b, err)
		}
	}
	b, err := Factory(context.Background(), logical.BackendConfig{Storage: s, Options: map[string]string{"version": "2"}})
	if _, ok := b.(*V2); err != nil || !ok {
		t.Errorf("version 2: %T, %v; want *V2", b, err)
	}
	_, err = Factory(context.Background(), logical.BackendConfig{Storage: s, Options: map[string]string{"version": "3"}})
	wantCode(t, err, logical.Invalid)
	if _, err := Factory(context.Background(), logical.BackendConfig{Options: map[string]string{"version": "2"}}); err == nil {
		t.Error("no storage accepted")
	}
}

func FuzzWriteData(f *testing.F) {
	for _, s := range []string{`{"data":{"a":"b"}}`, `{"data":{"a":{"b":null}},"options":{"cas":0}}`, `{"data":"x"}`, `[]`, `{"options":{"cas":"1"}}`} {
		f.Add(s)
	}
	fx := newV2(f)
	f.Fuzz(func(t *testing.T, body string) {
		for _, op := range []logical.Operation{U, P} {
			resp, err := call(t, fx.b, op, "data/fuzz", body)
			if err != nil {
				if c := logical.CodeOf(err); c == logical.Internal {
					t.Fatalf("%s %q: internal error %v", op, body, err)
				}
				continue
			}
			if resp == nil {
				t.Fatalf("%s %q: nil response without error", op, body)
			}
		}
	})
}

func BenchmarkWriteV2(b *testing.B) {
	f := newV2(b)
	body := `{"data":{"username":"admin","password":"s3cr3t"}}`
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		must(b, f.b, U, fmt.Sprintf("data/k%d", i%1000), body)
	}
}

func BenchmarkReadV2(b *testing.B) {
	f := newV2(b)
	must(b, f.b, U, "data/k", `{"data":{"username":"admin","password":"s3cr3t"}}`)
	b.ReportAllocs()
	for b.Loop() {
		must(b, f.b, R, "data/k", "")
	}
}
