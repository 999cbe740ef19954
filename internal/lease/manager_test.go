package lease

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/barrier/barriertest"
	"github.com/coffer-dev/coffer/internal/logical"
)

// recorder is a revoker that records what it revoked, in order, and can
// be told to fail.
type recorder struct {
	mu      sync.Mutex // guards following
	revoked []string
	fail    int // fail this many more calls
}

func (r *recorder) revoke(ctx context.Context, l *Lease) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		return errors.New("backend unreachable")
	}
	r.revoked = append(r.revoked, l.ID)
	return nil
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.revoked)
}

type fixture struct {
	mem   logical.Storage // the whole barrier; view is its sys/expire/
	view  logical.Storage
	clock *clock
	rec   *recorder
	logs  *bytes.Buffer
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	mem := barriertest.Storage(t)
	return &fixture{mem: mem, view: logical.NewView(mem, "sys/expire/"), clock: newClock(), rec: &recorder{}, logs: &bytes.Buffer{}}
}

func (f *fixture) manager(t *testing.T, s logical.Storage) *Manager {
	t.Helper()
	if s == nil {
		s = f.view
	}
	m, err := New(Config{
		Storage:    s,
		Now:        f.clock.Now,
		Logger:     slog.New(slog.NewTextHandler(f.logs, nil)),
		Revokers:   map[string]func(context.Context, *Lease) error{"secret": f.rec.revoke},
		MinBackoff: time.Second,
		MaxBackoff: 8 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func register(t *testing.T, m *Manager, id, path string, expire time.Time) {
	t.Helper()
	if err := m.Register(context.Background(), &Lease{ID: id, Kind: "secret", Path: path, ExpireTime: expire, Data: []byte(`{"user":"u1"}`)}); err != nil {
		t.Fatalf("Register(%q) = %v", id, err)
	}
}

func revokeDue(t *testing.T, m *Manager) int {
	t.Helper()
	n, err := m.RevokeDue(context.Background())
	if err != nil {
		t.Fatalf("RevokeDue = %v", err)
	}
	return n
}

func TestRevokedInTimeOrder(t *testing.T) {
	f := newFixture(t)
	m := f.manager(t, nil)
	now := f.clock.Now()
	// Registered out of order, across minutes, hours and days.
	offsets := map[string]time.Duration{
		"db/creds/ro/c": 3 * time.Hour,
		"db/creds/ro/a": 30 * time.Second,
		"db/creds/ro/e": 50 * time.Hour,
		"db/creds/ro/b": 31 * time.Second,
		"db/creds/ro/d": 3*time.Hour + time.Nanosecond,
	}
	for id, d := range offsets {
		register(t, m, id, "db/creds/ro", now.Add(d))
	}
	register(t, m, "db/creds/ro/never", "db/creds/ro", time.Time{})

	if n := revokeDue(t, m); n != 0 {
		t.Fatalf("revoked %d before anything was due", n)
	}
	f.clock.Add(time.Minute)
	if n := revokeDue(t, m); n != 2 {
		t.Fatalf("after 1m revoked %d, want 2", n)
	}
	f.clock.Add(100 * time.Hour)
	revokeDue(t, m)
	want := []string{"db/creds/ro/a", "db/creds/ro/b", "db/creds/ro/c", "db/creds/ro/d", "db/creds/ro/e"}
	if got := f.rec.got(); !slices.Equal(got, want) {
		t.Errorf("revoked %v, want %v", got, want)
	}
	if _, err := m.Lookup(context.Background(), "db/creds/ro/never"); err != nil {
		t.Errorf("lease without expiry: Lookup = %v", err)
	}
	if got := barriertest.Keys(t, f.mem, "sys/expire/expire/"); len(got) != 0 {
		t.Errorf("expiry index left behind: %v", got)
	}
}

func TestRevokedAfterRestart(t *testing.T) {
	f := newFixture(t)
	m := f.manager(t, nil)
	register(t, m, "a", "db/creds/ro", f.clock.Now().Add(time.Hour))
	register(t, m, "b", "db/creds/ro", f.clock.Now().Add(2*time.Hour))
	revokeDue(t, m)

	f.clock.Add(90 * time.Minute)
	m2 := f.manager(t, nil) // a restart: nothing in memory
	if n := revokeDue(t, m2); n != 1 {
		t.Fatalf("revoked %d after restart, want 1", n)
	}
	if _, err := m2.Lookup(context.Background(), "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup(revoked) = %v, want ErrNotFound", err)
	}
	if _, err := m2.Lookup(context.Background(), "b"); err != nil {
		t.Errorf("Lookup(not yet due) = %v", err)
	}
	f.clock.Add(time.Hour)
	revokeDue(t, m2)
	if got, want := f.rec.got(), []string{"a", "b"}; !slices.Equal(got, want) {
		t.Errorf("revoked %v, want %v", got, want)
	}
	if got := barriertest.Keys(t, f.mem, ""); len(got) != 0 {
		t.Errorf("storage not empty after all leases revoked: %v", got)
	}
}

func TestStartupReadsOnlyDueBuckets(t *testing.T) {
	f := newFixture(t)
	m := f.manager(t, nil)
	start := f.clock.Now()
	const total = 10000
	ctx := context.Background()
	for i := range total {
		// One lease a minute, for about a week.
		register(t, m, fmt.Sprintf("db/creds/ro/%05d", i), "db/creds/ro", start.Add(time.Duration(i+1)*time.Minute))
	}

	f.clock.Add(3*time.Minute + time.Second) // three are due
	c := &counting{Storage: f.view}
	m2 := f.manager(t, c)
	if c.gets.Load()+c.lists.Load() != 0 {
		t.Fatalf("New read storage: %d gets, %d lists", c.gets.Load(), c.lists.Load())
	}
	n, err := m2.RevokeDue(ctx)
	if err != nil || n != 3 {
		t.Fatalf("RevokeDue = %d, %v; want 3, nil", n, err)
	}
	t.Logf("start-up pass: %d gets, %d lists", c.gets.Load(), c.lists.Load())
	// Three entries to revoke, a handful of lists of index folders.
	if g, l := c.gets.Load(), c.lists.Load(); g > 3 || l > 8 {
		t.Errorf("start-up with %d leases read %d entries and listed %d folders; want at most 3 and 8", total, g, l)
	}
	// A second pass with nothing newly due reads nothing.
	g0, l0 := c.gets.Load(), c.lists.Load()
	revokeDue(t, m2)
	if c.gets.Load() != g0 || c.lists.Load() != l0 {
		t.Errorf("idle pass read storage: %d gets, %d lists", c.gets.Load()-g0, c.lists.Load()-l0)
	}
}

func TestRenewMovesIndex(t *testing.T) {
	f := newFixture(t)
	m := f.manager(t, nil)
	ctx := context.Background()
	now := f.clock.Now()
	register(t, m, "a", "db/creds/ro", now.Add(time.Minute))
	revokeDue(t, m) // loads the current bucket

	old := barriertest.Keys(t, f.mem, "sys/expire/expire/")
	f.clock.Add(30 * time.Second)
	if err := m.Renew(ctx, "a", now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	moved := barriertest.Keys(t, f.mem, "sys/expire/expire/")
	if len(old) != 1 || len(moved) != 1 || old[0] == moved[0] {
		t.Fatalf("index before %v, after %v; want one entry that moved", old, moved)
	}
	if !strings.Contains(moved[0], "/2026112802/02/") {
		t.Errorf("index entry %q is not in the 02:02 bucket", moved[0])
	}
	l, err := m.Lookup(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if !l.LastRenewal.Equal(f.clock.Now()) || !l.ExpireTime.Equal(now.Add(2*time.Hour)) {
		t.Errorf("after renew: last renewal %v, expire %v", l.LastRenewal, l.ExpireTime)
	}

	f.clock.Add(time.Hour)
	if n := revokeDue(t, m); n != 0 {
		t.Errorf("revoked %d at the old expiry", n)
	}
	f.clock.Add(time.Hour)
	if n := revokeDue(t, m); n != 1 {
		t.Errorf("revoked %d at the new expiry, want 1", n)
	}
	if err := m.Renew(ctx, "a", now); !errors.Is(err, ErrNotFound) {
		t.Errorf("Renew(revoked) = %v, want ErrNotFound", err)
	}
}

func TestRenewToEarlierTimeInLoadedBucket(t *testing.T) {
	f := newFixture(t)
	m := f.manager(t, nil)
	now := f.clock.Now()
	register(t, m, "a", "db/creds/ro", now.Add(48*time.Hour))
	revokeDue(t, m)
	if err := m.Renew(context.Background(), "a", now.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	register(t, m, "b", "db/creds/ro", now.Add(20*time.Second))
	f.clock.Add(25 * time.Second)
	if n := revokeDue(t, m); n != 2 {
		t.Errorf("revoked %d, want 2", n)
	}
}

func TestRevokePrefix(t *testing.T) {
	f := newFixture(t)
	m := f.manager(t, nil)
	ctx := context.Background()
	exp := f.clock.Now().Add(time.Hour)
	for id, path := range map[string]string{
		"ro1": "db/creds/ro", "ro2": "db/creds/ro", "rw": "db/creds/rw",
		"x": "db/credsx/ro", "aws": "aws/creds/a", "top": "db/creds",
	} {
		register(t, m, id, path, exp)
	}
	if err := m.RevokePrefix(ctx, "db/creds/"); err != nil {
		t.Fatal(err)
	}
	got := f.rec.got()
	slices.Sort(got)
	if want := []string{"ro1", "ro2", "rw", "top"}; !slices.Equal(got, want) {
		t.Errorf("revoked %v, want %v", got, want)
	}
	for _, id := range []string{"x", "aws"} {
		if _, err := m.Lookup(ctx, id); err != nil {
			t.Errorf("Lookup(%q) outside the prefix = %v", id, err)
		}
	}
	for _, p := range []string{"", "/"} {
		if err := m.RevokePrefix(ctx, p); !errors.Is(err, ErrInvalid) {
			t.Errorf("RevokePrefix(%q) = %v, want ErrInvalid", p, err)
		}
	}
}

func TestRevokeFailureIsRetriedWithBackoff(t *testing.T) {
	f := newFixture(t)
	m := f.manager(t, nil)
	ctx := context.Background()
	register(t, m, "a", "db/creds/ro", f.clock.Now().Add(time.Second))
	f.rec.fail = 7
	f.clock.Add(time.Second)
	for i, wait := range []time.Duration{1, 2, 4, 8, 8, 8, 8} {
		if n := revokeDue(t, m); n != 0 {
			t.Fatalf("attempt %d revoked although the revoker failed", i+1)
		}
		if _, err := m.Lookup(ctx, "a"); err != nil {
			t.Fatalf("after failed attempt %d: Lookup = %v; the lease was lost", i+1, err)
		}
		f.clock.Add(wait*time.Second - time.Millisecond)
		if n := revokeDue(t, m); n != 0 {
			t.Fatalf("retried before the %v back-off", wait*time.Second)
		}
		f.clock.Add(time.Millisecond)
	}
	if n := revokeDue(t, m); n != 1 {
		t.Fatalf("revoked %d after the revoker recovered, want 1", n)
	}
	logs := f.logs.String()
	if !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "lease_id=a") {
		t.Errorf("repeated failures not logged as errors with the lease id:\n%s", logs)
	}
	if strings.Contains(logs, "u1") {
		t.Errorf("log shows lease data:\n%s", logs)
	}
}

func TestFailedRevocationSurvivesRestart(t *testing.T) {
	f := newFixture(t)
	m := f.manager(t, nil)
	register(t, m, "a", "db/creds/ro", f.clock.Now())
	f.rec.fail = 1
	revokeDue(t, m)
	m2 := f.manager(t, nil)
	if n := revokeDue(t, m2); n != 1 {
		t.Errorf("revoked %d after restart, want 1", n)
	}
}

func TestRevokeAndForget(t *testing.T) {
	f := newFixture(t)
	m := f.manager(t, nil)
	ctx := context.Background()
	exp := f.clock.Now().Add(time.Hour)
	register(t, m, "a", "db/creds/ro", exp)
	register(t, m, "b", "db/creds/ro", exp)

	f.rec.fail = 1
	if err := m.Revoke(ctx, "a"); err == nil || strings.Contains(err.Error(), "u1") {
		t.Fatalf("Revoke with a failing revoker = %v, want an error without lease data", err)
	}
	if _, err := m.Lookup(ctx, "a"); err != nil {
		t.Fatalf("lease gone after a failed revoke: %v", err)
	}
	if err := m.Revoke(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := m.Revoke(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Revoke = %v, want ErrNotFound", err)
	}
	if err := m.Forget(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := m.Forget(ctx, "b"); err != nil {
		t.Errorf("Forget(unknown) = %v, want nil", err)
	}
	if got := f.rec.got(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("revoked %v, want [a] (Forget calls no revoker)", got)
	}
	if got := barriertest.Keys(t, f.mem, ""); len(got) != 0 {
		t.Errorf("storage not empty: %v", got)
	}
	f.clock.Add(2 * time.Hour)
	if n := revokeDue(t, m); n != 0 {
		t.Errorf("expiry loop revoked %d deleted leases", n)
	}
}

func TestRegisterRejectsBadLeases(t *testing.T) {
	f := newFixture(t)
	m := f.manager(t, nil)
	register(t, m, "dup", "db/creds/ro", time.Time{})
	for name, l := range map[string]*Lease{
		"nil lease":        nil,
		"missing id":       {Kind: "secret", Path: "db/creds/ro"},
		"missing path":     {ID: "a", Kind: "secret", Path: "/"},
		"unknown kind":     {ID: "a", Kind: "nope", Path: "db/creds/ro"},
		"already existing": {ID: "dup", Kind: "secret", Path: "db/creds/ro"},
	} {
		t.Run(name, func(t *testing.T) {
			if err := m.Register(context.Background(), l); !errors.Is(err, ErrInvalid) {
				t.Errorf("Register = %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New without storage succeeded")
	}
}

func TestRunRevokesOnTime(t *testing.T) {
	f := newFixture(t)
	revoked := make(chan string, 10)
	m, err := New(Config{
		Storage:      f.view,
		Now:          f.clock.Now,
		PollInterval: 5 * time.Millisecond,
		Revokers: map[string]func(context.Context, *Lease) error{"secret": func(ctx context.Context, l *Lease) error {
			revoked <- l.ID
			return nil
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()

	register(t, m, "later", "db/creds/ro", f.clock.Now().Add(time.Hour))
	register(t, m, "soon", "db/creds/ro", f.clock.Now().Add(time.Second))
	select {
	case id := <-revoked:
		t.Fatalf("%q revoked before it was due", id)
	case <-time.After(30 * time.Millisecond):
	}
	f.clock.Add(2 * time.Second)
	select {
	case id := <-revoked:
		if id != "soon" {
			t.Fatalf("revoked %q, want soon", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not revoke a due lease")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestParseIndexNameRejectsJunk(t *testing.T) {
	minute := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, n := range []string{"", "abc", "99000000000-h", "0100000000x-h", "01000000000h"} {
		if _, _, ok := parseIndexName(minute, n); ok {
			t.Errorf("parseIndexName(%q) ok", n)
		}
	}
	if got, h, ok := parseIndexName(minute, "05000000007-abc"); !ok || h != "abc" || !got.Equal(minute.Add(5*time.Second+7)) {
		t.Errorf("parseIndexName = %v, %q, %v", got, h, ok)
	}
}
