package memtree_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/coffer-dev/coffer/internal/storage"
	"github.com/coffer-dev/coffer/internal/storage/memtree"
	"github.com/coffer-dev/coffer/internal/storage/storagetest"
)

func TestConformance(t *testing.T) {
	for _, degree := range []int{0, 2} { // default, and a tiny degree: many nodes
		t.Run(fmt.Sprintf("degree %d", degree), func(t *testing.T) {
			storagetest.Run(t, func(t *testing.T) storage.Backend {
				tr := memtree.New(memtree.Config{Degree: degree})
				t.Cleanup(func() { tr.Close() })
				return tr
			})
		})
	}
}

var ctx = context.Background()

func mustApply(t *testing.T, tr *memtree.Tree, ops ...storage.Op) {
	t.Helper()
	if err := tr.Apply(ctx, ops); err != nil {
		t.Fatalf("Apply = %v", err)
	}
}

func put(k, v string) storage.Op { return storage.Op{Key: k, Value: []byte(v)} }

// contents returns every key=value of tr, in Ascend order.
func contents(t *testing.T, tr *memtree.Tree) []string {
	t.Helper()
	var got []string
	if err := tr.Ascend(ctx, func(k string, v []byte) error {
		got = append(got, k+"="+string(v))
		return nil
	}); err != nil {
		t.Fatalf("Ascend = %v", err)
	}
	return got
}

func TestApplyRejectsEmptyKey(t *testing.T) {
	tr := memtree.New(memtree.Config{})
	err := tr.Apply(ctx, []storage.Op{put("a", "1"), put("", "2")})
	if !errors.Is(err, memtree.ErrInvalidOp) {
		t.Fatalf("Apply with an empty key = %v, want ErrInvalidOp", err)
	}
	if got := tr.Len(); got != 0 {
		t.Errorf("Len after a refused Apply = %d, want 0", got)
	}
}

func TestCloneIsIndependent(t *testing.T) {
	tr := memtree.New(memtree.Config{Degree: 2})
	for i := range 100 {
		mustApply(t, tr, put(fmt.Sprintf("k%03d", i), "old"))
	}
	c, err := tr.Clone()
	if err != nil {
		t.Fatal(err)
	}
	want := contents(t, c)
	// Write the original every which way; the clone must not move.
	for i := range 100 {
		switch i % 3 {
		case 0:
			mustApply(t, tr, storage.Op{Key: fmt.Sprintf("k%03d", i), Delete: true})
		case 1:
			mustApply(t, tr, put(fmt.Sprintf("k%03d", i), "new"))
		default:
			mustApply(t, tr, put(fmt.Sprintf("k%03d+", i), "added"))
		}
	}
	if got := contents(t, c); !slices.Equal(got, want) {
		t.Errorf("clone changed after writes to the original:\n got %d entries\nwant %d", len(got), len(want))
	}
	// And the other way round.
	mustApply(t, c, put("only-in-clone", "x"))
	if _, err := tr.Get(ctx, "only-in-clone"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("original Get of a clone-only key = %v, want ErrNotFound", err)
	}
	if got, want := tr.Len(), 100-34+33; got != want {
		t.Errorf("original Len = %d, want %d", got, want)
	}
	// Closing the original leaves the clone readable.
	tr.Close()
	if v, err := c.Get(ctx, "k001"); err != nil || string(v) != "old" {
		t.Errorf("clone Get after the original's Close = %q, %v; want old", v, err)
	}
}

