package lease

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// The fixtures' storage is the real barrier over inmem
// (barriertest.Storage); counting wraps it to count reads.

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
