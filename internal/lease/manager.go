package lease

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// RevokeFunc revokes what a lease stands for (deletes a token, drops a
// database user). It must be idempotent: it may be called again for a lease
// it already revoked (after a crash, or when Revoke and the expiry loop
// race), and must then return nil. An error means "try again later"; it is
// logged, so it must not contain secret values.
type RevokeFunc = func(ctx context.Context, l *Lease) error

// Config configures a Manager.
type Config struct {
	// Storage is the manager's own view (e.g. "sys/expire/"). Required.
	Storage logical.Storage
	// Now is the clock. nil: time.Now.
	Now func() time.Time
	// Logger receives revocation failures. nil: discard.
	Logger *slog.Logger
	// Revokers maps a Lease.Kind to the function that revokes it. Register
	// refuses a Kind that has none. The map is copied.
	Revokers map[string]func(ctx context.Context, l *Lease) error
	// PollInterval bounds how long Run sleeps without looking at the clock
	// again (it also notices clock jumps this way). Zero: one minute.
	PollInterval time.Duration
	// MinBackoff is the first retry delay after a failed revocation; it
	// doubles on each failure. Zero: one second.
	MinBackoff time.Duration
	// MaxBackoff caps the retry delay. Zero: five minutes.
	MaxBackoff time.Duration
}

// Manager tracks and revokes leases. It is safe for concurrent use.
type Manager struct {
	store      logical.Storage
	now        func() time.Time
	log        *slog.Logger
	revokers   map[string]RevokeFunc
	poll       time.Duration
	minBackoff time.Duration
	maxBackoff time.Duration
	wake       chan struct{}

	// mu guards following. It is held while an index bucket is loaded, so
	// that a Register racing with the load is either seen by the load or
	// sees the advanced loaded mark (see note).
	mu sync.Mutex
	// scanned reports that nextBucket is accurate.
	scanned bool
	// loaded: every index bucket that starts before it is in pending.
	loaded time.Time
	// nextBucket is a lower bound of the first index bucket at or after
	// loaded; zero when there is none.
	nextBucket time.Time
	// pending maps the hash of each lease known in memory to its expiry;
	// queue items that disagree with it are stale and skipped.
	pending  map[string]time.Time
	queue    queue
	inflight map[string]bool
	failures map[string]int
}

// New returns a Manager over cfg.Storage. It reads nothing from storage:
// the expiry index is loaded lazily by Run and RevokeDue.
func New(cfg Config) (*Manager, error) {
	if cfg.Storage == nil {
		return nil, errors.New("lease: Config.Storage is required")
	}
	m := &Manager{
		store:      cfg.Storage,
		now:        cfg.Now,
		log:        logger(cfg.Logger),
		revokers:   make(map[string]RevokeFunc, len(cfg.Revokers)),
		poll:       cfg.PollInterval,
		minBackoff: cfg.MinBackoff,
		maxBackoff: cfg.MaxBackoff,
		wake:       make(chan struct{}, 1),
		pending:    make(map[string]time.Time),
		inflight:   make(map[string]bool),
		failures:   make(map[string]int),
	}
	for k, fn := range cfg.Revokers {
		if fn == nil {
			return nil, fmt.Errorf("lease: nil revoker for kind %q", k)
		}
		m.revokers[k] = fn
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.poll <= 0 {
		m.poll = time.Minute
	}
	if m.minBackoff <= 0 {
		m.minBackoff = time.Second
	}
	if m.maxBackoff <= 0 {
		m.maxBackoff = 5 * time.Minute
	}
	if m.maxBackoff < m.minBackoff {
		m.maxBackoff = m.minBackoff
	}
	return m, nil
}

// Register stores a new lease and schedules its expiry. It fills in a zero
// IssueTime with the current time. It returns an error wrapping ErrInvalid
// for a lease without ID or Path, of a Kind without revoker, or whose ID is
// already registered (use Renew to move an existing lease).
func (m *Manager) Register(ctx context.Context, l *Lease) error {
	if l == nil || l.ID == "" || cleanPath(l.Path) == "" {
		return fmt.Errorf("%w: ID and Path are required", ErrInvalid)
	}
	if _, ok := m.revokers[l.Kind]; !ok {
		return fmt.Errorf("%w: no revoker for kind %q", ErrInvalid, l.Kind)
	}
	h := hashID(l.ID)
	if _, err := m.store.Get(ctx, entryKey(h)); err == nil {
		return fmt.Errorf("%w: lease %q already registered", ErrInvalid, l.ID)
	} else if !errors.Is(err, logical.ErrNotFound) {
		return fmt.Errorf("lease: register %q: %w", l.ID, err)
	}
	if l.IssueTime.IsZero() {
		l.IssueTime = m.now()
	}
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("lease: register %q: %w", l.ID, err)
	}
	if err := m.store.Apply(ctx, opsFor(l, b)); err != nil {
		return fmt.Errorf("lease: register %q: %w", l.ID, err)
	}
	m.note(h, l.ExpireTime)
	return nil
}

