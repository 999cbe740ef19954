// Package memtree is an ordered in-memory storage.Backend on a copy-on-write
// B-tree (github.com/google/btree), for state that is derived from a durable
// record elsewhere: the raft backend applies its committed log to one, and
// rebuilds it from a snapshot and the log at every start.
//
// Nothing here is durable: Apply returns once its ops are visible in memory,
// and everything is lost at Close or exit.
//
// # Concurrency
//
// One sync.RWMutex guards the tree: Get and Scan hold it for reading, Apply
// for writing, so a reader sees every op of a batch or none. Scan copies
// entries out in chunks (up to 256 entries or 1 MiB each, each read at one
// point in time) and calls its callback with no lock held, so the callback
// may call Get and Apply on the same Tree, as with the bolt backend.
//
// # Snapshots
//
// Clone returns an independent Tree holding the same entries in O(1): the
// two share the B-tree's nodes and copy a node only when one of them writes
// it. Ascend walks a Tree whole in key order (for writing a clone out), and
// Swap moves one Tree's contents into another (for installing a restored
// snapshot). The serialized format belongs to the caller.
//
// Stored values are private copies that are never modified in place, so a
// clone's values stay valid while the original is written.
package memtree

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/google/btree"

	"github.com/coffer-dev/coffer/internal/storage"
)

// DefaultDegree is the B-tree degree used when Config.Degree is zero: nodes
// hold 31 to 63 entries.
const DefaultDegree = 32

const (
	// scanChunkEntries and scanChunkBytes cap what Scan copies out under
	// one read lock.
	scanChunkEntries = 256
	scanChunkBytes   = 1 << 20
)

// ErrInvalidOp is returned by Apply, before anything is changed, for an op
// with an empty key.
var ErrInvalidOp = errors.New("memtree: invalid op")

// Config configures New.
type Config struct {
	// Degree is the B-tree degree (nodes hold Degree-1 to 2×Degree-1
	// entries). Zero: DefaultDegree. Values below 2 are raised to 2.
	Degree int
}

// entry is one key and its value. Trees store entries by value; value is
// never modified after it is stored.
type entry struct {
	key   string
	value []byte
}

func less(a, b entry) bool { return a.key < b.key }

// Tree is a storage.Backend held in memory. It is safe for concurrent use.
// Create it with New.
type Tree struct {
	mu     sync.RWMutex // guards following
	tree   *btree.BTreeG[entry]
	bytes  int64 // sum of the lengths of every key and value
	closed bool
}

// New returns an empty Tree.
func New(cfg Config) *Tree {
	d := cfg.Degree
	switch {
	case d == 0:
		d = DefaultDegree
	case d < 2:
		d = 2
	}
	return &Tree{tree: btree.NewG(d, less)}
}

// Get implements storage.Backend. It returns a copy of the value,
// storage.ErrNotFound for a missing key and storage.ErrClosed after Close.
func (t *Tree) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return nil, storage.ErrClosed
	}
	e, ok := t.tree.Get(entry{key: key})
	if !ok {
		return nil, storage.ErrNotFound
	}
	return bytes.Clone(nonNil(e.value)), nil
}

// Scan implements storage.Backend: fn sees every key with prefix in
// ascending byte order, with a copy of its value, and runs with no lock
// held, so it may call Get and Apply. Each chunk of entries is read at one
// point in time; a long scan may see writes made while it runs. It returns
// storage.ErrClosed if the Tree is closed before or during the scan.
func (t *Tree) Scan(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	after, started := "", false // last key handed to fn
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk, more, err := t.scanChunk(prefix, after, started)
		if err != nil {
			return err
		}
		for _, e := range chunk {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(e.key, e.value); err != nil {
				return err
			}
		}
		if !more || len(chunk) == 0 {
			return nil
		}
		after, started = chunk[len(chunk)-1].key, true
	}
}

