package raft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	hraft "github.com/hashicorp/raft"
	bbolt "go.etcd.io/bbolt"

	"github.com/coffer-dev/coffer/internal/storage"
	"github.com/coffer-dev/coffer/internal/storage/bolt"
)

func TestEncodeOps(t *testing.T) {
	for name, batches := range map[string][][]storage.Op{
		"one put":                  {{{Key: "a", Value: []byte("1")}}},
		"puts and deletes":         {{{Key: "a", Value: []byte("1")}, {Key: "b", Delete: true}}, {{Key: "c", Value: []byte{}}}},
		"binary keys and values":   {{{Key: "\x00\xff", Value: []byte{0, 1, 2}}}},
		"no ops":                   {},
		"empty batch among others": {{}, {{Key: "x", Value: []byte("y")}}},
	} {
		t.Run(name, func(t *testing.T) {
			var want []storage.Op
			for _, b := range batches {
				for _, op := range b {
					if op.Value == nil && !op.Delete {
						op.Value = []byte{}
					}
					want = append(want, op)
				}
			}
			got, err := decodeOps(encodeOps(batches...))
			if err != nil {
				t.Fatalf("decodeOps = %v", err)
			}
			if len(got) != len(want) {
				t.Fatalf("got %d ops, want %d", len(got), len(want))
			}
			for i := range want {
				if got[i].Key != want[i].Key || got[i].Delete != want[i].Delete || !bytes.Equal(got[i].Value, want[i].Value) {
					t.Errorf("op %d = %+v, want %+v", i, got[i], want[i])
				}
			}
		})
	}
}

func TestDecodeOpsRejects(t *testing.T) {
	good := encodeOps([]storage.Op{{Key: "key", Value: []byte("value")}})
	for name, data := range map[string][]byte{
		"empty":            nil,
		"unknown version":  append([]byte{9}, good[1:]...),
		"truncated":        good[:len(good)-1],
		"trailing bytes":   append(bytes.Clone(good), 0),
		"bad op kind":      {1, 1, 7, 1, 'k'},
		"count too large":  {1, 100, 0, 1, 'k', 0},
		"length too large": {1, 1, 0, 50, 'k'},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeOps(data); !errors.Is(err, ErrBadEntry) {
				t.Errorf("decodeOps(%x) = %v, want ErrBadEntry", data, err)
			}
		})
	}
}

// FuzzDecodeOps: decoding never panics, and what decodes re-encodes to the
// same bytes.
func FuzzDecodeOps(f *testing.F) {
	f.Add(encodeOps([]storage.Op{{Key: "a", Value: []byte("1")}, {Key: "b", Delete: true}}))
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 1, 0, 1, 'k', 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		ops, err := decodeOps(data)
		if err != nil {
			return
		}
		if again := encodeOps(ops); !bytes.Equal(again, data) {
			// Uvarints have non-minimal encodings; compare decoded ops.
			ops2, err := decodeOps(again)
			if err != nil || !reflect.DeepEqual(ops, ops2) {
				t.Fatalf("round trip changed the ops: %v", err)
			}
		}
	})
}

func TestSnapshotHeader(t *testing.T) {
	idx, err := readHeader(bytes.NewReader(header(42)))
	if err != nil || idx != 42 {
		t.Errorf("readHeader(header(42)) = %d, %v", idx, err)
	}
	for _, bad := range [][]byte{nil, []byte("short"), []byte("NOTMAGIC12345678")} {
		if _, err := readHeader(bytes.NewReader(bad)); !errors.Is(err, ErrBadEntry) {
			t.Errorf("readHeader(%q) = %v, want ErrBadEntry", bad, err)
		}
	}
}

