package barrier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/coffer-dev/coffer/internal/storage"
	"github.com/coffer-dev/coffer/internal/storage/inmem"
)

// putV1 writes key = value in layout 1, as the first barrier did: the value
// under d/, its directory entry and its ancestors' under l/.
func putV1(t *testing.T, b *Barrier, be storage.Backend, key, value string) {
	t.Helper()
	kr := b.kr
	seal := func(context string, pt string) []byte {
		v, err := b.seal(kr, context, []byte(pt))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	dir, name := split(key)
	ops := []storage.Op{
		{Key: kr.v1DataKey(key), Value: seal(dataDomain+key, value)},
		{Key: kr.v1EntryKey(dir, name), Value: seal(dirDomain+dir, name)},
	}
	for d := dir; d != ""; {
		p, n := parent(d)
		ops = append(ops, storage.Op{Key: kr.v1EntryKey(p, n), Value: seal(dirDomain+p, n)})
		d = p
	}
	if err := be.Apply(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
}

func TestMigrateLayout1(t *testing.T) {
	ctx := context.Background()
	fb := &failingBackend{Backend: inmem.New()}
	b, _, root := newBarrier(t, Config{Backend: fb})
	want := map[string]string{}
	for i := range 700 { // more than two migration batches
		k := fmt.Sprintf("kv/f%d/k%d", i%7, i)
		if i%50 == 0 {
			k = fmt.Sprintf("top%d", i)
		}
		if i%100 == 1 {
			k = fmt.Sprintf("deep/a/b/c/d%d", i)
		}
		want[k] = fmt.Sprintf("value-%d", i)
		putV1(t, b, fb, k, want[k])
	}
	// Written in layout 2 already (a migration interrupted earlier, or a
	// write after it): must survive untouched.
	mustPut(t, b, "kv/f1/new", "v2-value")
	want["kv/f1/new"] = "v2-value"
	b.Seal()

	// The second batch fails: Unseal reports it and stays sealed.
	applies := 0
	fb.failWhen(func([]storage.Op) bool { applies++; return applies == 2 })
	if err := b.Unseal(ctx, root); !errors.Is(err, errInjected) {
		t.Fatalf("Unseal with a failing backend = %v, want the injected error", err)
	}
	if !b.Sealed() {
		t.Fatal("barrier unsealed although its migration failed")
	}
	fb.failWhen(nil)
	if err := b.Unseal(ctx, root); err != nil {
		t.Fatal(err)
	}

	var keys []string
	for k, v := range want {
		keys = append(keys, k)
		if got := mustGet(t, b, k); got != v {
			t.Errorf("Get(%q) = %q, want %q", k, got, v)
		}
	}
	slices.Sort(keys)
	if got := walk(t, b, ""); !slices.Equal(got, keys) {
		t.Errorf("walk after migration: %d keys, want %d", len(got), len(keys))
	}
	if n := countPhysical(t, fb, v1DataPrefix) + countPhysical(t, fb, v1DirPrefix); n != 0 {
		t.Errorf("%d layout-1 entries left after migration", n)
	}
	if got, want := countPhysical(t, fb, entryPrefix), wantEntries(keys); got != want {
		t.Errorf("%d entries after migration, want %d", got, want)
	}

	// Nothing left to move: a later unseal writes nothing.
	b.Seal()
	fb.failWhen(func(ops []storage.Op) bool { return true })
	if err := b.Unseal(ctx, root); err != nil {
		t.Errorf("Unseal with nothing to migrate = %v (it tried to write)", err)
	}
}

// A layout-1 directory entry that does not decrypt to its key's name stops
// the migration with ErrCorrupt instead of moving it.
func TestMigrateLayout1Corrupt(t *testing.T) {
	ctx := context.Background()
	b, be, root := newBarrier(t, Config{})
	putV1(t, b, be, "kv/a", "1")
	putV1(t, b, be, "kv/b", "2")
	v, err := be.Get(ctx, b.kr.v1EntryKey("kv/", "a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Apply(ctx, []storage.Op{{Key: b.kr.v1EntryKey("kv/", "b"), Value: v}}); err != nil {
		t.Fatal(err)
	}
	b.Seal()
	err = b.Unseal(ctx, root)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Unseal = %v, want ErrCorrupt", err)
	}
	if strings.Contains(err.Error(), "kv/") {
		t.Errorf("error %q names a path", err)
	}
}
