// Package storage defines the physical storage contract every backend
// (bolt, inmem, raft) implements, and nothing else.
//
// The physical layer is flat: keys are opaque strings (the barrier above it
// stores entries under keyed hashes of their logical paths), values are
// opaque bytes (already encrypted by the barrier). Writes are expressed as
// data (a list of Ops), never as functions, so that a replicated backend can
// ship them through a log and apply them deterministically on every node.
package storage

import (
	"context"
	"errors"
	"io"
)

// ErrNotFound is returned by Get when the key does not exist.
var ErrNotFound = errors.New("storage: not found")

// ErrClosed is returned by every operation on a closed backend.
var ErrClosed = errors.New("storage: closed")

// Op is one write in an atomic batch: a Put of Value at Key, or, when Delete
// is set, the removal of Key (removing a missing key is not an error).
type Op struct {
	Key    string
	Value  []byte
	Delete bool
}

// Backend is physical storage.
//
// Implementations are safe for concurrent use. Get and Scan see every batch
// whose Apply has returned. Apply is atomic (all of ops or none) and durable
// when it returns nil: a crash after that loses none of it. A backend may
// coalesce concurrent Apply calls into one commit (group commit).
type Backend interface {
	// Get returns the value stored at key, or ErrNotFound.
	// The returned slice belongs to the caller.
	Get(ctx context.Context, key string) ([]byte, error)

	// Scan calls fn for every key with the given prefix, in ascending byte
	// order, with its value. value is only valid during the call. Scan stops
	// and returns the first error fn returns.
	Scan(ctx context.Context, prefix string, fn func(key string, value []byte) error) error

	// Apply performs ops atomically and durably, in order.
	Apply(ctx context.Context, ops []Op) error

	// Close releases the backend. It is idempotent.
	Close() error
}

// Snapshotter is implemented by backends that can write a consistent copy of
// all their data while serving requests, and replace their data from one.
type Snapshotter interface {
	// Snapshot writes a consistent copy of the whole store to w.
	Snapshot(ctx context.Context, w io.Writer) (int64, error)
}
