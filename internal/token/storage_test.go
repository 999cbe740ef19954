package token

import (
	"context"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/storage"
	"github.com/coffer-dev/coffer/internal/storage/inmem"
)

// memStorage is a logical.Storage over the real inmem backend with a real
// List, standing in for the barrier until it is committed.
type memStorage struct{ b *inmem.Backend }

func newMemStorage() *memStorage { return &memStorage{b: inmem.New()} }

func (s *memStorage) Get(ctx context.Context, key string) ([]byte, error) {
	return s.b.Get(ctx, key)
}

func (s *memStorage) Put(ctx context.Context, key string, value []byte) error {
	return s.b.Apply(ctx, []storage.Op{{Key: key, Value: value}})
}

func (s *memStorage) Delete(ctx context.Context, key string) error {
	return s.b.Apply(ctx, []storage.Op{{Key: key, Delete: true}})
}

func (s *memStorage) List(ctx context.Context, prefix string) ([]string, error) {
	seen := map[string]bool{}
	err := s.b.Scan(ctx, prefix, func(k string, _ []byte) error {
		rest := strings.TrimPrefix(k, prefix)
		if i := strings.Index(rest, "/"); i >= 0 {
			rest = rest[:i+1]
		}
		seen[rest] = true
		return nil
	})
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, err
}

func (s *memStorage) Apply(ctx context.Context, ops []logical.Op) error {
	p := make([]storage.Op, len(ops))
	for i, op := range ops {
		p[i] = storage.Op{Key: op.Key, Value: op.Value, Delete: op.Delete}
	}
	return s.b.Apply(ctx, p)
}

// keys returns every physical key under prefix.
func (s *memStorage) keys(prefix string) []string {
	var out []string
	s.b.Scan(context.Background(), prefix, func(k string, _ []byte) error {
		out = append(out, k)
		return nil
	})
	return out
}

// counting counts the reads that go through it.
type counting struct {
	logical.Storage
	gets, lists atomic.Int64
}

func (c *counting) Get(ctx context.Context, key string) ([]byte, error) {
	c.gets.Add(1)
	return c.Storage.Get(ctx, key)
}

func (c *counting) List(ctx context.Context, prefix string) ([]string, error) {
	c.lists.Add(1)
	return c.Storage.List(ctx, prefix)
}

// clock is an injected clock that tests move by hand.
type clock struct {
	mu sync.Mutex // guards following
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 11, 28, 0, 2, 28, 548226881, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