func TestCloneUnderConcurrentWrites(t *testing.T) {
	tr := memtree.New(memtree.Config{Degree: 2})
	for i := range 200 {
		mustApply(t, tr, put(fmt.Sprintf("k%03d", i), "0"))
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for n := 1; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			// Every batch rewrites all keys with one value: a clone must
			// see a single value throughout.
			ops := make([]storage.Op, 200)
			for i := range ops {
				ops[i] = put(fmt.Sprintf("k%03d", i), fmt.Sprint(n))
			}
			if err := tr.Apply(ctx, ops); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 50 {
		c, err := tr.Clone()
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		if err := c.Ascend(ctx, func(_ string, v []byte) error {
			seen[string(v)] = true
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(seen) != 1 || c.Len() != 200 {
			t.Errorf("clone holds %d entries with %d distinct values, want 200 with 1", c.Len(), len(seen))
		}
	}
	close(stop)
	wg.Wait()
}

func TestSwap(t *testing.T) {
	dst := memtree.New(memtree.Config{})
	mustApply(t, dst, put("a", "old"), put("b", "old"))
	src := memtree.New(memtree.Config{})
	mustApply(t, src, put("b", "new"), put("c", "new"))
	if err := dst.Swap(src); err != nil {
		t.Fatalf("Swap = %v", err)
	}
	if got, want := contents(t, dst), []string{"b=new", "c=new"}; !slices.Equal(got, want) {
		t.Errorf("after Swap: %q, want %q", got, want)
	}
	if got, want := dst.Bytes(), int64(len("bnewcnew")); got != want {
		t.Errorf("Bytes after Swap = %d, want %d", got, want)
	}
	if _, err := src.Get(ctx, "b"); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("source Get after Swap = %v, want ErrClosed", err)
	}
	if err := dst.Swap(src); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Swap from a closed tree = %v, want ErrClosed", err)
	}
	if err := dst.Swap(dst); err == nil {
		t.Error("Swap of a tree with itself succeeded")
	}
}

func TestBytes(t *testing.T) {
	tr := memtree.New(memtree.Config{})
	for _, tc := range []struct {
		op   storage.Op
		want int64
	}{
		{put("ab", "1234"), 6},
		{put("cd", ""), 8},
		{put("ab", "1"), 5}, // replaced
		{storage.Op{Key: "ab", Delete: true}, 2},
		{storage.Op{Key: "zz", Delete: true}, 2}, // missing
	} {
		mustApply(t, tr, tc.op)
		if got := tr.Bytes(); got != tc.want {
			t.Errorf("after %+v: Bytes = %d, want %d", tc.op, got, tc.want)
		}
	}
}

func TestAscend(t *testing.T) {
	tr := memtree.New(memtree.Config{Degree: 2})
	keys := []string{"b", "a\xff", "a", "c/1", "\x00"}
	for _, k := range keys {
		mustApply(t, tr, put(k, k))
	}
	var got []string
	if err := tr.Ascend(ctx, func(k string, v []byte) error {
		if !bytes.Equal(v, []byte(k)) {
			t.Errorf("value of %q = %q", k, v)
		}
		got = append(got, k)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := slices.Sorted(slices.Values(keys))
	if !slices.Equal(got, want) {
		t.Errorf("Ascend order = %q, want %q", got, want)
	}

	stop := errors.New("stop")
	n := 0
	err := tr.Ascend(ctx, func(string, []byte) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("Ascend with a failing fn = %v after %d calls, want stop after 1", err, n)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := tr.Ascend(cctx, func(string, []byte) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Ascend with a cancelled context = %v, want Canceled", err)
	}
	tr.Close()
	if err := tr.Ascend(ctx, func(string, []byte) error { return nil }); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Ascend after Close = %v, want ErrClosed", err)
	}
	if _, err := tr.Clone(); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Clone after Close = %v, want ErrClosed", err)
	}
}

// TestScanChunks crosses several scan chunks (256 entries each) while the
// callback writes inside and outside the prefix: every key present from
// start to end is seen exactly once, in order.
func TestScanChunks(t *testing.T) {
	tr := memtree.New(memtree.Config{})
	for i := range 1000 {
		mustApply(t, tr, put(fmt.Sprintf("p/%04d", i), "v"))
	}
	mustApply(t, tr, put("o", "before"), put("q", "after"))
	var got []string
	err := tr.Scan(ctx, "p/", func(k string, _ []byte) error {
		got = append(got, k)
		// Writes behind the cursor and outside the prefix must not disturb it.
		return tr.Apply(ctx, []storage.Op{put(k, "rewritten"), put("o"+k, "x")})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1000 {
		t.Fatalf("scan saw %d keys, want 1000", len(got))
	}
	for i, k := range got {
		if want := fmt.Sprintf("p/%04d", i); k != want {
			t.Fatalf("key %d = %q, want %q", i, k, want)
		}
	}
}
