// Package storagetest is the conformance suite every storage.Backend must
// pass: inmem, bolt, and any replicated backend added later.
//
// A backend's own tests call Run with a function that opens a fresh, empty
// backend for each subtest:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) storage.Backend {
//			b, err := bolt.Open(bolt.Config{Path: filepath.Join(t.TempDir(), "db"), NoSync: true})
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { b.Close() })
//			return b
//		})
//	}
//
// The opener owns cleanup (usually t.Cleanup(b.Close)); the suite closes some
// backends itself, which is why Close must be idempotent.
//
// The suite checks the contract written on storage.Backend: Get of a missing
// key, round trips, that returned slices belong to the caller, deletes, the
// order and atomicity of Apply, Scan's prefix semantics and ordering, empty,
// large and binary values, concurrent writers, behaviour after Close, and
// context cancellation. It also checks that Scan's callback may call back into
// the backend (Get and Apply) without deadlocking, which callers such as lease
// revocation rely on. Backends that implement storage.Snapshotter get a few
// extra checks.
//
// Keys used by the suite are never empty: a physical key is always a keyed
// hash written by the barrier, and some backends (bolt) cannot store "".
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/storage"
)

// Run runs the conformance suite against the backends open returns. open is
// called once per subtest and must return a new, empty backend.
func Run(t *testing.T, open func(t *testing.T) storage.Backend) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, b storage.Backend)
	}{
		{"get of a missing key returns ErrNotFound", testGetMissing},
		{"put then get returns the value", testRoundTrip},
		{"returned and given slices belong to the caller", testSliceOwnership},
		{"delete removes a key", testDelete},
		{"delete of a missing key is not an error", testDeleteMissing},
		{"apply runs ops in order and the later op wins", testApplyOrder},
		{"an empty batch is a no-op", testApplyEmpty},
		{"readers never see part of a batch", testApplyAtomic},
		{"scan returns keys with the prefix in ascending order", testScanPrefix},
		{"scan stops at the first error from fn", testScanStops},
		{"scan callback may call get and apply", testScanReentrant},
		{"scan visits many keys in order", testScanMany},
		{"values of 0 bytes and 1 MiB round trip", testValueSizes},
		{"binary keys and values round trip", testBinary},
		{"concurrent applies from 32 goroutines are all visible", testConcurrentApply},
		{"operations after close return ErrClosed", testClosed},
		{"close is idempotent", testCloseTwice},
		{"apply with a cancelled context writes nothing", testApplyCancelled},
		{"snapshot writes a copy if supported", testSnapshot},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

func put(key string, value []byte) storage.Op { return storage.Op{Key: key, Value: value} }
func del(key string) storage.Op               { return storage.Op{Key: key, Delete: true} }

func mustApply(t *testing.T, b storage.Backend, ops ...storage.Op) {
	t.Helper()
	if err := b.Apply(context.Background(), ops); err != nil {
		t.Fatalf("Apply(%d ops) = %v, want nil", len(ops), err)
	}
}

func mustGet(t *testing.T, b storage.Backend, key string) []byte {
	t.Helper()
	v, err := b.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q) = %v, want nil", key, err)
	}
	return v
}

func wantValue(t *testing.T, b storage.Backend, key string, want []byte) {
	t.Helper()
	if got := mustGet(t, b, key); !bytes.Equal(got, want) {
		t.Errorf("Get(%q) = %d bytes %.16q, want %d bytes %.16q", key, len(got), got, len(want), want)
	}
}

func wantMissing(t *testing.T, b storage.Backend, key string) {
	t.Helper()
	if v, err := b.Get(context.Background(), key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get(%q) = %d bytes, %v; want ErrNotFound", key, len(v), err)
	}
}

type entry struct {
	key   string
	value []byte
}

func scanAll(t *testing.T, b storage.Backend, prefix string) []entry {
	t.Helper()
	var got []entry
	err := b.Scan(context.Background(), prefix, func(k string, v []byte) error {
		got = append(got, entry{k, bytes.Clone(v)})
		return nil
	})
	if err != nil {
		t.Fatalf("Scan(%q) = %v, want nil", prefix, err)
	}
	return got
}

func scanKeys(t *testing.T, b storage.Backend, prefix string) []string {
	t.Helper()
	var keys []string
	for _, e := range scanAll(t, b, prefix) {
		keys = append(keys, e.key)
	}
	return keys
}