// testFSM returns an fsm in a temporary directory holding entries, applied
// as one log entry per op starting at index 1.
func testFSM(t *testing.T, entries map[string][]byte) *fsm {
	t.Helper()
	f := newFSM(t.TempDir(), slog.New(slog.DiscardHandler))
	t.Cleanup(func() { f.store.Close() })
	idx := uint64(0)
	for _, k := range slices.Sorted(maps.Keys(entries)) {
		idx++
		if res := f.Apply(&hraft.Log{Index: idx, Data: encodeOps([]storage.Op{{Key: k, Value: entries[k]}})}); res != nil {
			t.Fatalf("Apply(%d) = %v", idx, res)
		}
	}
	return f
}

// testEntries returns n entries with keys in no particular insertion order,
// binary bytes and empty values among them.
func testEntries(n, valueSize int) map[string][]byte {
	m := map[string][]byte{"\x00\xff": {0, 1, 2}, "empty": {}}
	for i := range n {
		m[fmt.Sprintf("e/%08x/%d", uint32(i)*2654435761, i)] = bytes.Repeat([]byte{byte(i)}, valueSize)
	}
	return m
}

// persist runs the snapshot's Persist into a buffer and returns the index
// in its header and the bolt file after it.
func persist(t *testing.T, s hraft.FSMSnapshot) (uint64, []byte) {
	t.Helper()
	sink := &memSink{}
	if err := s.Persist(sink); err != nil {
		t.Fatalf("Persist = %v", err)
	}
	if !sink.closed {
		t.Fatal("Persist did not close its sink")
	}
	idx, err := readHeader(&sink.buf)
	if err != nil {
		t.Fatal(err)
	}
	return idx, sink.buf.Bytes()
}

type memSink struct {
	buf    bytes.Buffer
	closed bool
}

func (s *memSink) Write(p []byte) (int, error) { return s.buf.Write(p) }
func (s *memSink) Close() error                { s.closed = true; return nil }
func (s *memSink) ID() string                  { return "mem" }
func (s *memSink) Cancel() error               { return nil }

// contents returns every entry of a storage.Backend.
func contents(t *testing.T, b storage.Backend) map[string][]byte {
	t.Helper()
	got := map[string][]byte{}
	if err := b.Scan(context.Background(), "", func(k string, v []byte) error {
		got[k] = bytes.Clone(v)
		return nil
	}); err != nil {
		t.Fatalf("Scan = %v", err)
	}
	return got
}

func wantContents(t *testing.T, what string, got, want map[string][]byte) {
	t.Helper()
	if !maps.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("%s: %d entries differ from the %d expected", what, len(got), len(want))
	}
}

