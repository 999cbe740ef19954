// Package token is Coffer's token store: it creates, looks up, renews and
// revokes the tokens every request carries, and serves Vault's
// auth/token/ API (see Store.HandleRequest).
//
// # Tokens are stored only as hashes
//
// A token looks like Vault's ("hvs." and 24 random base62 characters). The
// store keeps only its SHA-256 (hex), which is both the storage key and
// Entry.ID; Lookup hashes the presented token, loads the entry under that
// hash and compares the hashes again in constant time. The token itself is
// returned once, by Create, and is never stored or logged. Layout of the
// store's logical.Storage view:
//
//	id/<sha256(token)>            the Entry (JSON)
//	accessor/<accessor>           sha256(token) of the accessor's token
//	parent/<parent id>/<child id> the children index, for revoking trees
//	role/<name>                   a Role
//
// # Life and death
//
// Expiry is enforced twice: Lookup refuses an expired token by the clock,
// whether or not anything has cleaned it up, and every expiring token has a
// lease (Kind LeaseKind) in the lease manager, whose revoker (RevokeLease)
// deletes it with its children on time. Revoking a token revokes its whole
// tree, children first; RevokeOrphan keeps the children as orphans. Hooks
// registered with OnRevoke run for every revoked token before it is
// deleted (the core deletes its cubbyhole and the leases it created there);
// a failing hook stops the revocation, which can then be retried.
//
// # Wiring (the lease manager and the store need each other)
//
//	var ts *token.Store
//	lm, _ := lease.New(lease.Config{Storage: expireView, Revokers: map[string]func(context.Context, *lease.Lease) error{
//		token.LeaseKind: func(ctx context.Context, l *lease.Lease) error { return ts.RevokeLease(ctx, l) },
//	}})
//	ts, _ = token.New(token.Config{Storage: tokenView, Leases: lm})
package token

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/coffer-dev/coffer/internal/auth/tokenparams"
	"github.com/coffer-dev/coffer/internal/lease"
	"github.com/coffer-dev/coffer/internal/logical"
)

// LeaseKind is the lease.Lease Kind of token leases.
const LeaseKind = "token"

// DefaultMaxTTL is the default and maximum TTL of tokens when Config leaves
// them zero: 32 days, as Vault's.
const DefaultMaxTTL = 768 * time.Hour

// ErrNotFound is returned for a token or accessor that does not exist, was
// revoked, or has expired.
var ErrNotFound = errors.New("token: not found")

// Config configures a Store.
type Config struct {
	// Storage is the store's own view. Required.
	Storage logical.Storage
	// Leases tracks token expiry. Required.
	Leases *lease.Manager
	// Now is the clock. nil: time.Now.
	Now func() time.Time
	// Rand is the source of tokens, accessors and cubbyhole IDs.
	// nil: crypto/rand.Reader.
	Rand io.Reader
	// Logger. nil: discard.
	Logger *slog.Logger
	// DefaultTTL is the TTL of a token created without one (except root
	// tokens, which never expire). Zero: DefaultMaxTTL.
	DefaultTTL time.Duration
	// MaxTTL caps every TTL, counted from the token's creation, as the
	// auth/token mount's max_lease_ttl. Zero: DefaultMaxTTL.
	MaxTTL time.Duration
	// Cache keeps decoded entries in memory. Set it only where this Store
	// is the only writer of Storage (a single server, or the active node
	// of a cluster), or together with Epoch.
	Cache bool
	// Epoch, with Cache on a standby, changes whenever replication may
	// have changed Storage, and only after the change is visible: the
	// cache starts over when it moves.
	Epoch func() uint64
}

// Store is the token store. It is safe for concurrent use.
type Store struct {
	store      logical.Storage
	leases     *lease.Manager
	now        func() time.Time
	rand       io.Reader
	log        *slog.Logger
	defaultTTL time.Duration
	maxTTL     time.Duration
	cache      *entryCache // nil: no cache

	// mu serialises read-modify-write cycles of entries (uses, renewals,
	// marking a revocation).
	mu sync.Mutex

	hooksMu sync.RWMutex // guards following
	hooks   []func(ctx context.Context, e *Entry) error
}

