package userpass

import (
	"sync"
	"time"
)

// Lockout configures the login rate limit. A user (or a client address)
// with Threshold failed logins, each less than CounterReset after the
// previous one, is refused for Duration after the last failure, with a
// RateLimited error carrying the time left. A successful login clears the
// user's count (not the address's). The zero value of each field takes
// its default.
type Lockout struct {
	// Threshold is the number of failures that locks a user; zero: 5. A
	// client address is locked after four times as many.
	Threshold int
	// Duration is how long a lock lasts; zero: 15 minutes.
	Duration time.Duration
	// CounterReset is how long after a failure the count starts again;
	// zero: 15 minutes.
	CounterReset time.Duration
	// Disable turns the limit off.
	Disable bool
}

func (l Lockout) withDefaults() Lockout {
	if l.Threshold <= 0 {
		l.Threshold = 5
	}
	if l.Duration <= 0 {
		l.Duration = 15 * time.Minute
	}
	if l.CounterReset <= 0 {
		l.CounterReset = 15 * time.Minute
	}
	return l
}

// failures is the count for one user or address.
type failures struct {
	n    int
	last time.Time
}

// limiter counts failed logins per key ("u:<user>", "a:<ip>"). It is safe
// for concurrent use. Its memory is bounded by prune, which forgets
// counts that no longer matter.
type limiter struct {
	cfg Lockout

	mu   sync.Mutex // guards following
	seen map[string]*failures
}

func newLimiter(cfg Lockout) *limiter {
	return &limiter{cfg: cfg.withDefaults(), seen: map[string]*failures{}}
}

// maxKeys is the size over which record prunes stale counts first.
const maxKeys = 100_000

// blocked returns how long key stays locked at now for threshold
// failures (zero: not locked).
func (l *limiter) blocked(key string, threshold int, now time.Time) time.Duration {
	if l.cfg.Disable {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.seen[key]
	if f == nil || f.n < threshold {
		return 0
	}
	if left := f.last.Add(l.cfg.Duration).Sub(now); left > 0 {
		return left
	}
	delete(l.seen, key) // the lock is over: start again
	return 0
}

// fail records a failed login for key at now.
func (l *limiter) fail(key string, now time.Time) {
	if l.cfg.Disable {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.seen) >= maxKeys {
		l.pruneLocked(now)
	}
	f := l.seen[key]
	if f == nil || now.Sub(f.last) >= l.cfg.CounterReset {
		f = &failures{}
		l.seen[key] = f
	}
	f.n++
	f.last = now
}

// clear forgets key's failures.
func (l *limiter) clear(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.seen, key)
}

// prune forgets the counts whose lock and counter have both run out.
func (l *limiter) prune(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pruneLocked(now)
}

func (l *limiter) pruneLocked(now time.Time) {
	keep := max(l.cfg.Duration, l.cfg.CounterReset)
	for k, f := range l.seen {
		if now.Sub(f.last) >= keep {
			delete(l.seen, k)
		}
	}
}
