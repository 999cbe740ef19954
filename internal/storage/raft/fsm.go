package raft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	hraft "github.com/hashicorp/raft"
	bbolt "go.etcd.io/bbolt"

	"github.com/coffer-dev/coffer/internal/storage"
	"github.com/coffer-dev/coffer/internal/storage/memtree"
)

// ErrBadEntry is returned when a log entry or snapshot is not in this
// package's format.
var ErrBadEntry = errors.New("raft: malformed log entry or snapshot")

// ErrStoreFailed is returned by reads on a node whose local store failed to
// apply a committed entry: its data may differ from the cluster's until it
// is restarted (Open rebuilds the local store from the raft log).
var ErrStoreFailed = errors.New("raft: local store failed to apply a committed entry; restart this node")

const (
	entryVersion = 1

	// snapshotMagic starts every snapshot stream, followed by the applied
	// index (8 bytes, big-endian) and a bolt file.
	snapshotMagic = "CFRSNAP1"
	headerSize    = len(snapshotMagic) + 8
)

// encodeOps encodes a batch of ops as one log entry:
// version byte, uvarint count, then per op a kind byte (0 put, 1 delete),
// uvarint key length, key and, for a put, uvarint value length and value.
func encodeOps(batches ...[]storage.Op) []byte {
	n, size := 0, 1+binary.MaxVarintLen64
	for _, ops := range batches {
		n += len(ops)
		for _, op := range ops {
			size += 1 + 2*binary.MaxVarintLen64 + len(op.Key) + len(op.Value)
		}
	}
	buf := make([]byte, 0, size)
	buf = append(buf, entryVersion)
	buf = binary.AppendUvarint(buf, uint64(n))
	for _, ops := range batches {
		for _, op := range ops {
			if op.Delete {
				buf = append(buf, 1)
				buf = binary.AppendUvarint(buf, uint64(len(op.Key)))
				buf = append(buf, op.Key...)
				continue
			}
			buf = append(buf, 0)
			buf = binary.AppendUvarint(buf, uint64(len(op.Key)))
			buf = append(buf, op.Key...)
			buf = binary.AppendUvarint(buf, uint64(len(op.Value)))
			buf = append(buf, op.Value...)
		}
	}
	return buf
}

// decodeOps is the inverse of encodeOps. Values alias data. It returns
// ErrBadEntry for anything encodeOps cannot produce.
func decodeOps(data []byte) ([]storage.Op, error) {
	if len(data) == 0 || data[0] != entryVersion {
		return nil, fmt.Errorf("%w: unknown version", ErrBadEntry)
	}
	data = data[1:]
	n, k := binary.Uvarint(data)
	if k <= 0 || n > uint64(len(data)) { // every op takes at least 2 bytes
		return nil, fmt.Errorf("%w: bad op count", ErrBadEntry)
	}
	data = data[k:]
	field := func() ([]byte, error) {
		l, k := binary.Uvarint(data)
		if k <= 0 || l > uint64(len(data)-k) {
			return nil, fmt.Errorf("%w: bad length", ErrBadEntry)
		}
		f := data[k : k+int(l) : k+int(l)]
		data = data[k+int(l):]
		return f, nil
	}
	ops := make([]storage.Op, 0, n)
	for range n {
		if len(data) == 0 {
			return nil, fmt.Errorf("%w: truncated", ErrBadEntry)
		}
		kind := data[0]
		data = data[1:]
		if kind > 1 {
			return nil, fmt.Errorf("%w: bad op kind", ErrBadEntry)
		}
		key, err := field()
		if err != nil {
			return nil, err
		}
		op := storage.Op{Key: string(key), Delete: kind == 1}
		if !op.Delete {
			if op.Value, err = field(); err != nil {
				return nil, err
			}
		}
		ops = append(ops, op)
	}
	if len(data) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes", ErrBadEntry)
	}
	return ops, nil
}

// fsm applies committed entries to a local in-memory store
// (internal/storage/memtree). The store is derived state: raft's fsynced log
// and snapshots are the durable record, and at every start raft rebuilds the
// store from the latest snapshot and the log after it.
type fsm struct {
	store  *memtree.Tree
	dir    string // for snapshot temporary files
	log    *slog.Logger
	broken atomic.Bool

	mu      sync.Mutex // guards following
	applied uint64
	notify  chan struct{} // closed and replaced when applied grows
}