// scanChunk copies up to one chunk of entries with prefix whose keys come
// after after (from the first key with prefix when !started). more reports
// that the chunk was cut short by its limits.
func (t *Tree) scanChunk(prefix, after string, started bool) (chunk []entry, more bool, err error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return nil, false, storage.ErrClosed
	}
	from := prefix
	if started {
		from = after
	}
	size := 0
	t.tree.AscendGreaterOrEqual(entry{key: from}, func(e entry) bool {
		if started && e.key == after {
			return true
		}
		if !strings.HasPrefix(e.key, prefix) {
			return false
		}
		if len(chunk) == scanChunkEntries || size >= scanChunkBytes {
			more = true
			return false
		}
		chunk = append(chunk, entry{e.key, bytes.Clone(nonNil(e.value))})
		size += len(e.key) + len(e.value)
		return true
	})
	return chunk, more, nil
}

// Apply implements storage.Backend: it performs ops in order, atomically
// for readers, storing private copies of the values. It returns
// ErrInvalidOp for an empty key and storage.ErrClosed after Close; on any
// error nothing is changed. Nothing is durable.
func (t *Tree) Apply(ctx context.Context, ops []storage.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, op := range ops {
		if op.Key == "" {
			return fmt.Errorf("memtree: apply: op %d: empty key: %w", i, ErrInvalidOp)
		}
	}
	// Copy values before taking the lock: readers wait only for the tree.
	vals := make([][]byte, len(ops))
	for i, op := range ops {
		if !op.Delete {
			vals[i] = bytes.Clone(nonNil(op.Value))
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return storage.ErrClosed
	}
	for i, op := range ops {
		if op.Delete {
			if old, ok := t.tree.Delete(entry{key: op.Key}); ok {
				t.bytes -= int64(len(old.key) + len(old.value))
			}
			continue
		}
		e := entry{op.Key, vals[i]}
		t.bytes += int64(len(e.key) + len(e.value))
		if old, ok := t.tree.ReplaceOrInsert(e); ok {
			t.bytes -= int64(len(old.key) + len(old.value))
		}
	}
	return nil
}

// Close implements storage.Backend: it drops the entries; later calls
// return storage.ErrClosed. It is idempotent. Clones are not affected.
func (t *Tree) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	t.tree = nil
	t.bytes = 0
	return nil
}

// Clone returns a new Tree holding the same entries as t now, in O(1).
// Later writes to either Tree are not seen by the other. It returns
// storage.ErrClosed after Close.
func (t *Tree) Clone() (*Tree, error) {
	// btree's Clone changes t's write context: it is a write.
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, storage.ErrClosed
	}
	return &Tree{tree: t.tree.Clone(), bytes: t.bytes}, nil
}

// Ascend calls fn for every entry in ascending key order, holding t's read
// lock throughout: fn must not call Apply, Swap or Close on t. value is t's
// own copy, valid as long as the Tree holds it and never to be modified.
// Ascend stops and returns the first error fn returns, and
// storage.ErrClosed after Close. It is meant for a private Clone; Scan is
// the shared-use equivalent.
func (t *Tree) Ascend(ctx context.Context, fn func(key string, value []byte) error) error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return storage.ErrClosed
	}
	var err error
	t.tree.Ascend(func(e entry) bool {
		if err = ctx.Err(); err != nil {
			return false
		}
		err = fn(e.key, nonNil(e.value))
		return err == nil
	})
	return err
}

// Len returns the number of entries (0 after Close).
func (t *Tree) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return 0
	}
	return t.tree.Len()
}

// Bytes returns the total length of every key and value (0 after Close).
func (t *Tree) Bytes() int64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.bytes
}

// Swap replaces t's entries with src's and closes src (src's Close then
// does nothing more), so readers of t see either the old entries or the new
// ones, never a mix. It returns storage.ErrClosed if either Tree is closed,
// changing nothing. t and src must differ; Swap locks t then src, so two
// Swaps in opposite directions must not run at once.
func (t *Tree) Swap(src *Tree) error {
	if t == src {
		return errors.New("memtree: swap of a tree with itself")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	src.mu.Lock()
	defer src.mu.Unlock()
	if t.closed || src.closed {
		return storage.ErrClosed
	}
	t.tree, t.bytes = src.tree, src.bytes
	src.tree, src.bytes, src.closed = nil, 0, true
	return nil
}

var empty = []byte{}

// nonNil returns v, or an empty non-nil slice, so that a stored empty value
// reads back as an empty slice, as from the other backends.
func nonNil(v []byte) []byte {
	if v == nil {
		return empty
	}
	return v
}
