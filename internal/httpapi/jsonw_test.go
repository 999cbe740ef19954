package httpapi

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// encodingJSON is what json.Encoder writes for v, without its newline.
func encodingJSON(t testing.TB, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	raw, _ := json.Marshal(map[string]any{"password": "p<a>s&s \"w\"", "n": 1.5, "list": []any{1, "x"}})
	values := map[string]any{
		"nil":             nil,
		"empty string":    "",
		"plain string":    "hello world 123 ~",
		"escapes":         "quote\" backslash\\ newline\n tab\t nul\x00 del\x7f",
		"html":            "<script>&amp;</script>",
		"unicode":         "héllo wörld ✓ 😀",
		"line separators": "a\u2028b\u2029c",
		"invalid utf-8":   "bad \xff\xfe bytes \xc3",
		"bools":           []any{true, false},
		"ints":            []any{0, -1, math.MaxInt64, int64(math.MinInt64), uint64(math.MaxUint64)},
		"floats":          []any{1.5, 1e21, 0.000001, -0.0},
		"raw message":     json.RawMessage(raw),
		"nil raw message": json.RawMessage(nil),
		"nil map":         map[string]any(nil),
		"nil string map":  map[string]string(nil),
		"nil slice":       []string(nil),
		"nil any slice":   []any(nil),
		"empty map":       map[string]any{},
		"string map":      map[string]string{"b": "2", "a": "<1>", "é": "x"},
		"strings":         []string{"a", "<b>", ""},
		"nested": map[string]any{
			"z": map[string]any{"y": []any{map[string]string{"k": "v"}, nil, "s"}},
			"a": time.Date(2026, 11, 28, 3, 0, 0, 5, time.UTC),
			"m": map[string]int{"x": 1},
			"s": struct {
				A string `json:"a"`
				B int    `json:"b,omitempty"`
			}{A: "<x>"},
		},
		"keys to sort": map[string]any{"b": 1, "a": 2, "B": 3, "": 4, "aa": 5, "<": 6},
	}
	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			got, err := appendJSON(nil, v)
			if err != nil {
				t.Fatal(err)
			}
			if want := encodingJSON(t, v); !bytes.Equal(got, want) {
				t.Errorf("appendJSON = %s\nencoding/json = %s", got, want)
			}
		})
	}
}

func TestAppendEnvelopeMatchesEncodingJSON(t *testing.T) {
	for name, env := range map[string]envelope{
		"empty": {},
		"kv read": {RequestID: "8f3c0e7e-1a2b-4c5d-8e9f-0a1b2c3d4e5f", Data: map[string]any{
			"data":     json.RawMessage(`{"value":"s3cret"}`),
			"metadata": map[string]any{"version": uint64(3), "created_time": "2026-11-28T03:00:00Z", "deletion_time": "", "destroyed": false, "custom_metadata": nil},
		}},
		"leased": {RequestID: "r", LeaseID: "database/creds/ro/abc", Renewable: true, LeaseDuration: 3600,
			Data: map[string]any{"username": "v-ro-1", "password": "p"}, Warnings: []string{"w1", "<w2>"}},
		"auth and wrap": {RequestID: "r",
			Auth:      &logical.Auth{ClientToken: "hvs.x", Accessor: "a", Policies: []string{"default"}, Renewable: true},
			WrapInfo:  &logical.WrapInfo{Token: "hvs.w", TTL: 60, CreationPath: "secret/data/x"},
			MountType: "kv"},
		"struct data": {Data: struct {
			Sealed bool `json:"sealed"`
		}{true}},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := appendEnvelope(nil, &env)
			if err != nil {
				t.Fatal(err)
			}
			if want := encodingJSON(t, env); !bytes.Equal(got, want) {
				t.Errorf("appendEnvelope = %s\nencoding/json = %s", got, want)
			}
		})
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "a\"b", "<&>", "\u2028", "\xff", "tab\t", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
		m := map[string]any{s: []any{s, map[string]string{s: s}}}
		got, err := appendJSON(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		if want := encodingJSON(t, m); !bytes.Equal(got, want) {
			t.Errorf("appendJSON(%q map) = %s, want %s", s, got, want)
		}
	})
}

func BenchmarkWriteKVReadEnvelope(b *testing.B) {
	env := envelope{RequestID: "8f3c0e7e-1a2b-4c5d-8e9f-0a1b2c3d4e5f", Data: map[string]any{
		"data":     json.RawMessage(`{"value":"` + string(bytes.Repeat([]byte("v"), 1024)) + `"}`),
		"metadata": map[string]any{"version": uint64(3), "created_time": "2026-11-28T03:00:00Z", "deletion_time": "", "destroyed": false, "custom_metadata": nil},
	}}
	b.Run("appendEnvelope", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf, _ = appendEnvelope(buf[:0], &env)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			_ = json.NewEncoder(&buf).Encode(env)
		}
	})
}
