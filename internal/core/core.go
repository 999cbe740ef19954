// Package core is Coffer's request pipeline: it authenticates a request's
// token, checks it against the token's policies, routes it to the mounted
// engine and returns the engine's response. It also owns the server's
// life-cycle: init, unseal, seal, and the background work that runs only
// while unsealed on the active node (lease expiry, engines' periodic work).
//
// The core knows nothing of HTTP or Kubernetes (a test enforces it): its
// inputs are logical.Requests and its outputs logical.Responses or
// *logical.Errors, which httpapi maps to statuses through one table.
//
// Pieces are passed what they need rather than reaching through the Core:
// the mount table, the token store, the lease manager and the policy store
// are built at unseal over the barrier and dropped at seal.
package core

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/coffer-dev/coffer/internal/audit"
	"github.com/coffer-dev/coffer/internal/barrier"
	"github.com/coffer-dev/coffer/internal/engine/cubbyhole"
	"github.com/coffer-dev/coffer/internal/events"
	"github.com/coffer-dev/coffer/internal/lease"
	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/policy/store"
	"github.com/coffer-dev/coffer/internal/seal"
	"github.com/coffer-dev/coffer/internal/storage"
	"github.com/coffer-dev/coffer/internal/token"
)

// Config configures a Core. Zero values are documented per field.
type Config struct {
	// Backend is the physical storage. Required.
	Backend storage.Backend
	// Engines maps a mount type ("kv", "transit", ...) to its factory.
	// The builtin types system, token and cubbyhole are always present
	// (cubbyhole needs its factory here).
	Engines map[string]logical.Factory
	// AuthMethods maps an auth method type ("kubernetes", "approle", ...)
	// to its factory; they are mounted under auth/.
	AuthMethods map[string]logical.Factory
	// StorageType is reported by sys/seal-status ("bolt", "inmem", "raft").
	StorageType string
	// ClusterName is reported by sys/health; empty: "coffer-cluster-<id>".
	ClusterName string
	// Now is the clock. nil: time.Now.
	Now func() time.Time
	// Rand is the source of randomness. nil: crypto/rand.Reader.
	Rand io.Reader
	// Logger is where the core logs. nil: discard.
	Logger *slog.Logger
	// PeriodicInterval is how often engines' Periodic runs. 0: one minute.
	PeriodicInterval time.Duration
	// SealProtector protects the root key: nil is Shamir; an auto-unseal
	// seal (transit, static) lets the server unseal itself.
	SealProtector seal.Protector
	// SealMigrateFrom is the previous auto-unseal seal during a migration
	// (a seal block marked disabled).
	SealMigrateFrom seal.Wrapper
	// DeclarativeConfig names a file or directory of declarative day-0
	// config (mounts, auth methods, policies, audit devices) applied after
	// every unseal; "" for none.
	DeclarativeConfig string
	// AuditDevices are declared in the server config; they are enabled at
	// every unseal and cannot be disabled through the API.
	AuditDevices []AuditDevice
	// AuditAllowedDirs are where file audit devices enabled through the
	// API may write; AuditAllowAnyPath lifts that (dev mode).
	AuditAllowedDirs  []string
	AuditAllowAnyPath bool
	// Cluster is the HA side of a replicated storage (see ha.go); nil: a
	// single server, always active.
	Cluster Cluster
}

// AuditDevice is an audit block of the server config.
type AuditDevice struct {
	Name   string
	Config audit.DeviceConfig
}

// Core is the request pipeline and the server's life-cycle. It is safe for
// concurrent use.
type Core struct {
	cfg     Config
	barrier *barrier.Barrier
	seal    *seal.Manager
	logger  *slog.Logger
	metrics *metrics
	events  *events.Bus

	ha haState

	mu         sync.RWMutex // guards following; write-locked to seal or unseal
	state      *unsealed    // nil while sealed
	pendingOTP string       // one-time pad of the generate-root attempt
}

