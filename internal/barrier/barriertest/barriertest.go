// Package barriertest gives other packages' tests the real storage the
// server runs on: an initialized, unsealed barrier over the inmem backend.
// It is a non-test package meant only for tests (as storagetest is); the
// server never imports it.
//
//	s := barriertest.Storage(t)
//	st, err := token.New(token.Config{Storage: logical.NewView(s, "sys/token/")})
//
// A test that counts or fails operations wraps the Storage it gets.
package barriertest

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/coffer-dev/coffer/internal/barrier"
	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/storage/inmem"
)

// New returns a barrier over a fresh inmem backend, initialized with a
// random root key and unsealed. It fails t on any error.
func New(t testing.TB) *barrier.Barrier {
	t.Helper()
	ctx := context.Background()
	b, err := barrier.New(barrier.Config{Backend: inmem.New()})
	if err != nil {
		t.Fatalf("barriertest: %v", err)
	}
	root, err := barrier.GenerateKey(nil)
	if err != nil {
		t.Fatalf("barriertest: %v", err)
	}
	if err := b.Initialize(ctx, root); err != nil {
		t.Fatalf("barriertest: initialize: %v", err)
	}
	if err := b.Unseal(ctx, root); err != nil {
		t.Fatalf("barriertest: unseal: %v", err)
	}
	return b
}

// Storage returns New(t) as a logical.Storage.
func Storage(t testing.TB) logical.Storage { return New(t) }

// Keys returns every key under prefix (which is "" or ends in "/") in s,
// at any depth, sorted: what a test checks to find entries left behind.
// It walks s with List, so it sees logical keys, never the barrier's
// hashed physical ones. It fails t on any error.
func Keys(t testing.TB, s logical.Storage, prefix string) []string {
	t.Helper()
	var out []string
	var walk func(string)
	walk = func(dir string) {
		names, err := s.List(context.Background(), dir)
		if err != nil {
			t.Fatalf("barriertest: list %q: %v", dir, err)
		}
		for _, n := range names {
			if strings.HasSuffix(n, "/") {
				walk(dir + n)
			} else {
				out = append(out, dir+n)
			}
		}
	}
	walk(prefix)
	slices.Sort(out)
	return out
}