func testGetMissing(t *testing.T, b storage.Backend) {
	wantMissing(t, b, "missing")
	mustApply(t, b, put("present", []byte("v")))
	wantMissing(t, b, "presen")
	wantMissing(t, b, "present2")
}

func testRoundTrip(t *testing.T, b storage.Backend) {
	mustApply(t, b, put("k", []byte("v1")))
	wantValue(t, b, "k", []byte("v1"))
	mustApply(t, b, put("k", []byte("value two")))
	wantValue(t, b, "k", []byte("value two"))
}

func testSliceOwnership(t *testing.T, b storage.Backend) {
	in := []byte("original")
	mustApply(t, b, put("k", in))
	copy(in, "XXXXXXXX")
	wantValue(t, b, "k", []byte("original"))

	got := mustGet(t, b, "k")
	copy(got, "YYYYYYYY")
	wantValue(t, b, "k", []byte("original"))
}

func testDelete(t *testing.T, b storage.Backend) {
	mustApply(t, b, put("a", []byte("1")), put("b", []byte("2")))
	mustApply(t, b, del("a"))
	wantMissing(t, b, "a")
	wantValue(t, b, "b", []byte("2"))
	if got, want := scanKeys(t, b, ""), []string{"b"}; !slices.Equal(got, want) {
		t.Errorf("Scan after delete = %q, want %q", got, want)
	}
}

func testDeleteMissing(t *testing.T, b storage.Backend) {
	mustApply(t, b, del("never-written"))
	mustApply(t, b, put("x", []byte("1")), del("x"), del("x"))
	wantMissing(t, b, "x")
}

func testApplyOrder(t *testing.T, b storage.Backend) {
	mustApply(t, b, put("gone", []byte("0")))
	mustApply(t, b,
		put("a", []byte("1")),
		put("b", []byte("1")),
		del("a"),
		put("b", []byte("2")),
		put("c", []byte("3")),
		del("c"),
		put("a", []byte("4")),
		del("gone"),
	)
	wantValue(t, b, "a", []byte("4"))
	wantValue(t, b, "b", []byte("2"))
	wantMissing(t, b, "c")
	wantMissing(t, b, "gone")
}

func testApplyEmpty(t *testing.T, b storage.Backend) {
	mustApply(t, b)
	if err := b.Apply(context.Background(), nil); err != nil {
		t.Errorf("Apply(nil) = %v, want nil", err)
	}
	if got := scanKeys(t, b, ""); len(got) != 0 {
		t.Errorf("Scan after empty batches = %q, want nothing", got)
	}
}

