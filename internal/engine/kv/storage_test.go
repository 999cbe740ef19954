package kv

import (
	"context"
	"strings"
	"testing"

	"github.com/coffer-dev/coffer/internal/barrier"
	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/storage/inmem"
)

// newTestStorage returns what the core gives a mount: a view of an
// unsealed barrier (real encryption, hashed names, directory entries)
// over the real in-memory physical backend.
func newTestStorage(t testing.TB) logical.Storage {
	t.Helper()
	ctx := context.Background()
	b, err := barrier.New(barrier.Config{Backend: inmem.New()})
	if err != nil {
		t.Fatal(err)
	}
	root, err := barrier.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Initialize(ctx, root); err != nil {
		t.Fatal(err)
	}
	if err := b.Unseal(ctx, root); err != nil {
		t.Fatal(err)
	}
	return logical.NewView(b, "logical/kv-test/")
}

// allKeys lists every entry under prefix in s, recursively.
func allKeys(t testing.TB, s logical.Storage, prefix string) []string {
	t.Helper()
	keys, err := s.List(context.Background(), prefix)
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	var out []string
	for _, k := range keys {
		if strings.HasSuffix(k, "/") {
			out = append(out, allKeys(t, s, prefix+k)...)
		} else {
			out = append(out, prefix+k)
		}
	}
	return out
}