// legacyStore is the bolt file earlier versions kept the local store in;
// newFSM removes it.
const legacyStore = "fsm.db"

// tempPrefix names the temporary files of snapshots and restores in the
// data directory; Open removes any a crash left behind.
const tempPrefix = "fsm-snapshot-"

func newFSM(dir string, log *slog.Logger) *fsm {
	if err := os.Remove(filepath.Join(dir, legacyStore)); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Warn("raft: could not remove the old local store file", "path", filepath.Join(dir, legacyStore), "err", err)
	}
	return &fsm{store: memtree.New(memtree.Config{}), dir: dir, log: log, notify: make(chan struct{})}
}

func (f *fsm) appliedIndex() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

// advance raises the applied index to idx (never lowers it) and wakes
// waiters.
func (f *fsm) advance(idx uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if idx <= f.applied {
		return
	}
	f.applied = idx
	close(f.notify)
	f.notify = make(chan struct{})
}

// wait blocks until the applied index reaches idx, ctx is done or stop is
// closed.
func (f *fsm) wait(ctx context.Context, idx uint64, stop <-chan struct{}) error {
	for {
		f.mu.Lock()
		applied, ch := f.applied, f.notify
		f.mu.Unlock()
		if applied >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return storage.ErrClosed
		}
	}
}

// Apply implements raft.FSM. Every node applies the same entries in the
// same order; an entry's ops are applied atomically (readers see all or
// none). The response is the error (nil on success) handed back to the
// leader's Apply.
func (f *fsm) Apply(l *hraft.Log) any {
	defer f.advance(l.Index)
	ops, err := decodeOps(l.Data)
	if err != nil {
		f.log.Error("raft: skipping malformed log entry", "index", l.Index, "err", err)
		return err
	}
	if err := f.store.Apply(context.Background(), ops); err != nil {
		f.broken.Store(true)
		f.log.Error("raft: local store failed to apply a committed entry; this node must be restarted", "index", l.Index, "err", err)
		return fmt.Errorf("raft: apply entry %d: %w", l.Index, err)
	}
	return nil
}

// Snapshot implements raft.FSM. It runs on raft's FSM goroutine, so no
// Apply runs meanwhile: it takes an O(1) copy-on-write clone of the store,
// which Persist writes out while applies continue.
func (f *fsm) Snapshot() (hraft.FSMSnapshot, error) {
	clone, err := f.store.Clone()
	if err != nil {
		return nil, fmt.Errorf("raft: snapshot: %w", err)
	}
	return &fsmSnapshot{tree: clone, dir: f.dir, index: f.appliedIndex()}, nil
}

// snapshotSize estimates the bytes of a snapshot of the store now (header
// and bolt file), for a progress bar.
func (f *fsm) snapshotSize() int64 {
	return int64(headerSize) + boltSizeEstimate(f.store.Len(), f.store.Bytes())
}

// boltSizeEstimate estimates the size of the bolt file writeBolt makes from
// n entries whose keys and values add up to size bytes: bolt's 16-byte
// element header per entry, leaf pages ~80 % full (whole entries per page),
// and six pages of metadata, freelist and branches. Measured within 10-20 %
// for values of 100 bytes to 10 KiB.
func boltSizeEstimate(n int, size int64) int64 {
	const page = 4096
	data := (size + 16*int64(n)) * 6 / 5
	return (data/page + 6) * page
}

// Restore implements raft.FSM: it replaces the store with a snapshot stream
// (header and bolt file). The stream is copied to a temporary file, read
// whole into a new tree and only then swapped in, so a bad stream
// (ErrBadEntry) leaves the store as it was.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	idx, err := readHeader(rc)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(f.dir, tempPrefix+"restore-*")
	if err != nil {
		return fmt.Errorf("raft: restore snapshot: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, rc)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("raft: restore snapshot: %w", err)
	}
	tree, err := readBolt(tmp.Name())
	if err != nil {
		return fmt.Errorf("raft: restore snapshot: %w", err)
	}
	if err := f.store.Swap(tree); err != nil {
		return fmt.Errorf("raft: restore snapshot: %w", err)
	}
	f.broken.Store(false)
	f.advance(idx)
	f.log.Debug("raft: restored snapshot into the local store", "index", idx)
	return nil
}