// New returns a Store. It reads nothing from storage.
func New(cfg Config) (*Store, error) {
	if cfg.Storage == nil {
		return nil, errors.New("token: Config.Storage is required")
	}
	if cfg.Leases == nil {
		return nil, errors.New("token: Config.Leases is required")
	}
	s := &Store{
		store: cfg.Storage, leases: cfg.Leases, now: cfg.Now, rand: cfg.Rand,
		log: cfg.Logger, defaultTTL: cfg.DefaultTTL, maxTTL: cfg.MaxTTL,
	}
	if cfg.Cache {
		s.cache = newEntryCache(cfg.Epoch)
		s.store = &cachingStorage{Storage: s.store, c: s.cache}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Reader
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxTTL <= 0 {
		s.maxTTL = DefaultMaxTTL
	}
	if s.defaultTTL <= 0 || s.defaultTTL > s.maxTTL {
		s.defaultTTL = s.maxTTL
	}
	return s, nil
}

// Entry is a token as stored. It never holds the token itself.
type Entry struct {
	// ID is the hex SHA-256 of the token.
	ID       string `json:"id"`
	Accessor string `json:"accessor"`
	// Parent is the parent's ID; empty for an orphan.
	Parent      string            `json:"parent,omitempty"`
	Policies    []string          `json:"policies"`
	Path        string            `json:"path"`
	Meta        map[string]string `json:"meta"`
	DisplayName string            `json:"display_name"`
	// NumUses is the number of uses left; 0 is unlimited.
	NumUses        int           `json:"num_uses"`
	CreationTime   time.Time     `json:"creation_time"`
	CreationTTL    time.Duration `json:"creation_ttl"`
	ExplicitMaxTTL time.Duration `json:"explicit_max_ttl"`
	// MaxTTL is the cap on renewals, counted from CreationTime.
	MaxTTL    time.Duration `json:"max_ttl"`
	Period    time.Duration `json:"period"`
	Renewable bool          `json:"renewable"`
	// ExpireTime is zero for a token that never expires.
	ExpireTime  time.Time `json:"expire_time"`
	LastRenewal time.Time `json:"last_renewal,omitzero"`
	Role        string    `json:"role,omitempty"`
	// CubbyholeID is random, stable for the token's life.
	CubbyholeID string `json:"cubbyhole_id"`
	EntityID    string `json:"entity_id"`
	Type        string `json:"type"`
	// Revoking is set once revocation has begun; the token no longer works.
	Revoking bool `json:"revoking,omitempty"`
	// BoundCIDRs are the canonical CIDR blocks the token may be used from
	// (Vault's bound_cidrs); empty: anywhere. See AllowsRemote.
	BoundCIDRs []string `json:"bound_cidrs,omitempty"`
}

// AllowsRemote reports whether the token may be used from remote, the
// client's "ip:port" (or bare IP): always for a token without BoundCIDRs,
// otherwise only when the address is in one of them. An empty or
// unparsable remote is in none, so a bound token used where the client's
// address is unknown is refused. The core asks before every use; a
// refusal must look like a bad token (Vault: 403 "permission denied").
func (e *Entry) AllowsRemote(remote string) bool {
	return tokenparams.RemoteAllowed(e.BoundCIDRs, remote)
}

// Caller returns who the token's bearer is, for the request pipeline.
func (e *Entry) Caller() *logical.Caller {
	meta := make(map[string]string, len(e.Meta))
	for k, v := range e.Meta {
		meta[k] = v
	}
	return &logical.Caller{
		Accessor:    e.Accessor,
		DisplayName: e.DisplayName,
		Policies:    slices.Clone(e.Policies),
		Metadata:    meta,
		CubbyholeID: e.CubbyholeID,
	}
}

// IsRoot reports whether the token has the root policy.
func (e *Entry) IsRoot() bool { return slices.Contains(e.Policies, "root") }

// Orphan reports whether the token has no parent.
func (e *Entry) Orphan() bool { return e.Parent == "" }

// TTL returns the time left at now, rounded down to the second; zero for a
// token that never expires.
func (e *Entry) TTL(now time.Time) time.Duration {
	if e.ExpireTime.IsZero() {
		return 0
	}
	return max(e.ExpireTime.Sub(now), 0)
}

func (e *Entry) expired(now time.Time) bool {
	return !e.ExpireTime.IsZero() && !now.Before(e.ExpireTime)
}

// hashToken returns a token's ID.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// leaseID returns the lease ID of the token with the given ID.
func leaseID(id string) string { return "auth/token/create/" + id }

const (
	idPrefix       = "id/"
	accessorPrefix = "accessor/"
	parentPrefix   = "parent/"
	rolePrefix     = "role/"
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// randomString returns n uniformly random base62 characters.
func (s *Store) randomString(n int) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	for len(out) < n {
		if _, err := io.ReadFull(s.rand, buf); err != nil {
			return "", fmt.Errorf("token: read random: %w", err)
		}
		for _, b := range buf {
			// 248 = 4*62: reject the rest so every character is equally likely.
			if b < 248 && len(out) < n {
				out = append(out, base62[b%62])
			}
		}
	}
	return string(out), nil
}

// get loads the entry with the given ID, including one being revoked.
func (s *Store) get(ctx context.Context, id string) (*Entry, error) {
	var gen uint64
	if s.cache != nil {
		var e *Entry
		if e, gen = s.cache.lookup(id); e != nil {
			return e, nil
		}
	}
	b, err := s.store.Get(ctx, idPrefix+id)
	if errors.Is(err, logical.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("token: get entry: %w", err)
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("token: decode entry: %w", err)
	}
	// The key is the hash; check that the entry says so too, in constant
	// time, so a misplaced entry cannot answer for another token.
	if subtle.ConstantTimeCompare([]byte(e.ID), []byte(id)) != 1 {
		return nil, ErrNotFound
	}
	if s.cache != nil {
		s.cache.store(id, &e, gen)
	}
	return &e, nil
}

func (s *Store) put(ctx context.Context, e *Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("token: encode entry: %w", err)
	}
	if err := s.store.Put(ctx, idPrefix+e.ID, b); err != nil {
		return fmt.Errorf("token: put entry: %w", err)
	}
	return nil
}

