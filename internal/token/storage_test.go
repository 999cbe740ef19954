package token

import (
	"sync"
	"time"
)

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