// Lookup returns the lease with the given ID, or ErrNotFound.
func (m *Manager) Lookup(ctx context.Context, id string) (*Lease, error) {
	return m.get(ctx, hashID(id))
}

func (m *Manager) get(ctx context.Context, h string) (*Lease, error) {
	b, err := m.store.Get(ctx, entryKey(h))
	if errors.Is(err, logical.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("lease: get: %w", err)
	}
	var l Lease
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("lease: decode entry: %w", err)
	}
	return &l, nil
}

// Renew moves the lease's expiry to newExpire (zero: never) and records
// the renewal time. The entry and its index entries change in one atomic
// Apply. It returns ErrNotFound for an unknown lease. Renew does not apply
// any TTL policy: the owner computes newExpire.
func (m *Manager) Renew(ctx context.Context, id string, newExpire time.Time) error {
	l, err := m.Lookup(ctx, id)
	if err != nil {
		return err
	}
	h := hashID(id)
	var ops []logical.Op
	if !l.ExpireTime.IsZero() {
		ops = append(ops, logical.Op{Key: expireKey(l.ExpireTime, h), Delete: true})
	}
	l.ExpireTime = newExpire
	l.LastRenewal = m.now()
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("lease: renew %q: %w", id, err)
	}
	ops = append(ops, opsFor(l, b)...)
	if err := m.store.Apply(ctx, ops); err != nil {
		return fmt.Errorf("lease: renew %q: %w", id, err)
	}
	m.note(h, newExpire)
	return nil
}

// Revoke calls the lease's revoker and, if it succeeds, deletes the lease
// and its index entries atomically. It returns ErrNotFound for an unknown
// lease and the revoker's error (wrapped) if that fails, leaving the lease
// in place.
func (m *Manager) Revoke(ctx context.Context, id string) error {
	l, err := m.Lookup(ctx, id)
	if err != nil {
		return err
	}
	return m.revoke(ctx, l)
}

func (m *Manager) revoke(ctx context.Context, l *Lease) error {
	fn, ok := m.revokers[l.Kind]
	if !ok {
		return fmt.Errorf("lease: revoke %q: no revoker for kind %q", l.ID, l.Kind)
	}
	if err := fn(ctx, l); err != nil {
		return fmt.Errorf("lease: revoke %q: %w", l.ID, err)
	}
	return m.remove(ctx, l)
}

// remove deletes l and its index entries and forgets it in memory.
func (m *Manager) remove(ctx context.Context, l *Lease) error {
	if err := m.store.Apply(ctx, deleteOps(l)); err != nil {
		return fmt.Errorf("lease: delete %q: %w", l.ID, err)
	}
	h := hashID(l.ID)
	m.mu.Lock()
	delete(m.pending, h)
	delete(m.failures, h)
	m.mu.Unlock()
	return nil
}