// Lookup returns the entry of a live token. It returns ErrNotFound for an
// empty, unknown, revoked or expired token (judged by the clock, whether or
// not the expiry loop has run yet).
func (s *Store) Lookup(ctx context.Context, token string) (*Entry, error) {
	if token == "" {
		return nil, ErrNotFound
	}
	return s.live(ctx, hashToken(token))
}

func (s *Store) live(ctx context.Context, id string) (*Entry, error) {
	e, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if e.Revoking || e.expired(s.now()) {
		return nil, ErrNotFound
	}
	return e, nil
}

// LookupAccessor returns the entry of the live token with the given
// accessor, or ErrNotFound.
func (s *Store) LookupAccessor(ctx context.Context, accessor string) (*Entry, error) {
	id, err := s.accessorID(ctx, accessor)
	if err != nil {
		return nil, err
	}
	e, err := s.live(ctx, id)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(e.Accessor), []byte(accessor)) != 1 {
		return nil, ErrNotFound
	}
	return e, nil
}

func (s *Store) accessorID(ctx context.Context, accessor string) (string, error) {
	if accessor == "" {
		return "", ErrNotFound
	}
	b, err := s.store.Get(ctx, accessorPrefix+accessor)
	if errors.Is(err, logical.ErrNotFound) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("token: get accessor: %w", err)
	}
	return string(b), nil
}

// Accessors returns the accessors of every stored token, sorted.
func (s *Store) Accessors(ctx context.Context) ([]string, error) {
	keys, err := s.store.List(ctx, accessorPrefix)
	if err != nil {
		return nil, fmt.Errorf("token: list accessors: %w", err)
	}
	return keys, nil
}

// Use counts one use of a token with limited uses (NumUses > 0); the core
// calls it once per authenticated request. The use that brings the count
// to zero is allowed and revokes the token (and its children) at once.
// It updates e.NumUses. It returns ErrNotFound if the token is gone.
func (s *Store) Use(ctx context.Context, e *Entry) error {
	if e.NumUses <= 0 {
		return nil
	}
	s.mu.Lock()
	cur, err := s.live(ctx, e.ID)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	if cur.NumUses <= 0 {
		s.mu.Unlock()
		e.NumUses = 0
		return nil
	}
	cur.NumUses--
	e.NumUses = cur.NumUses
	if cur.NumUses == 0 {
		cur.Revoking = true
	}
	err = s.put(ctx, cur)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if cur.Revoking {
		return s.revokeTree(ctx, cur)
	}
	return nil
}

// OnRevoke registers fn to run for every token that is revoked, before
// its entry is deleted. An error from fn stops that revocation (the token
// stays unusable and is revoked again on the next attempt).
func (s *Store) OnRevoke(fn func(ctx context.Context, e *Entry) error) {
	s.hooksMu.Lock()
	s.hooks = append(s.hooks, fn)
	s.hooksMu.Unlock()
}
