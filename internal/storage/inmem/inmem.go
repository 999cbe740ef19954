// Package inmem is a storage.Backend held in memory, for --dev servers and
// tests. It loses everything when the process exits.
package inmem

import (
	"context"
	"sort"
	"strings"
	"sync"

	"github.com/coffer-dev/coffer/internal/storage"
)

// Backend is an in-memory storage.Backend. The zero value is not usable;
// call New.
type Backend struct {
	mu     sync.RWMutex // guards following
	data   map[string][]byte
	closed bool
}

// New returns an empty in-memory backend.
func New() *Backend {
	return &Backend{data: make(map[string][]byte)}
}

// Get implements storage.Backend.
func (b *Backend) Get(ctx context.Context, key string) ([]byte, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return nil, storage.ErrClosed
	}
	v, ok := b.data[key]
	if !ok {
		return nil, storage.ErrNotFound
	}
	return append([]byte(nil), v...), nil
}

// Scan implements storage.Backend.
func (b *Backend) Scan(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return storage.ErrClosed
	}
	type kv struct {
		k string
		v []byte
	}
	var found []kv
	for k, v := range b.data {
		if strings.HasPrefix(k, prefix) {
			found = append(found, kv{k, v})
		}
	}
	b.mu.RUnlock()
	sort.Slice(found, func(i, j int) bool { return found[i].k < found[j].k })
	for _, e := range found {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(e.k, e.v); err != nil {
			return err
		}
	}
	return nil
}

// Apply implements storage.Backend.
func (b *Backend) Apply(ctx context.Context, ops []storage.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return storage.ErrClosed
	}
	for _, op := range ops {
		if op.Delete {
			delete(b.data, op.Key)
			continue
		}
		b.data[op.Key] = append([]byte(nil), op.Value...)
	}
	return nil
}

// Close implements storage.Backend.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}
