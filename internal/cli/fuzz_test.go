package cli

import (
	"slices"
	"strings"
	"testing"
)

func FuzzRewriteArgs(f *testing.F) {
	for _, s := range []string{"-format=json", "--cas=-1", "-", "-1", "k=-v", "--"} {
		f.Add(s, "-field=x")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		in := []string{a, b}
		got := RewriteArgs(in)
		if len(got) != len(in) {
			t.Fatalf("RewriteArgs(%q) = %q: length changed", in, got)
		}
		if again := RewriteArgs(got); !slices.Equal(again, got) {
			t.Fatalf("RewriteArgs is not idempotent: %q then %q", got, again)
		}
		for i := range in {
			if got[i] != in[i] && got[i] != "-"+in[i] {
				t.Fatalf("RewriteArgs changed %q into %q", in[i], got[i])
			}
		}
	})
}

func FuzzParseKV(f *testing.F) {
	for _, s := range []string{"a=b", "a==b", "=b", "novalue", "a=-", "-"} {
		f.Add(s, `{"x":1}`)
	}
	f.Fuzz(func(t *testing.T, arg, stdin string) {
		if strings.Contains(arg, "=@") {
			return // reads files
		}
		data, err := parseKV([]string{arg}, strings.NewReader(stdin))
		if err != nil {
			return
		}
		if k, v, ok := strings.Cut(arg, "="); ok && v != "-" {
			if data[k] != v {
				t.Fatalf("parseKV(%q)[%q] = %v, want %q", arg, k, data[k], v)
			}
		}
	})
}