// snapshotBucket is the one bucket of a snapshot's bolt file. It is the
// bolt backend's own bucket, so that a snapshot is a file that backend
// opens and restores, and a backup of that backend restores onto raft.
var snapshotBucket = []byte("coffer")

// writeBolt writes every entry of tree, in key order, into a new bolt file
// at path (one transaction, pages filled completely: keys arrive in order,
// so nothing is inserted later; no fsync), then writes pre and a copy of
// that file to w. The copy holds only the file's used pages (bolt's
// Tx.WriteTo, as the bolt backend's Snapshot), not the space bolt
// preallocates.
func writeBolt(ctx context.Context, path string, tree *memtree.Tree, pre []byte, w io.Writer) error {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, NoSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		return err
	}
	defer db.Close()
	err = db.Update(func(tx *bbolt.Tx) error {
		bk, err := tx.CreateBucket(snapshotBucket)
		if err != nil {
			return err
		}
		bk.FillPercent = 1.0
		// bolt keeps value slices until the commit: tree's values are never
		// modified, and tree is not written while it is being persisted.
		return tree.Ascend(ctx, func(key string, value []byte) error {
			return bk.Put([]byte(key), value)
		})
	})
	if err != nil {
		return err
	}
	if _, err := w.Write(pre); err != nil {
		return err
	}
	err = db.View(func(tx *bbolt.Tx) error {
		_, err := tx.WriteTo(w)
		return err
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

// readBolt reads the bolt file at path into a new tree. A file that is not
// a bolt file, has no snapshot bucket, or faults while read returns an
// error wrapping ErrBadEntry.
func readBolt(path string) (tree *memtree.Tree, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			// bolt's panics name pages and flags, never keys or values.
			err = fmt.Errorf("%w: damaged bolt file: %v", ErrBadEntry, r)
		}
	}()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("%w: not a bolt file: %w", ErrBadEntry, err)
	}
	defer db.Close()
	tree = memtree.New(memtree.Config{})
	err = db.View(func(tx *bbolt.Tx) error {
		bk := tx.Bucket(snapshotBucket)
		if bk == nil {
			return fmt.Errorf("%w: no %q bucket", ErrBadEntry, snapshotBucket)
		}
		const chunk = 1024
		ops := make([]storage.Op, 0, chunk)
		flush := func() error {
			err := tree.Apply(context.Background(), ops) // copies the values out of the file
			ops = ops[:0]
			return err
		}
		if err := bk.ForEach(func(k, v []byte) error {
			if v == nil {
				return fmt.Errorf("%w: nested bucket", ErrBadEntry)
			}
			ops = append(ops, storage.Op{Key: string(k), Value: v})
			if len(ops) == chunk {
				return flush()
			}
			return nil
		}); err != nil {
			return err
		}
		return flush()
	})
	if err != nil {
		return nil, err
	}
	return tree, nil
}

func readHeader(r io.Reader) (uint64, error) {
	var hdr [headerSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, fmt.Errorf("%w: snapshot header: %w", ErrBadEntry, err)
	}
	if string(hdr[:len(snapshotMagic)]) != snapshotMagic {
		return 0, fmt.Errorf("%w: not a Coffer raft snapshot", ErrBadEntry)
	}
	return binary.BigEndian.Uint64(hdr[len(snapshotMagic):]), nil
}

func header(idx uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(snapshotMagic), idx)
}

// fsmSnapshot is a clone of the store at index, written out by Persist.
type fsmSnapshot struct {
	tree  *memtree.Tree
	dir   string
	index uint64
}

// Persist implements raft.FSMSnapshot: header, then the clone as a bolt
// file.
func (s *fsmSnapshot) Persist(sink hraft.SnapshotSink) error {
	err := s.write(sink)
	if err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

// write streams the snapshot (header and bolt file) to w, through a
// temporary bolt file in s.dir that it removes.
func (s *fsmSnapshot) write(w io.Writer) error {
	tmp, err := os.CreateTemp(s.dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("raft: persist snapshot: %w", err)
	}
	path := tmp.Name()
	tmp.Close() // empty: bolt initializes it
	defer os.Remove(path)
	if err := writeBolt(context.Background(), path, s.tree, header(s.index), w); err != nil {
		return fmt.Errorf("raft: persist snapshot: %w", err)
	}
	return nil
}

// Release implements raft.FSMSnapshot: it drops the clone.
func (s *fsmSnapshot) Release() { s.tree.Close() }
