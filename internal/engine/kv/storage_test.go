package kv

import (
	"context"
	"sort"
	"strings"

	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/storage"
	"github.com/coffer-dev/coffer/internal/storage/inmem"
)

// physStorage is a logical.Storage straight over a real physical backend,
// with List computed from a Scan of the prefix. It stands in for the
// barrier (which adds encryption and hashed names) until that lands.
type physStorage struct {
	b storage.Backend
}

func newTestStorage() logical.Storage { return physStorage{b: inmem.New()} }

func (s physStorage) Get(ctx context.Context, key string) ([]byte, error) {
	return s.b.Get(ctx, key)
}

func (s physStorage) Put(ctx context.Context, key string, value []byte) error {
	return s.b.Apply(ctx, []storage.Op{{Key: key, Value: value}})
}

func (s physStorage) Delete(ctx context.Context, key string) error {
	return s.b.Apply(ctx, []storage.Op{{Key: key, Delete: true}})
}

func (s physStorage) List(ctx context.Context, prefix string) ([]string, error) {
	seen := map[string]bool{}
	err := s.b.Scan(ctx, prefix, func(key string, _ []byte) error {
		rest := strings.TrimPrefix(key, prefix)
		if i := strings.Index(rest, "/"); i >= 0 {
			rest = rest[:i+1]
		}
		seen[rest] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, nil
}

func (s physStorage) Apply(ctx context.Context, ops []logical.Op) error {
	p := make([]storage.Op, len(ops))
	for i, op := range ops {
		p[i] = storage.Op{Key: op.Key, Value: op.Value, Delete: op.Delete}
	}
	return s.b.Apply(ctx, p)
}
