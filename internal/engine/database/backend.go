package database

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// PluginName is the only plugin_name Coffer serves.
const PluginName = "postgresql-database-plugin"

// Config configures a Backend.
type Config struct {
	// Storage is the mount's own storage view. Required.
	Storage logical.Storage
	// Now is the clock for expirations and rotations. nil: time.Now.
	Now func() time.Time
	// Logger receives rotation and revocation events (never passwords).
	// nil: discard.
	Logger *slog.Logger
	// ConnectTimeout bounds each connection attempt to a database.
	// 0: 10s.
	ConnectTimeout time.Duration
}

// Backend is the database secrets engine. It implements logical.Backend,
// logical.ExistenceChecker, logical.SecretEngine and logical.Periodic, and
// is safe for concurrent use. Close releases its connection pools.
type Backend struct {
	storage        logical.Storage
	now            func() time.Time
	log            *slog.Logger
	connectTimeout time.Duration

	cfgMu    sync.Mutex // serializes config writes, resets and root rotations
	staticMu sync.Mutex // serializes static-role writes and rotations

	mu    sync.Mutex // guards following
	pools map[string]*pool
}

var (
	_ logical.Backend          = (*Backend)(nil)
	_ logical.ExistenceChecker = (*Backend)(nil)
	_ logical.SecretEngine     = (*Backend)(nil)
	_ logical.Periodic         = (*Backend)(nil)
)

// New returns a Backend over cfg.Storage. It returns an error if
// cfg.Storage is nil.
func New(cfg Config) (*Backend, error) {
	if cfg.Storage == nil {
		return nil, errors.New("database: Config.Storage is required")
	}
	b := &Backend{storage: cfg.Storage, now: cfg.Now, log: cfg.Logger, connectTimeout: cfg.ConnectTimeout, pools: map[string]*pool{}}
	if b.now == nil {
		b.now = time.Now
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.connectTimeout == 0 {
		b.connectTimeout = 10 * time.Second
	}
	return b, nil
}

// Factory is the logical.Factory of the database engine (mount type
// "database").
func Factory(ctx context.Context, cfg logical.BackendConfig) (logical.Backend, error) {
	return New(Config{Storage: cfg.Storage, Now: cfg.Now, Logger: cfg.Logger})
}

// Close closes every connection pool. The Backend stays usable: pools are
// reopened on demand. It is idempotent.
func (b *Backend) Close() error {
	b.mu.Lock()
	pools := b.pools
	b.pools = map[string]*pool{}
	b.mu.Unlock()
	for _, p := range pools {
		p.close()
	}
	return nil
}

var nameRe = regexp.MustCompile(`^\w(?:[\w.-]*\w)?$`)

// HandleRequest implements logical.Backend.
func (b *Backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	kind, name, _ := strings.Cut(strings.TrimSuffix(req.Path, "/"), "/")
	if name == "" && req.Operation == logical.ListOperation {
		switch kind {
		case "config":
			return b.list(ctx, configPrefix)
		case "roles":
			return b.list(ctx, rolePrefix)
		case "static-roles":
			return b.list(ctx, staticPrefix)
		}
		return nil, logical.ErrUnsupportedPath(req.Path)
	}
	if name == "" || !nameRe.MatchString(name) {
		return nil, logical.ErrUnsupportedPath(req.Path)
	}
	op := req.Operation
	write := op == logical.CreateOperation || op == logical.UpdateOperation
	switch {
	case kind == "config" && op == logical.ReadOperation:
		return b.readConfig(ctx, name)
	case kind == "config" && write:
		return nil, b.writeConfig(ctx, req, name)
	case kind == "config" && op == logical.DeleteOperation:
		return nil, b.deleteConfig(ctx, name)
	case kind == "reset" && write:
		return nil, b.reset(ctx, name)
	case kind == "rotate-root" && write:
		return nil, b.rotateRoot(ctx, name)
	case kind == "roles" && op == logical.ReadOperation:
		return b.readRole(ctx, name)
	case kind == "roles" && write:
		return nil, b.writeRole(ctx, req, name)
	case kind == "roles" && op == logical.DeleteOperation:
		return nil, b.deleteEntry(ctx, rolePrefix+name)
	case kind == "creds" && op == logical.ReadOperation:
		return b.creds(ctx, req, name)
	case kind == "static-roles" && op == logical.ReadOperation:
		return b.readStaticRole(ctx, name)
	case kind == "static-roles" && write:
		return nil, b.writeStaticRole(ctx, req, name)
	case kind == "static-roles" && op == logical.DeleteOperation:
		return nil, b.deleteStaticRole(ctx, name)
	case kind == "static-creds" && op == logical.ReadOperation:
		return b.staticCreds(ctx, name)
	case kind == "rotate-role" && write:
		return nil, b.rotateStatic(ctx, name, b.now())
	}
	switch kind {
	case "config", "reset", "rotate-root", "roles", "creds", "static-roles", "static-creds", "rotate-role":
		return nil, logical.ErrUnsupportedOperation
	}
	return nil, logical.ErrUnsupportedPath(req.Path)
}

// Exists implements logical.ExistenceChecker for config, roles and
// static-roles, so that policies can tell create from update.
func (b *Backend) Exists(ctx context.Context, req *logical.Request) (ok, exists bool, err error) {
	kind, name, _ := strings.Cut(req.Path, "/")
	var prefix string
	switch kind {
	case "config":
		prefix = configPrefix
	case "roles":
		prefix = rolePrefix
	case "static-roles":
		prefix = staticPrefix
	default:
		return false, false, nil
	}
	if !nameRe.MatchString(name) {
		return false, false, nil
	}
	_, err = b.storage.Get(ctx, prefix+name)
	if errors.Is(err, logical.ErrNotFound) {
		return true, false, nil
	}
	if err != nil {
		return true, false, fmt.Errorf("database: existence of %s%s: %w", prefix, name, err)
	}
	return true, true, nil
}

// Storage layout of the mount's view.
const (
	configPrefix = "config/"
	rolePrefix   = "role/"
	staticPrefix = "static-role/"
)

// getJSON reads key into v; found is false for a missing key.
func (b *Backend) getJSON(ctx context.Context, key string, v any) (found bool, err error) {
	raw, err := b.storage.Get(ctx, key)
	if errors.Is(err, logical.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("database: read %s: %w", key, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("database: decode %s: %w", key, err)
	}
	return true, nil
}

func (b *Backend) putJSON(ctx context.Context, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("database: encode %s: %w", key, err)
	}
	if err := b.storage.Put(ctx, key, raw); err != nil {
		return fmt.Errorf("database: write %s: %w", key, err)
	}
	return nil
}

func (b *Backend) deleteEntry(ctx context.Context, key string) error {
	if err := b.storage.Delete(ctx, key); err != nil {
		return fmt.Errorf("database: delete %s: %w", key, err)
	}
	return nil
}

// list returns the names under prefix as a LIST response; nil (404) when
// there are none, as Vault does.
func (b *Backend) list(ctx context.Context, prefix string) (*logical.Response, error) {
	keys, err := b.storage.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("database: list %s: %w", prefix, err)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	return &logical.Response{Data: map[string]any{"keys": keys}}, nil
}

// dbError is an Invalid error with what was being done and the database's
// message, with every given secret (passwords, verifiers) blanked out.
func dbError(what string, err error, secrets ...string) error {
	msg := err.Error()
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "*****")
		}
	}
	return logical.Errorf(logical.Invalid, "%s: %s", what, msg)
}
