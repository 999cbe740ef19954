package barrier

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/storage"
	"github.com/coffer-dev/coffer/internal/storage/inmem"
)

var cacheModes = map[string]int{"with dir cache": 0, "without dir cache": -1, "with a tiny dir cache": 2}

func mustList(t testing.TB, s logical.Storage, prefix string) []string {
	t.Helper()
	names, err := s.List(context.Background(), prefix)
	if err != nil {
		t.Fatalf("List(%q) = %v", prefix, err)
	}
	return names
}

func mustDelete(t testing.TB, s logical.Storage, key string) {
	t.Helper()
	if err := s.Delete(context.Background(), key); err != nil {
		t.Fatalf("Delete(%q) = %v", key, err)
	}
}

// walk returns every key reachable by listing from "", failing on a folder
// that lists empty.
func walk(t testing.TB, s logical.Storage, prefix string) []string {
	t.Helper()
	names := mustList(t, s, prefix)
	if prefix != "" && len(names) == 0 {
		t.Errorf("folder %q is listed but empty", prefix)
	}
	var keys []string
	for _, n := range names {
		if strings.HasSuffix(n, "/") {
			keys = append(keys, walk(t, s, prefix+n)...)
		} else {
			keys = append(keys, prefix+n)
		}
	}
	return keys
}

// wantEntries is the number of entries a set of keys needs.
func wantEntries(keys []string) int {
	entries := map[string]bool{}
	for _, k := range keys {
		for i, c := range k {
			if c == '/' {
				entries[k[:i+1]] = true
			}
		}
		entries[k] = true
	}
	return len(entries)
}

// countPhysical counts the physical keys under prefix.
func countPhysical(t testing.TB, be storage.Backend, prefix string) int {
	t.Helper()
	n := 0
	if err := be.Scan(context.Background(), prefix, func(string, []byte) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestList(t *testing.T) {
	for mode, size := range cacheModes {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			b, be, _ := newBarrier(t, Config{DirCacheSize: size})
			for _, k := range []string{"a", "b/c", "b/d/e", "b/d/f", "b/d", "c/x/y/z", "B", "b/d/ä"} {
				mustPut(t, b, k, "v")
			}
			for prefix, want := range map[string][]string{
				"":       {"B", "a", "b/", "c/"},
				"b/":     {"c", "d", "d/"},
				"b/d/":   {"e", "f", "ä"},
				"c/":     {"x/"},
				"c/x/":   {"y/"},
				"c/x/y/": {"z"},
				"nope/":  nil,
				"b/c/":   nil,
				"b/d/e/": nil,
			} {
				if got := mustList(t, b, prefix); !slices.Equal(got, want) {
					t.Errorf("List(%q) = %q, want %q", prefix, got, want)
				}
			}

			mustDelete(t, b, "c/x/y/z")
			if got, want := mustList(t, b, ""), []string{"B", "a", "b/"}; !slices.Equal(got, want) {
				t.Errorf("after deleting the only deep key List(\"\") = %q, want %q", got, want)
			}
			for _, p := range []string{"c/", "c/x/", "c/x/y/"} {
				if got := mustList(t, b, p); got != nil {
					t.Errorf("List(%q) of a removed folder = %q, want nil", p, got)
				}
			}
			mustDelete(t, b, "b/d/e")
			mustDelete(t, b, "b/d/f")
			if got, want := mustList(t, b, "b/"), []string{"c", "d", "d/"}; !slices.Equal(got, want) {
				t.Errorf("List(b/) with one key left in b/d/ = %q, want %q", got, want)
			}
			mustDelete(t, b, "b/d/ä")
			if got, want := mustList(t, b, "b/"), []string{"c", "d"}; !slices.Equal(got, want) {
				t.Errorf("List(b/) after emptying b/d/ = %q, want %q", got, want)
			}
			mustDelete(t, b, "b/d")
			mustDelete(t, b, "missing/key") // deleting a missing key in a missing folder is fine
			if got, want := mustList(t, b, "b/"), []string{"c"}; !slices.Equal(got, want) {
				t.Errorf("List(b/) = %q, want %q", got, want)
			}
			for _, k := range []string{"a", "b/c", "B"} {
				mustDelete(t, b, k)
			}
			if got := mustList(t, b, ""); got != nil {
				t.Errorf("List(\"\") of an empty barrier = %q, want nil", got)
			}
			if n := countPhysical(t, be, entryPrefix); n != 0 {
				t.Errorf("%d physical entries left after deleting everything", n)
			}

			// Batches.
			err := b.Apply(ctx, []logical.Op{
				{Key: "x/1", Value: []byte("1")},
				{Key: "x/2", Value: []byte("2")},
				{Key: "x/1", Delete: true},
				{Key: "y/z/1", Value: []byte("1")},
				{Key: "y/z/1", Delete: true},
			})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := walk(t, b, ""), []string{"x/2"}; !slices.Equal(got, want) {
				t.Errorf("keys after a batch = %q, want %q", got, want)
			}
			if err := b.Apply(ctx, []logical.Op{{Key: "x/2", Delete: true}, {Key: "x/3", Value: []byte("3")}}); err != nil {
				t.Fatal(err)
			}
			if got, want := walk(t, b, ""), []string{"x/3"}; !slices.Equal(got, want) {
				t.Errorf("keys after a batch = %q, want %q", got, want)
			}
			if err := b.Apply(ctx, nil); err != nil {
				t.Errorf("Apply(nil) = %v", err)
			}
			if n := countPhysical(t, be, entryPrefix); n != 2 {
				t.Errorf("%d entries for x/3, want 2", n)
			}
		})
	}
}

