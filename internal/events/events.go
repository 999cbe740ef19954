// Package events is the server's event bus: engines' writes become events
// that subscribers (the operator, agents) receive at once instead of
// polling. It carries names and versions, never secret values.
//
// Publish never blocks: each subscriber has a bounded buffer, and one that
// falls behind loses events (counted in Dropped) rather than slowing the
// writer; a subscriber that sees a gap resyncs, as it would after a
// reconnect.
package events

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Event is one change. Metadata holds Vault's event metadata (path,
// data_path, version, operation, ...), all strings.
type Event struct {
	ID       string
	Type     string // "kv-v2/data-write"
	Time     time.Time
	Metadata map[string]string
	// Plugin info.
	MountPath     string
	MountAccessor string
	MountClass    string // "secret" or "auth"
	Plugin        string // "kv"
	// DataPath is the path a subscriber must be able to read to see the
	// event ("secret/data/app").
	DataPath string
}

// Bus fans events out to subscribers. It is safe for concurrent use.
type Bus struct {
	buffer int

	mu   sync.RWMutex // guards following
	subs map[*Subscription]struct{}
}

// New returns a bus whose subscribers buffer up to buffer events each
// (0: 256).
func New(buffer int) *Bus {
	if buffer <= 0 {
		buffer = 256
	}
	return &Bus{buffer: buffer, subs: make(map[*Subscription]struct{})}
}

// Subscription receives the events whose type matches its pattern and
// that its filter allows.
type Subscription struct {
	// C delivers events; it is closed by Close.
	C       <-chan Event
	c       chan Event
	pattern string
	filter  func(Event) bool
	bus     *Bus
	once    sync.Once
	dropped atomic.Int64
}

// Subscribe returns a subscription to the event types matching pattern,
// where "*" matches any run of characters ("kv*", "kv-v2/data-*", "*").
// filter, if not nil, decides per event (e.g. "may this token read the
// event's data path"); it must be fast and must not block.
func (b *Bus) Subscribe(pattern string, filter func(Event) bool) *Subscription {
	c := make(chan Event, b.buffer)
	s := &Subscription{C: c, c: c, pattern: pattern, filter: filter, bus: b}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Close ends the subscription and closes C. It is idempotent.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.bus.mu.Lock()
		delete(s.bus.subs, s)
		close(s.c)
		s.bus.mu.Unlock()
	})
}

// Dropped counts the events this subscriber lost because it fell behind.
func (s *Subscription) Dropped() int64 { return s.dropped.Load() }

// Publish sends e to every matching subscriber without blocking.
func (b *Bus) Publish(e Event) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for s := range b.subs {
		if !Match(s.pattern, e.Type) || (s.filter != nil && !s.filter(e)) {
			continue
		}
		select {
		case s.c <- e:
		default:
			s.dropped.Add(1)
		}
	}
}

// Subscribers returns the number of open subscriptions.
func (b *Bus) Subscribers() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.subs)
}

// Match reports whether s matches pattern, where "*" matches any run of
// characters (including "/") and everything else matches itself.
func Match(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, last)
}