// testApplyAtomic writes batches that set 8 keys to the same generation while
// readers scan them: a reader must never see two generations at once. It
// relies on a scan of a handful of keys being read at one point in time.
func testApplyAtomic(t *testing.T, b storage.Backend) {
	const keys = 8
	batch := func(gen int) []storage.Op {
		ops := make([]storage.Op, keys)
		for i := range ops {
			ops[i] = put(fmt.Sprintf("atomic/%d", i), fmt.Appendf(nil, "gen-%04d", gen))
		}
		return ops
	}
	mustApply(t, b, batch(0)...)

	ctx := context.Background()
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				var first []byte
				n := 0
				err := b.Scan(ctx, "atomic/", func(k string, v []byte) error {
					n++
					if first == nil {
						first = bytes.Clone(v)
					} else if !bytes.Equal(first, v) {
						return fmt.Errorf("scan saw %q next to %q: a partial batch", v, first)
					}
					return nil
				})
				if err == nil && n != keys {
					err = fmt.Errorf("scan saw %d keys, want %d", n, keys)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for gen := 1; gen <= 50; gen++ {
		if err := b.Apply(ctx, batch(gen)); err != nil {
			t.Errorf("Apply(gen %d) = %v", gen, err)
			break
		}
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testScanPrefix(t *testing.T, b storage.Backend) {
	keys := []string{"b", "a/c", "ab", "a", "a/b", "a\xff", "a/b/c", "a/bc", "c/", "\x00"}
	var ops []storage.Op
	for _, k := range keys {
		ops = append(ops, put(k, []byte("v:"+k)))
	}
	mustApply(t, b, ops...)

	for name, tc := range map[string]struct {
		prefix string
		want   []string
	}{
		"empty prefix scans every key": {"", []string{"\x00", "a", "a/b", "a/b/c", "a/bc", "a/c", "ab", "a\xff", "b", "c/"}},
		"folder prefix":                {"a/", []string{"a/b", "a/b/c", "a/bc", "a/c"}},
		"prefix shorter than a folder": {"a", []string{"a", "a/b", "a/b/c", "a/bc", "a/c", "ab", "a\xff"}},
		"prefix that is a whole key":   {"a/b", []string{"a/b", "a/b/c", "a/bc"}},
		"prefix that is a leaf key":    {"a/b/c", []string{"a/b/c"}},
		"prefix matching nothing":      {"zzz", nil},
		"prefix between keys":          {"aa", nil},
		"prefix longer than every key": {"c/d", nil},
		"prefix of high bytes":         {"a\xff", []string{"a\xff"}},
		"prefix of a zero byte":        {"\x00", []string{"\x00"}},
	} {
		t.Run(name, func(t *testing.T) {
			got := scanAll(t, b, tc.prefix)
			var gotKeys []string
			for _, e := range got {
				gotKeys = append(gotKeys, e.key)
				if want := "v:" + e.key; string(e.value) != want {
					t.Errorf("Scan(%q) gave %q = %q, want %q", tc.prefix, e.key, e.value, want)
				}
			}
			if !slices.Equal(gotKeys, tc.want) {
				t.Errorf("Scan(%q) = %q, want %q", tc.prefix, gotKeys, tc.want)
			}
		})
	}
}

func testScanStops(t *testing.T, b storage.Backend) {
	mustApply(t, b, put("s/1", []byte("1")), put("s/2", []byte("2")), put("s/3", []byte("3")))
	stop := errors.New("stop here")
	var seen []string
	err := b.Scan(context.Background(), "s/", func(k string, _ []byte) error {
		seen = append(seen, k)
		if k == "s/2" {
			return fmt.Errorf("wrapped: %w", stop)
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Errorf("Scan = %v, want the error fn returned", err)
	}
	if want := []string{"s/1", "s/2"}; !slices.Equal(seen, want) {
		t.Errorf("Scan visited %q, want %q", seen, want)
	}
}

// testScanReentrant calls Get and Apply from inside Scan's callback, with
// enough data that the writes must grow the store. A backend that holds a
// read transaction across the callback can deadlock here.
func testScanReentrant(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	val := bytes.Repeat([]byte("r"), 1024)
	var ops []storage.Op
	for i := range 300 {
		ops = append(ops, put(fmt.Sprintf("re/%03d", i), val))
	}
	mustApply(t, b, ops...)

	done := make(chan error, 1)
	go func() {
		big := bytes.Repeat([]byte("w"), 16<<10)
		n := 0
		done <- b.Scan(ctx, "re/", func(k string, _ []byte) error {
			n++
			if _, err := b.Get(ctx, k); err != nil {
				return fmt.Errorf("Get(%q) inside Scan: %w", k, err)
			}
			return b.Apply(ctx, []storage.Op{put("out/"+k, big), del(k)})
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Scan = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Scan with Get and Apply in its callback did not finish: deadlock?")
	}
	if got := scanKeys(t, b, "re/"); len(got) != 0 {
		t.Errorf("after Scan deleted every re/ key, %d remain", len(got))
	}
	if got := scanKeys(t, b, "out/"); len(got) != 300 {
		t.Errorf("Scan(out/) = %d keys, want 300", len(got))
	}
}

func testScanMany(t *testing.T, b storage.Backend) {
	const n = 3000
	var ops []storage.Op
	var want []string
	for i := n - 1; i >= 0; i-- {
		k := fmt.Sprintf("many/%05d", i)
		ops = append(ops, put(k, bytes.Repeat([]byte{byte(i)}, 700)))
		want = append(want, k)
	}
	mustApply(t, b, ops...)
	slices.Sort(want)
	got := scanAll(t, b, "many/")
	var keys []string
	for _, e := range got {
		keys = append(keys, e.key)
		var i int
		fmt.Sscanf(e.key, "many/%05d", &i)
		if len(e.value) != 700 || e.value[0] != byte(i) {
			t.Fatalf("Scan gave %q a wrong value", e.key)
		}
	}
	if !slices.Equal(keys, want) {
		t.Errorf("Scan(many/) returned %d keys, want %d in ascending order", len(keys), len(want))
	}
}

func testValueSizes(t *testing.T, b storage.Backend) {
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	mustApply(t, b, put("empty", []byte{}), put("nil", nil), put("big", big))

	for _, k := range []string{"empty", "nil"} {
		got, err := b.Get(context.Background(), k)
		if err != nil || len(got) != 0 {
			t.Errorf("Get(%q) = %d bytes, %v; want 0 bytes, nil", k, len(got), err)
		}
	}
	wantValue(t, b, "big", big)
	if got := scanKeys(t, b, ""); !slices.Equal(got, []string{"big", "empty", "nil"}) {
		t.Errorf("Scan = %q, want the empty values listed too", got)
	}
}

func testBinary(t *testing.T, b storage.Backend) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	keys := []string{"\x00", "\x00\x00", "k\x00v", "\xff\xfe", "\xc3\x28", string(all[1:])}
	var ops []storage.Op
	for i, k := range keys {
		ops = append(ops, put(k, append([]byte{byte(i)}, all...)))
	}
	mustApply(t, b, ops...)
	for i, k := range keys {
		wantValue(t, b, k, append([]byte{byte(i)}, all...))
	}
	want := slices.Clone(keys)
	slices.Sort(want)
	if got := scanKeys(t, b, ""); !slices.Equal(got, want) {
		t.Errorf("Scan = %q, want %q", got, want)
	}
}

func testConcurrentApply(t *testing.T, b storage.Backend) {
	const writers, each = 32, 20
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				k := fmt.Sprintf("c/%02d/%02d", w, i)
				ops := []storage.Op{put(k, []byte(k)), put(fmt.Sprintf("last/%02d", w), []byte(k))}
				if err := b.Apply(ctx, ops); err != nil {
					errs <- fmt.Errorf("Apply(%q) = %w", k, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for w := range writers {
		for i := range each {
			k := fmt.Sprintf("c/%02d/%02d", w, i)
			wantValue(t, b, k, []byte(k))
		}
		wantValue(t, b, fmt.Sprintf("last/%02d", w), fmt.Appendf(nil, "c/%02d/%02d", w, each-1))
	}
	if got := scanKeys(t, b, "c/"); len(got) != writers*each {
		t.Errorf("Scan(c/) = %d keys, want %d", len(got), writers*each)
	}
}

func testClosed(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	mustApply(t, b, put("k", []byte("v")))
	if err := b.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if _, err := b.Get(ctx, "k"); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Get after Close = %v, want ErrClosed", err)
	}
	if err := b.Scan(ctx, "", func(string, []byte) error { return nil }); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Scan after Close = %v, want ErrClosed", err)
	}
	if err := b.Apply(ctx, []storage.Op{put("k2", []byte("v"))}); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Apply after Close = %v, want ErrClosed", err)
	}
	if s, ok := b.(storage.Snapshotter); ok {
		if _, err := s.Snapshot(ctx, &bytes.Buffer{}); !errors.Is(err, storage.ErrClosed) {
			t.Errorf("Snapshot after Close = %v, want ErrClosed", err)
		}
	}
}

func testCloseTwice(t *testing.T, b storage.Backend) {
	if err := b.Close(); err != nil {
		t.Fatalf("first Close = %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func testApplyCancelled(t *testing.T, b storage.Backend) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := b.Apply(ctx, []storage.Op{put("k", []byte("v")), put("k2", []byte("v"))})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Apply(cancelled ctx) = %v, want context.Canceled", err)
	}
	wantMissing(t, b, "k")
	wantMissing(t, b, "k2")
}

func testSnapshot(t *testing.T, b storage.Backend) {
	s, ok := b.(storage.Snapshotter)
	if !ok {
		t.Skip("backend does not implement storage.Snapshotter")
	}
	mustApply(t, b, put("snap", []byte("v")))
	var buf bytes.Buffer
	n, err := s.Snapshot(context.Background(), &buf)
	if err != nil {
		t.Fatalf("Snapshot = %v", err)
	}
	if n != int64(buf.Len()) || n == 0 {
		t.Errorf("Snapshot reported %d bytes and wrote %d", n, buf.Len())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Snapshot(ctx, &bytes.Buffer{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Snapshot(cancelled ctx) = %v, want context.Canceled", err)
	}
	wantValue(t, b, "snap", []byte("v"))
}