// unsealed is everything that exists only while the barrier is open.
type unsealed struct {
	mounts    *mountManager
	tokens    *token.Store
	leases    *lease.Manager
	policies  *store.Store
	audit     *audit.Broker
	cubbyhole logical.Storage
	clusterID string
	// active is whether this state runs active-only work; generation is
	// the HA generation marker it was built with (ha.go).
	active     bool
	generation string

	cancel context.CancelFunc // stops background work
	wg     sync.WaitGroup
}

// New returns a sealed Core over cfg.Backend.
func New(cfg Config) (*Core, error) {
	if cfg.Backend == nil {
		return nil, errors.New("core: Config.Backend is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PeriodicInterval == 0 {
		cfg.PeriodicInterval = time.Minute
	}
	if cfg.StorageType == "" {
		cfg.StorageType = "inmem"
	}
	b, err := barrier.New(barrier.Config{Backend: cfg.Backend, Rand: cfg.Rand, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("core: %w", err)
	}
	sm, err := seal.New(seal.Config{Backend: cfg.Backend, Barrier: b, Rand: cfg.Rand, Now: cfg.Now,
		Protector: cfg.SealProtector, MigrateFrom: cfg.SealMigrateFrom})
	if err != nil {
		return nil, fmt.Errorf("core: %w", err)
	}
	return &Core{cfg: cfg, barrier: b, seal: sm, logger: cfg.Logger, metrics: newMetrics(), events: events.New(0)}, nil
}

// newID returns a random UUID (version 4 layout).
func (c *Core) newID() string {
	var b [16]byte
	if _, err := io.ReadFull(c.cfg.Rand, b[:]); err != nil {
		panic("core: no randomness: " + err.Error())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// defaultMounts is what a new server has mounted.
func defaultMounts() []MountEntry {
	return []MountEntry{
		{Path: "cubbyhole/", Type: "cubbyhole", Description: "per-token private secret storage", Local: true, Builtin: true},
		{Path: "sys/", Type: "system", Description: "system endpoints used for control, policy and debugging", SealWrap: true, Builtin: true},
		{Path: "auth/token/", Type: "token", Description: "token based credentials", Builtin: true},
	}
}

// setupLocked builds the unsealed state over the open barrier and starts
// background work. c.mu is held for writing.
func (c *Core) setupLocked(ctx context.Context) (err error) {
	st := &unsealed{active: c.active()}
	if c.cfg.Cluster != nil {
		if err := c.cfg.Cluster.Unsealed(ctx, c.barrier); err != nil {
			return fmt.Errorf("core: cluster: %w", err)
		}
		c.startHALoop()
		if st.generation, err = c.readGeneration(ctx); err != nil {
			return err
		}
	}
	st.audit, err = audit.New(ctx, audit.Config{
		Storage:      logical.NewView(c.barrier, "core/audit/"),
		Now:          c.cfg.Now,
		Rand:         c.cfg.Rand,
		Logger:       c.logger.With("component", "audit"),
		AllowedDirs:  c.cfg.AuditAllowedDirs,
		AllowAnyPath: c.cfg.AuditAllowAnyPath,
	})
	if err != nil {
		return fmt.Errorf("core: audit: %w", err)
	}
	// A setup that fails after this point must not leave the devices'
	// goroutines and files behind.
	defer func() {
		if err != nil {
			st.audit.Close(ctx)
		}
	}()
	for _, d := range c.cfg.AuditDevices {
		if err := st.audit.Enable(ctx, d.Name, d.Config, true); err != nil {
			return fmt.Errorf("core: audit device %q from the config: %w", d.Name, err)
		}
	}
	st.policies, err = store.New(store.Config{Storage: logical.NewView(c.barrier, "sys/policy/")})
	if err != nil {
		return fmt.Errorf("core: policy store: %w", err)
	}
	st.leases, err = lease.New(lease.Config{
		Storage: logical.NewView(c.barrier, "sys/expire/"),
		Now:     c.cfg.Now,
		Logger:  c.logger.With("component", "lease"),
		Revokers: map[string]func(context.Context, *lease.Lease) error{
			"token":         func(ctx context.Context, l *lease.Lease) error { return st.tokens.RevokeLease(ctx, l) },
			secretLeaseKind: func(ctx context.Context, l *lease.Lease) error { return c.revokeSecretLease(ctx, st, l) },
		},
	})
	if err != nil {
		return fmt.Errorf("core: lease manager: %w", err)
	}
	// Caches: the active node is the only writer; a standby may cache too
	// when the cluster tells it when replication changed storage.
	cache, epoch := c.cacheMode(st.active)
	st.tokens, err = token.New(token.Config{
		Storage: logical.NewView(c.barrier, "sys/token/"),
		Leases:  st.leases,
		Now:     c.cfg.Now,
		Rand:    c.cfg.Rand,
		Logger:  c.logger.With("component", "token"),
		Cache:   cache,
		Epoch:   epoch,
	})
	if err != nil {
		return fmt.Errorf("core: token store: %w", err)
	}
	factories := make(map[string]logical.Factory, len(c.cfg.Engines)+len(c.cfg.AuthMethods))
	for k, f := range c.cfg.Engines {
		factories[k] = f
	}
	for k, f := range c.cfg.AuthMethods {
		factories[k] = f
	}
	st.mounts = &mountManager{
		store:     c.barrier,
		factories: factories,
		now:       c.cfg.Now,
		newID:     c.newID,
		logger:    c.logger,
		table:     newMountTable(),
		cache:     cache,
		epoch:     epoch,
		builtins: map[string]logical.Backend{
			"system": &sysBackend{c: c, st: st},
			"token":  st.tokens,
		},
	}
	if err := st.mounts.load(ctx, defaultMounts()); err != nil {
		return err
	}
	if cm := st.mounts.table.get("cubbyhole/"); cm != nil {
		st.cubbyhole = cm.view
	}
	st.tokens.OnRevoke(func(ctx context.Context, e *token.Entry) error {
		return c.onTokenRevoked(ctx, st, e)
	})
	st.clusterID, err = c.clusterID(ctx)
	if err != nil {
		return err
	}

	if c.cfg.DeclarativeConfig != "" {
		if err := c.applyDeclarative(ctx, st); err != nil {
			c.logger.Error("declarative config not fully applied; it is retried at the next unseal", "err", err)
		}
	}

	bg, cancel := context.WithCancel(context.Background())
	st.cancel = cancel
	if !st.active { // a standby: the active node does this work
		c.state = st
		return nil
	}
	st.wg.Add(2)
	go func() {
		defer st.wg.Done()
		if err := st.leases.Run(bg); err != nil && !errors.Is(err, context.Canceled) {
			c.logger.Error("lease expiry stopped", "err", err)
		}
	}()
	go func() {
		defer st.wg.Done()
		c.runPeriodic(bg, st)
	}()
	c.state = st
	return nil
}

// teardownLocked stops background work and drops the unsealed state.
func (c *Core) teardownLocked() {
	if c.state == nil {
		return
	}
	c.state.cancel()
	c.state.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.state.audit.Close(ctx); err != nil {
		c.logger.Warn("closing audit devices", "err", err)
	}
	c.state = nil
}

// ReopenAudit reopens file audit devices (on SIGHUP, after log rotation).
func (c *Core) ReopenAudit(ctx context.Context) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.state == nil {
		return nil
	}
	return c.state.audit.Reopen(ctx)
}

// runPeriodic calls every engine's Periodic hook until ctx is done.
func (c *Core) runPeriodic(ctx context.Context, st *unsealed) {
	t := time.NewTicker(c.cfg.PeriodicInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, e := range st.mounts.table.entries() {
			m := st.mounts.table.get(e.Path)
			if m == nil {
				continue
			}
			if p, ok := m.backend.(logical.Periodic); ok {
				if err := p.Periodic(ctx); err != nil && ctx.Err() == nil {
					c.logger.Warn("periodic work failed", "mount", e.Path, "err", err)
				}
			}
		}
	}
}

// onTokenRevoked destroys what belonged to a revoked token.
func (c *Core) onTokenRevoked(ctx context.Context, st *unsealed, e *token.Entry) error {
	if err := c.revokeTokenLeases(ctx, st, e.Accessor); err != nil {
		return err
	}
	if st.cubbyhole == nil || e.CubbyholeID == "" {
		return nil
	}
	return cubbyhole.Destroy(ctx, st.cubbyhole, e.CubbyholeID)
}

const clusterKey = "core/cluster-id"

func (c *Core) clusterID(ctx context.Context) (string, error) {
	raw, err := c.barrier.Get(ctx, clusterKey)
	if err == nil {
		return string(raw), nil
	}
	if !errors.Is(err, logical.ErrNotFound) {
		return "", fmt.Errorf("core: read cluster id: %w", err)
	}
	id := c.newID()
	if err := c.barrier.Put(ctx, clusterKey, []byte(id)); err != nil {
		return "", fmt.Errorf("core: write cluster id: %w", err)
	}
	return id, nil
}

// InitResult is what sys/init returns once.
type InitResult struct {
	Keys         [][]byte
	RecoveryKeys [][]byte
	RootToken    string
}

// InitRequest is sys/init's body: unseal shares for Shamir, recovery
// shares for an auto-unseal seal.
type InitRequest struct {
	SecretShares, SecretThreshold     int
	RecoveryShares, RecoveryThreshold int
	// RootTokenID, when not empty, is the root token (dev mode).
	RootTokenID string
}

// Init initializes a new server: it creates the root key, splits the
// unseal key into shares, creates the root token, and leaves the server
// sealed. rootTokenID, when not empty, is used as the root token (dev mode).
func (c *Core) Init(ctx context.Context, r InitRequest) (*InitResult, error) {
	res, err := c.init(ctx, r)
	if err != nil || len(res.RecoveryKeys) == 0 {
		return res, err
	}
	// An auto-unseal server unseals right after init, as Vault does.
	if err := c.AutoUnseal(ctx); err != nil {
		c.logger.Warn("auto-unseal after init failed; still sealed", "err", err)
	}
	return res, nil
}

func (c *Core) init(ctx context.Context, r InitRequest) (*InitResult, error) {
	if c.cfg.Cluster != nil {
		if err := c.cfg.Cluster.BeforeInit(ctx); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rootTokenID := r.RootTokenID
	res, err := c.seal.Init(ctx, seal.InitRequest{
		SecretShares: r.SecretShares, SecretThreshold: r.SecretThreshold,
		RecoveryShares: r.RecoveryShares, RecoveryThreshold: r.RecoveryThreshold,
	})
	if err != nil {
		if res != nil {
			// The seal may be initialized: its keys are the only way in.
			return &InitResult{Keys: res.Keys, RecoveryKeys: res.RecoveryKeys}, sealError(err)
		}
		return nil, sealError(err)
	}
	// seal.Init leaves the barrier open so the root token can be made.
	defer c.barrier.Seal()
	if err := c.setupLocked(ctx); err != nil {
		return nil, err
	}
	defer c.teardownLocked()
	root, _, err := c.state.tokens.Create(ctx, nil, token.CreateRequest{
		ID:          rootTokenID,
		Policies:    []string{"root"},
		DisplayName: "root",
		Path:        "auth/token/root",
	})
	if err != nil {
		return nil, fmt.Errorf("core: create root token: %w", err)
	}
	return &InitResult{Keys: res.Keys, RecoveryKeys: res.RecoveryKeys, RootToken: root}, nil
}

// AutoUnseal opens the server with its auto-unseal seal. It returns an
// error wrapping seal.ErrKeyUnavailable when the seal key cannot be
// reached (the server stays sealed and seal-status says why), and
// seal.ErrNotInitialized before init.
func (c *Core) AutoUnseal(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.seal.AutoUnseal(ctx); err != nil {
		return err
	}
	if c.state == nil {
		if err := c.setupLocked(ctx); err != nil {
			c.barrier.Seal()
			return err
		}
		c.logger.Info("unsealed", "by", "auto-unseal")
	}
	return nil
}

// UnsealMigrate is Unseal during a seal migration (coffer operator unseal
// --migrate): the key is an unseal or recovery share of the old seal.
func (c *Core) UnsealMigrate(ctx context.Context, key []byte) (seal.Status, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := c.seal.UnsealMigrate(ctx, key)
	if err != nil {
		return st, sealError(err)
	}
	if !st.Sealed && c.state == nil {
		if err := c.setupLocked(ctx); err != nil {
			c.barrier.Seal()
			return st, err
		}
		c.logger.Info("unsealed", "by", "migration")
	}
	return st, nil
}

// SealStatus reports the seal's state.
func (c *Core) SealStatus(ctx context.Context) (seal.Status, error) {
	return c.seal.Status(ctx)
}

// Unseal adds one unseal key share. When the threshold is reached the
// barrier opens and the unsealed state is built.
func (c *Core) Unseal(ctx context.Context, key []byte) (seal.Status, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := c.seal.Unseal(ctx, key)
	if err != nil {
		return st, sealError(err)
	}
	if !st.Sealed && c.state == nil {
		if err := c.setupLocked(ctx); err != nil {
			c.barrier.Seal()
			return st, err
		}
		c.logger.Info("unsealed")
	}
	return st, nil
}

// ResetUnseal discards the unseal shares given so far.
func (c *Core) ResetUnseal() { c.seal.ResetUnseal() }

// Seal closes the barrier and stops all background work. It waits for
// requests in flight.
func (c *Core) Seal(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.teardownLocked()
	if err := c.seal.Seal(ctx); err != nil {
		return err
	}
	c.logger.Info("sealed")
	return nil
}

// Sealed reports whether the core is sealed.
func (c *Core) Sealed() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.state == nil
}

// ClusterInfo returns the cluster's name and id; empty while sealed.
func (c *Core) ClusterInfo() (name, id string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.state == nil {
		return "", ""
	}
	name = c.cfg.ClusterName
	if name == "" {
		name = "coffer-cluster-" + c.state.clusterID[:8]
	}
	return name, c.state.clusterID
}

// StorageType is the configured storage's name.
func (c *Core) StorageType() string { return c.cfg.StorageType }

// Close seals the core. It is idempotent.
func (c *Core) Close() error {
	c.stopHALoop()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.teardownLocked()
	if !c.barrier.Sealed() {
		c.barrier.Seal()
	}
	return nil
}

// sealError turns the seal package's sentinels into API errors.
func sealError(err error) error {
	switch {
	case errors.Is(err, seal.ErrAlreadyInitialized):
		return logical.Errorf(logical.Invalid, "Vault is already initialized")
	case errors.Is(err, seal.ErrNotInitialized):
		return logical.Errorf(logical.Invalid, "server is not initialized")
	case errors.Is(err, seal.ErrInvalidKey):
		return logical.Errorf(logical.Invalid, "the unseal keys given do not open the server: progress was reset")
	case errors.Is(err, seal.ErrInvalidShare):
		return logical.Errorf(logical.Invalid, "invalid key: the share is malformed or does not belong to this server")
	case errors.Is(err, seal.ErrBadNonce):
		return logical.Errorf(logical.Invalid, "nonce does not match the operation in progress")
	case errors.Is(err, seal.ErrAutoUnseal), errors.Is(err, seal.ErrMigrationRequired), errors.Is(err, seal.ErrNoMigration),
		errors.Is(err, seal.ErrInvalidConfig), errors.Is(err, seal.ErrDuplicateShare), errors.Is(err, seal.ErrNoAttempt),
		errors.Is(err, seal.ErrAttemptInProgress):
		return logical.Errorf(logical.Invalid, "%s", strings.TrimPrefix(err.Error(), "seal: "))
	case errors.Is(err, seal.ErrKeyUnavailable):
		return logical.Errorf(logical.Unavailable, "%s", strings.TrimPrefix(err.Error(), "seal: "))
	case errors.Is(err, seal.ErrSealed):
		return logical.ErrSealed
	}
	return err
}