// TestFSMSnapshotIsABoltBackup: the bolt file of a snapshot is one the bolt
// backend restores (the wire format of earlier versions), with every entry,
// and SnapshotSize's estimate is near its real size.
func TestFSMSnapshotIsABoltBackup(t *testing.T) {
	for name, tc := range map[string]struct{ n, valueSize int }{
		"empty":             {0, 0},
		"1000 of 1 KiB":     {1000, 1024},
		"5000 of 100 bytes": {5000, 100},
		"20 of 10 KiB":      {20, 10 << 10},
	} {
		t.Run(name, func(t *testing.T) {
			entries := testEntries(tc.n, tc.valueSize)
			f := testFSM(t, entries)
			s, err := f.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Release()
			estimate := f.snapshotSize()
			idx, file := persist(t, s)
			if want := uint64(len(entries)); idx != want {
				t.Errorf("snapshot index = %d, want %d", idx, want)
			}
			t.Logf("estimate %d, real %d", estimate, headerSize+len(file))
			if real := int64(headerSize + len(file)); estimate < real*3/4 || estimate > real*5/4 {
				t.Errorf("snapshotSize = %d, real size %d: more than 25 %% off", estimate, real)
			}
			bb, err := bolt.Open(bolt.Config{Path: filepath.Join(t.TempDir(), "restored.db"), NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer bb.Close()
			if err := bb.Restore(context.Background(), bytes.NewReader(file)); err != nil {
				t.Fatalf("bolt Restore of the snapshot's file = %v", err)
			}
			wantContents(t, "bolt backend restored from the snapshot", contents(t, bb), entries)
		})
	}
}

// TestFSMSnapshotIsAPointInTime: entries applied after Snapshot (which
// raft runs between applies) are not in what Persist writes later.
func TestFSMSnapshotIsAPointInTime(t *testing.T) {
	entries := testEntries(300, 64)
	f := testFSM(t, entries)
	s, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	next := uint64(len(entries))
	for k := range entries {
		next++
		op := storage.Op{Key: k, Delete: true}
		if len(k)%2 == 0 {
			op = storage.Op{Key: k, Value: []byte("changed")}
		}
		if res := f.Apply(&hraft.Log{Index: next, Data: encodeOps([]storage.Op{op, {Key: k + "/new", Value: []byte("x")}})}); res != nil {
			t.Fatal(res)
		}
	}
	_, file := persist(t, s)
	g := newFSM(t.TempDir(), slog.New(slog.DiscardHandler))
	if err := g.Restore(io.NopCloser(io.MultiReader(bytes.NewReader(header(7)), bytes.NewReader(file)))); err != nil {
		t.Fatalf("Restore = %v", err)
	}
	wantContents(t, "restored snapshot", contents(t, g.store), entries)
	if got := g.appliedIndex(); got != 7 {
		t.Errorf("appliedIndex after Restore = %d, want 7", got)
	}
}

// TestFSMRestoresOldSnapshots: a snapshot written by earlier versions
// (header, then the bolt backend's own Snapshot of its file) restores.
func TestFSMRestoresOldSnapshots(t *testing.T) {
	entries := testEntries(500, 300)
	bb, err := bolt.Open(bolt.Config{Path: filepath.Join(t.TempDir(), "old-fsm.db"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bb.Close()
	for k, v := range entries {
		mustApply(t, bb, storage.Op{Key: k, Value: v})
	}
	var stream bytes.Buffer
	stream.Write(header(500))
	if _, err := bb.Snapshot(context.Background(), &stream); err != nil {
		t.Fatal(err)
	}
	f := testFSM(t, map[string][]byte{"replaced": []byte("by the restore")})
	if err := f.Restore(io.NopCloser(&stream)); err != nil {
		t.Fatalf("Restore(old snapshot) = %v", err)
	}
	wantContents(t, "fsm restored from an old snapshot", contents(t, f.store), entries)
	if got := f.appliedIndex(); got != 500 {
		t.Errorf("appliedIndex = %d, want 500", got)
	}
}

// TestFSMRestoreRejects: a bad stream returns ErrBadEntry and leaves the
// store as it was.
func TestFSMRestoreRejects(t *testing.T) {
	good := testFSM(t, testEntries(50, 10))
	s, err := good.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	_, file := persist(t, s)
	s.Release()
	noBucket := func() []byte {
		path := filepath.Join(t.TempDir(), "other.db")
		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err }); err != nil {
			t.Fatal(err)
		}
		db.Close()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()
	for name, stream := range map[string][]byte{
		"no header":         file,
		"garbage after":     append(header(3), "not a bolt file"...),
		"truncated file":    append(header(3), file[:len(file)/2]...),
		"another bucket":    append(header(3), noBucket...),
		"header, then none": header(3),
	} {
		t.Run(name, func(t *testing.T) {
			want := map[string][]byte{"kept": []byte("v")}
			f := testFSM(t, want)
			if err := f.Restore(io.NopCloser(bytes.NewReader(stream))); !errors.Is(err, ErrBadEntry) {
				t.Errorf("Restore = %v, want ErrBadEntry", err)
			}
			wantContents(t, "store after a refused restore", contents(t, f.store), want)
			if got := f.appliedIndex(); got != 1 {
				t.Errorf("appliedIndex = %d, want 1", got)
			}
			if left, _ := filepath.Glob(filepath.Join(f.dir, tempPrefix+"*")); len(left) != 0 {
				t.Errorf("temporary files left: %q", left)
			}
		})
	}
}