// A folder entry remembered by one barrier but removed through another
// over the same storage is only rewritten after ResetDirCache.
func TestResetDirCache(t *testing.T) {
	ctx := context.Background()
	b1, be, root := newBarrier(t, Config{})
	b2, err := New(Config{Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.Unseal(ctx, root); err != nil {
		t.Fatal(err)
	}
	mustPut(t, b1, "f/g/a", "v")
	mustDelete(t, b2, "f/g/a")
	b1.ResetDirCache()
	mustPut(t, b1, "f/g/b", "v")
	if got, want := walk(t, b2, ""), []string{"f/g/b"}; !slices.Equal(got, want) {
		t.Errorf("keys = %q, want %q", got, want)
	}
}

// slowBackend is a real inmem backend whose Scan and Apply pause first, to
// widen the windows in which concurrent writers interleave.
type slowBackend struct{ *inmem.Backend }

func (s slowBackend) Apply(ctx context.Context, ops []storage.Op) error {
	time.Sleep(20 * time.Microsecond)
	return s.Backend.Apply(ctx, ops)
}

func (s slowBackend) Scan(ctx context.Context, prefix string, fn func(string, []byte) error) error {
	time.Sleep(20 * time.Microsecond)
	return s.Backend.Scan(ctx, prefix, fn)
}

func TestConcurrentPutsAndDeletesKeepFoldersExact(t *testing.T) {
	for mode, size := range cacheModes {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			be := slowBackend{inmem.New()}
			b, _, _ := newBarrier(t, Config{Backend: be, DirCacheSize: size})
			const workers, steps = 4, 200
			final := make([]map[string]bool, workers)
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			for g := range workers {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(g), 1))
					have := map[string]bool{}
					for range steps {
						// Few shared folders, several depths, so that folders
						// are emptied and re-created while others write.
						// One key per worker and folder: folders are
						// often empty.
						key := fmt.Sprintf("s/%d/g%d", rng.IntN(2), g)
						if rng.IntN(2) == 0 {
							key = fmt.Sprintf("s/%d/deep/er/g%d", rng.IntN(2), g)
						}
						var err error
						if rng.IntN(2) == 0 {
							err = b.Put(ctx, key, []byte("v"))
							have[key] = true
						} else {
							err = b.Delete(ctx, key)
							delete(have, key)
						}
						if err != nil {
							errs <- err
							return
						}
					}
					final[g] = have
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			var want []string
			for _, have := range final {
				for k := range have {
					want = append(want, k)
				}
			}
			slices.Sort(want)
			if got := walk(t, b, ""); !slices.Equal(got, want) {
				t.Errorf("listed keys = %q, want %q", got, want)
			}
			if got, want := countPhysical(t, be, entryPrefix), wantEntries(want); got != want {
				t.Errorf("%d entries, want %d", got, want)
			}
			for _, k := range want {
				mustDelete(t, b, k)
			}
			if n := countPhysical(t, be, entryPrefix); n != 0 {
				t.Errorf("%d entries left after deleting everything", n)
			}
		})
	}
}
