package raft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	hraft "github.com/hashicorp/raft"

	"github.com/coffer-dev/coffer/internal/storage"
	"github.com/coffer-dev/coffer/internal/storage/bolt"
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

// fsm applies committed entries to a local bolt store. The store runs with
// NoSync: raft's log (fsynced) is the durable record and Open rebuilds the
// store from it, so the store never needs to survive a crash itself.
type fsm struct {
	store  *bolt.Backend
	dir    string // for snapshot temporary files
	log    *slog.Logger
	broken atomic.Bool

	mu      sync.Mutex // guards following
	applied uint64
	notify  chan struct{} // closed and replaced when applied grows
}

func newFSM(path, dir string, log *slog.Logger) (*fsm, error) {
	// The store is derived state: start from nothing, raft restores the
	// latest snapshot and replays the log after it.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("raft: remove old local store: %w", err)
	}
	store, err := bolt.Open(bolt.Config{Path: path, NoSync: true, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("raft: local store: %w", err)
	}
	return &fsm{store: store, dir: dir, log: log, notify: make(chan struct{})}, nil
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
// same order; an entry's ops run in one bolt transaction. The response is
// the error (nil on success) handed back to the leader's Apply.
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
// Apply runs meanwhile: it copies the store (a consistent bolt snapshot) to
// a temporary file, which Persist streams while applies continue.
func (f *fsm) Snapshot() (hraft.FSMSnapshot, error) {
	tmp, err := os.CreateTemp(f.dir, "fsm-snapshot-*")
	if err != nil {
		return nil, fmt.Errorf("raft: snapshot: %w", err)
	}
	_, err = f.store.Snapshot(context.Background(), tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("raft: snapshot: %w", err)
	}
	return &fsmSnapshot{path: tmp.Name(), index: f.appliedIndex()}, nil
}

// Restore implements raft.FSM: it replaces the store with a snapshot stream
// (header and bolt file). bolt checks the file before swapping it in.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	idx, err := readHeader(rc)
	if err != nil {
		return err
	}
	if err := f.store.Restore(context.Background(), rc); err != nil {
		return fmt.Errorf("raft: restore snapshot: %w", err)
	}
	f.broken.Store(false)
	f.advance(idx)
	return nil
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

type fsmSnapshot struct {
	path  string
	index uint64
}

func (s *fsmSnapshot) Persist(sink hraft.SnapshotSink) error {
	err := s.write(sink)
	if err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) write(w io.Writer) error {
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("raft: persist snapshot: %w", err)
	}
	defer f.Close()
	if _, err := w.Write(header(s.index)); err != nil {
		return fmt.Errorf("raft: persist snapshot: %w", err)
	}
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("raft: persist snapshot: %w", err)
	}
	return nil
}

func (s *fsmSnapshot) Release() { os.Remove(s.path) }