// Forget deletes a lease without calling its revoker, for an owner that
// revoked what it stands for itself (e.g. a token revoked through the
// API). Forgetting an unknown lease is not an error.
func (m *Manager) Forget(ctx context.Context, id string) error {
	l, err := m.Lookup(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return m.remove(ctx, l)
}

// RevokePrefix revokes every lease whose Path is prefix or lies under it,
// segment by segment ("aws/creds" matches "aws/creds/ro", not
// "aws/credsx"). An empty prefix is refused. It stops at the first
// failure and returns it; leases revoked before stay revoked.
func (m *Manager) RevokePrefix(ctx context.Context, prefix string) error {
	p := cleanPath(prefix)
	if p == "" {
		return fmt.Errorf("%w: empty prefix", ErrInvalid)
	}
	return m.walk(ctx, pathPrefix+p+"/", func(h string) error {
		l, err := m.get(ctx, h)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return m.revoke(ctx, l)
	})
}

// walk calls fn with every lease hash under the path index folder dir.
func (m *Manager) walk(ctx context.Context, dir string, fn func(h string) error) error {
	keys, err := m.store.List(ctx, dir)
	if err != nil {
		return fmt.Errorf("lease: list: %w", err)
	}
	for _, k := range keys {
		if strings.HasSuffix(k, "/") {
			if err := m.walk(ctx, dir+k, fn); err != nil {
				return err
			}
			continue
		}
		if err := fn(k); err != nil {
			return err
		}
	}
	return nil
}

// note updates the in-memory schedule after lease h was stored with the
// given expiry, and wakes Run.
func (m *Manager) note(h string, expire time.Time) {
	m.mu.Lock()
	switch {
	case expire.IsZero():
		delete(m.pending, h)
	case bucketStart(expire).Before(m.loaded):
		m.pending[h] = expire
		heap.Push(&m.queue, item{h: h, due: expire, expire: expire})
	default:
		// In storage only, to be loaded with its bucket.
		delete(m.pending, h)
		if m.scanned && (m.nextBucket.IsZero() || bucketStart(expire).Before(m.nextBucket)) {
			m.nextBucket = bucketStart(expire)
		}
	}
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// loadLocked brings every index bucket that starts at or before t into
// pending. It reads nothing when the next bucket is known to start later.
func (m *Manager) loadLocked(ctx context.Context, t time.Time) error {
	if m.scanned && (m.nextBucket.IsZero() || m.nextBucket.After(t)) {
		return nil
	}
	m.scanned = false
	hours, err := m.store.List(ctx, expirePrefix)
	if err != nil {
		return fmt.Errorf("lease: list expiry index: %w", err)
	}
	through := bucketStart(t).Add(time.Minute)
	for _, hn := range hours {
		hs, err := time.ParseInLocation(hourLayout, strings.TrimSuffix(hn, "/"), time.UTC)
		if err != nil || !strings.HasSuffix(hn, "/") {
			m.log.Warn("lease: skipping malformed expiry index entry", "key", hn)
			continue
		}
		if !hs.Add(time.Hour).After(m.loaded) {
			continue // loaded already
		}
		if hs.After(t) {
			m.nextBucket, m.scanned = hs, true
			m.loaded = maxTime(m.loaded, through)
			return nil
		}
		minutes, err := m.store.List(ctx, expirePrefix+hn)
		if err != nil {
			return fmt.Errorf("lease: list expiry index: %w", err)
		}
		for _, mn := range minutes {
			mm, err := strconv.Atoi(strings.TrimSuffix(mn, "/"))
			if err != nil || mm < 0 || mm > 59 || !strings.HasSuffix(mn, "/") {
				m.log.Warn("lease: skipping malformed expiry index entry", "key", hn+mn)
				continue
			}
			ms := hs.Add(time.Duration(mm) * time.Minute)
			if ms.Before(m.loaded) {
				continue
			}
			if ms.After(t) {
				m.nextBucket, m.scanned = ms, true
				m.loaded = maxTime(m.loaded, through)
				return nil
			}
			names, err := m.store.List(ctx, expirePrefix+hn+mn)
			if err != nil {
				return fmt.Errorf("lease: list expiry index: %w", err)
			}
			for _, n := range names {
				exp, h, ok := parseIndexName(ms, n)
				if !ok {
					m.log.Warn("lease: skipping malformed expiry index entry", "key", hn+mn+n)
					continue
				}
				m.pending[h] = exp
				heap.Push(&m.queue, item{h: h, due: exp, expire: exp})
			}
			m.loaded = ms.Add(time.Minute)
		}
	}
	m.nextBucket, m.scanned = time.Time{}, true
	m.loaded = maxTime(m.loaded, through)
	return nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// RevokeDue revokes, in expiry order, every lease due by now, and returns
// how many it revoked. A lease whose revoker fails is scheduled again with
// back-off; its failure is logged, not returned. The error reports a
// storage failure while reading the expiry index. Run calls RevokeDue; it
// is exported for the core's tests and for a manual sweep.
func (m *Manager) RevokeDue(ctx context.Context) (int, error) {
	now := m.now()
	m.mu.Lock()
	loadErr := m.loadLocked(ctx, now)
	var due []item
	for len(m.queue) > 0 && !m.queue[0].due.After(now) {
		it := heap.Pop(&m.queue).(item)
		if exp, ok := m.pending[it.h]; !ok || !exp.Equal(it.expire) || m.inflight[it.h] {
			continue
		}
		m.inflight[it.h] = true
		due = append(due, it)
	}
	m.mu.Unlock()

	n := 0
	for i, it := range due {
		if ctx.Err() != nil {
			m.mu.Lock()
			for _, rest := range due[i:] {
				delete(m.inflight, rest.h)
				heap.Push(&m.queue, rest)
			}
			m.mu.Unlock()
			break
		}
		if m.expire(ctx, it, now) {
			n++
		}
	}
	return n, loadErr
}

// expire revokes the lease of a due queue item, or schedules a retry.
func (m *Manager) expire(ctx context.Context, it item, now time.Time) bool {
	defer func() {
		m.mu.Lock()
		delete(m.inflight, it.h)
		m.mu.Unlock()
	}()
	l, err := m.get(ctx, it.h)
	if errors.Is(err, ErrNotFound) {
		// Revoked meanwhile; drop a stale index entry if one is left.
		if err := m.store.Delete(ctx, expireKey(it.expire, it.h)); err != nil {
			m.retry(it, err, "", "")
			return false
		}
		m.mu.Lock()
		if exp, ok := m.pending[it.h]; ok && exp.Equal(it.expire) {
			delete(m.pending, it.h)
		}
		m.mu.Unlock()
		return false
	}
	if err != nil {
		m.retry(it, err, "", "")
		return false
	}
	if l.ExpireTime.IsZero() || l.ExpireTime.After(now) {
		return false // renewed meanwhile; Renew rescheduled it
	}
	if err := m.revoke(ctx, l); err != nil {
		m.retry(it, err, l.ID, l.Kind)
		return false
	}
	return true
}

// retry schedules it again after a back-off and logs the failure.
func (m *Manager) retry(it item, err error, id, kind string) {
	m.mu.Lock()
	m.failures[it.h]++
	n := m.failures[it.h]
	d := m.minBackoff
	for i := 1; i < n && d < m.maxBackoff; i++ {
		d *= 2
	}
	d = min(d, m.maxBackoff)
	heap.Push(&m.queue, item{h: it.h, due: m.now().Add(d), expire: it.expire})
	m.mu.Unlock()
	level := slog.LevelWarn
	if n >= 6 {
		level = slog.LevelError
	}
	// err comes from storage or a revoker, neither of which puts secret
	// values in errors (see RevokeFunc).
	m.log.Log(context.Background(), level, "lease: revocation failed; will retry",
		"lease_id", id, "lease_hash", it.h, "kind", kind, "attempts", n, "retry_in", d, "error", err)
}

// nextDue returns when Run should next call RevokeDue.
func (m *Manager) nextDue() (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.scanned {
		return m.now(), true
	}
	var next time.Time
	if len(m.queue) > 0 {
		next = m.queue[0].due
	}
	if !m.nextBucket.IsZero() && (next.IsZero() || m.nextBucket.Before(next)) {
		next = m.nextBucket
	}
	return next, !next.IsZero()
}

// Run is the expiry loop: it revokes leases as they come due, until ctx is
// done, and then returns nil. It sleeps until the earliest known due time,
// a Register or Renew that brings an earlier one, or PollInterval,
// whichever comes first. Storage errors are logged and retried after
// MinBackoff. Run at most once per Manager at a time.
func (m *Manager) Run(ctx context.Context) error {
	for {
		wait := m.poll
		if _, err := m.RevokeDue(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			m.log.Warn("lease: expiry pass failed; will retry", "error", err)
			wait = m.minBackoff
		} else if next, ok := m.nextDue(); ok {
			wait = min(wait, max(next.Sub(m.now()), 0))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-m.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// item is a scheduled expiry (or retry) of the lease with hash h.
type item struct {
	h      string
	due    time.Time
	expire time.Time
}

// queue is a min-heap of items by due time.
type queue []item

func (q queue) Len() int           { return len(q) }
func (q queue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q queue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)        { *q = append(*q, x.(item)) }
func (q *queue) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}

// List returns what lies directly under prefix (a lease path ending in
// "/", or ""), as Vault's LIST sys/leases/lookup/<prefix> does: folders end
// in "/", and a lease issued at exactly that path is listed by the rest of
// its ID after prefix. The result is sorted.
func (m *Manager) List(ctx context.Context, prefix string) ([]string, error) {
	dir := pathPrefix
	if p := cleanPath(prefix); p != "" {
		dir += p + "/"
	}
	keys, err := m.store.List(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("lease: list: %w", err)
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if strings.HasSuffix(k, "/") {
			out = append(out, k)
			continue
		}
		l, err := m.get(ctx, k)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, strings.TrimPrefix(l.ID, strings.TrimSuffix(prefix, "/")+"/"))
	}
	sort.Strings(out)
	return out, nil
}
