package logical

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/coffer-dev/coffer/internal/storage"
)

// ErrNotFound is returned by Storage.Get for a missing key; it is
// storage.ErrNotFound, so errors.Is works across the layers.
var ErrNotFound = storage.ErrNotFound

// Op is one write in an atomic Storage.Apply.
type Op struct {
	Key    string
	Value  []byte
	Delete bool
}

// Storage is the hierarchical, encrypted storage an engine or a core
// component writes to (the barrier, or a View of it). Keys are paths
// separated by "/". Implementations are safe for concurrent use.
type Storage interface {
	// Get returns the value at key, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Put stores value at key, durably.
	Put(ctx context.Context, key string, value []byte) error
	// Delete removes key; removing a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List returns the direct children of prefix (which is "" or ends in
	// "/"), sorted; folders end in "/".
	List(ctx context.Context, prefix string) ([]string, error)
	// Apply performs ops atomically and durably.
	Apply(ctx context.Context, ops []Op) error
}

// View is a Storage confined to the keys under a prefix of another.
type View struct {
	s      Storage
	prefix string
}

// NewView returns the Storage of the keys under prefix in s. prefix must
// end in "/" (or be empty).
func NewView(s Storage, prefix string) *View {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &View{s: s, prefix: prefix}
}

// Prefix returns the view's prefix.
func (v *View) Prefix() string { return v.prefix }

// Get implements Storage.
func (v *View) Get(ctx context.Context, key string) ([]byte, error) {
	return v.s.Get(ctx, v.prefix+key)
}

// Put implements Storage.
func (v *View) Put(ctx context.Context, key string, value []byte) error {
	return v.s.Put(ctx, v.prefix+key, value)
}

// Delete implements Storage.
func (v *View) Delete(ctx context.Context, key string) error {
	return v.s.Delete(ctx, v.prefix+key)
}

// List implements Storage.
func (v *View) List(ctx context.Context, prefix string) ([]string, error) {
	return v.s.List(ctx, v.prefix+prefix)
}

// Apply implements Storage.
func (v *View) Apply(ctx context.Context, ops []Op) error {
	p := make([]Op, len(ops))
	for i, op := range ops {
		op.Key = v.prefix + op.Key
		p[i] = op
	}
	return v.s.Apply(ctx, p)
}

// Backend is a secrets engine or auth method mounted at a path.
type Backend interface {
	// HandleRequest serves req, whose Path is relative to the mount.
	HandleRequest(ctx context.Context, req *Request) (*Response, error)
}

// ExistenceChecker is implemented by backends that tell a create from an
// update: for a write, Exists reports whether req.Path exists. ok is false
// when the path has no existence check (the write is then an update).
type ExistenceChecker interface {
	Exists(ctx context.Context, req *Request) (ok, exists bool, err error)
}

// BackendConfig is what a Factory gets to build a Backend.
type BackendConfig struct {
	// Storage is the mount's own view; the engine sees nothing else.
	Storage Storage
	// MountPoint is where it is mounted ("secret/").
	MountPoint string
	// Options are the mount's options (for kv, "version").
	Options map[string]string
	// Now is the clock; never nil.
	Now func() time.Time
	// Logger is never nil.
	Logger *slog.Logger
	// Cache says the engine may keep what it reads in memory. Without
	// Epoch it is the only writer of Storage (a single server, or the
	// active node of a cluster), so its own writes are all it must
	// account for.
	Cache bool
	// Epoch, when set (a standby's engines, whose storage is changed by
	// replication), changes whenever Storage may have changed underneath
	// the engine, and only after the change is visible: a cache must drop
	// everything it holds whenever Epoch's value differs from the one it
	// last saw.
	Epoch func() uint64
}

// Factory builds a Backend for a new or restored mount.
type Factory func(ctx context.Context, cfg BackendConfig) (Backend, error)

// Periodic is implemented by backends with background work (e.g. automatic
// key rotation). The core calls Periodic about once a minute, only on the
// active node and only while unsealed.
type Periodic interface {
	Periodic(ctx context.Context) error
}

// SecretEngine is implemented by engines that issue leased (dynamic)
// secrets. The core calls RevokeSecret when a lease expires or is revoked
// (it must be idempotent: a retried revoke of a gone secret succeeds), and
// RenewSecret when a client renews; RenewSecret returns the TTL granted,
// which the core caps at MaxTTL from IssueTime.
type SecretEngine interface {
	RevokeSecret(ctx context.Context, s *LeasedSecret) error
	RenewSecret(ctx context.Context, s *LeasedSecret, increment time.Duration) (time.Duration, error)
}

// Unauthenticated is implemented by backends (auth methods) with paths a
// client may call without a token, such as "login" or "login/*" (a "*"
// suffix matches any rest), relative to the mount.
type Unauthenticated interface {
	UnauthenticatedPaths() []string
}

// RoleInfo is one role of an auth method, for sys/access reports.
type RoleInfo struct {
	Name     string
	Policies []string
}

// RoleLister is implemented by auth methods (and the token store) whose
// roles grant policies, so sys/access can say which roles reach a path.
type RoleLister interface {
	Roles(ctx context.Context) ([]RoleInfo, error)
}
