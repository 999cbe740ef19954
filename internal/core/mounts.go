package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// mountsKey is where the mount table lives in the barrier.
const mountsKey = "core/mounts"

// MountEntry is one mounted secrets engine (or auth method: auth mounts
// live in the same table under "auth/").
type MountEntry struct {
	Path        string            `json:"path"` // with trailing slash: "secret/", "auth/token/"
	Type        string            `json:"type"`
	Description string            `json:"description"`
	UUID        string            `json:"uuid"`
	Accessor    string            `json:"accessor"`
	Options     map[string]string `json:"options"`
	Config      MountConfig       `json:"config"`
	Local       bool              `json:"local"`
	SealWrap    bool              `json:"seal_wrap"`
	// builtin mounts (sys/, cubbyhole/, auth/token/) cannot be disabled
	// or moved.
	Builtin bool `json:"builtin"`
}

// MountConfig is the tunable part of a mount.
type MountConfig struct {
	DefaultLeaseTTL time.Duration `json:"default_lease_ttl"`
	MaxLeaseTTL     time.Duration `json:"max_lease_ttl"`
}

// mount is a live mount: its entry and the backend serving it.
type mount struct {
	entry   MountEntry
	backend logical.Backend
	view    *logical.View
}

// mountTable routes paths to mounts by longest prefix. It is safe for
// concurrent use; routing takes a read lock only.
type mountTable struct {
	mu     sync.RWMutex // guards following
	mounts map[string]*mount
}

func newMountTable() *mountTable {
	return &mountTable{mounts: make(map[string]*mount)}
}

// route returns the mount for path and the path relative to it, or nil.
// It tries the path's prefixes ending in "/" from the longest down, so its
// cost grows with the number of segments, not the number of mounts.
func (t *mountTable) route(path string) (*mount, string) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	// A request for exactly the mount ("secret" or "secret/") routes to it.
	if m, ok := t.mounts[path+"/"]; ok {
		return m, ""
	}
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] != '/' {
			continue
		}
		if m, ok := t.mounts[path[:i+1]]; ok {
			return m, path[i+1:]
		}
	}
	return nil, ""
}

func (t *mountTable) get(path string) *mount {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.mounts[path]
}

func (t *mountTable) entries() []MountEntry {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]MountEntry, 0, len(t.mounts))
	for _, m := range t.mounts {
		out = append(out, m.entry)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// conflict reports whether path overlaps an existing mount (one is a
// prefix of the other), which Vault refuses.
func (t *mountTable) conflictLocked(path string) string {
	for p := range t.mounts {
		if strings.HasPrefix(p, path) || strings.HasPrefix(path, p) {
			return p
		}
	}
	return ""
}

// mountManager owns the mount table, its persistence and the engines'
// factories.
type mountManager struct {
	store     logical.Storage // the barrier
	factories map[string]logical.Factory
	now       func() time.Time
	newID     func() string
	logger    *slog.Logger
	table     *mountTable
	// builtins are backends not built by a factory (sys, token store).
	builtins map[string]logical.Backend
	// cache and epoch are passed to engines (logical.BackendConfig): this
	// node is the only writer, or epoch tells a standby's caches when
	// replication changed storage.
	cache bool
	epoch func() uint64

	writeMu sync.Mutex // serializes table changes
}

// load reads the persisted table and starts every engine in it. A new
// server gets the default mounts.
func (m *mountManager) load(ctx context.Context, defaults []MountEntry) error {
	raw, err := m.store.Get(ctx, mountsKey)
	var entries []MountEntry
	switch {
	case errors.Is(err, logical.ErrNotFound):
		entries = defaults
		for i := range entries {
			if entries[i].UUID == "" {
				entries[i].UUID = m.newID()
			}
			if entries[i].Accessor == "" {
				entries[i].Accessor = accessorFor(entries[i].Type, entries[i].UUID)
			}
		}
		if err := m.persist(ctx, entries); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("core: read mount table: %w", err)
	default:
		if err := json.Unmarshal(raw, &entries); err != nil {
			return fmt.Errorf("core: decode mount table: %w", err)
		}
	}
	for _, e := range entries {
		mt, err := m.start(ctx, e)
		if err != nil {
			return fmt.Errorf("core: start mount %q: %w", e.Path, err)
		}
		m.table.mounts[e.Path] = mt
	}
	return nil
}

func accessorFor(typ, uuid string) string {
	return typ + "_" + strings.ReplaceAll(uuid, "-", "")[:8]
}

func (m *mountManager) persist(ctx context.Context, entries []MountEntry) error {
	raw, err := json.Marshal(entries)
	if err != nil {
		return err
	}
	if err := m.store.Put(ctx, mountsKey, raw); err != nil {
		return fmt.Errorf("core: write mount table: %w", err)
	}
	return nil
}

// viewPrefix is where a mount's data lives in the barrier: under its
// UUID, so that a remount never moves data and names reveal nothing.
func viewPrefix(e MountEntry) string {
	if strings.HasPrefix(e.Path, "auth/") {
		return "auth/" + e.UUID + "/"
	}
	return "logical/" + e.UUID + "/"
}

func (m *mountManager) start(ctx context.Context, e MountEntry) (*mount, error) {
	view := logical.NewView(m.store, viewPrefix(e))
	if b, ok := m.builtins[e.Type]; ok {
		return &mount{entry: e, backend: b, view: view}, nil
	}
	f, ok := m.factories[e.Type]
	if !ok {
		return nil, logical.Errorf(logical.Invalid, "plugin not found in the catalog: %s", e.Type)
	}
	b, err := f(ctx, logical.BackendConfig{
		Storage:    view,
		MountPoint: e.Path,
		Options:    e.Options,
		Now:        m.now,
		Logger:     m.logger.With("mount", e.Path),
		Cache:      m.cache,
		Epoch:      m.epoch,
	})
	if err != nil {
		return nil, err
	}
	return &mount{entry: e, backend: b, view: view}, nil
}

// enable mounts a new engine at e.Path.
func (m *mountManager) enable(ctx context.Context, e MountEntry) error {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	m.table.mu.RLock()
	conflict := m.table.conflictLocked(e.Path)
	m.table.mu.RUnlock()
	if conflict != "" {
		return logical.Errorf(logical.Invalid, "path is already in use at %s", conflict)
	}
	e.UUID = m.newID()
	e.Accessor = accessorFor(e.Type, e.UUID)
	mt, err := m.start(ctx, e)
	if err != nil {
		return err
	}
	entries := append(m.table.entries(), e)
	if err := m.persist(ctx, entries); err != nil {
		return err
	}
	m.table.mu.Lock()
	m.table.mounts[e.Path] = mt
	m.table.mu.Unlock()
	return nil
}

// disable unmounts path and deletes all of its data.
func (m *mountManager) disable(ctx context.Context, path string) error {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	mt := m.table.get(path)
	if mt == nil {
		return nil // Vault: disabling a missing mount succeeds
	}
	if mt.entry.Builtin {
		return logical.Errorf(logical.Invalid, "cannot unmount %q", path)
	}
	var entries []MountEntry
	for _, e := range m.table.entries() {
		if e.Path != path {
			entries = append(entries, e)
		}
	}
	if err := m.persist(ctx, entries); err != nil {
		return err
	}
	m.table.mu.Lock()
	delete(m.table.mounts, path)
	m.table.mu.Unlock()
	if err := deleteTree(ctx, m.store, mt.view.Prefix()); err != nil {
		return fmt.Errorf("core: delete data of %q: %w", path, err)
	}
	return nil
}

// tune changes a mount's config.
func (m *mountManager) tune(ctx context.Context, path string, fn func(*MountEntry) error) error {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	mt := m.table.get(path)
	if mt == nil {
		return logical.Errorf(logical.Invalid, "no mount at %q", path)
	}
	e := mt.entry
	if err := fn(&e); err != nil {
		return err
	}
	var entries []MountEntry
	for _, x := range m.table.entries() {
		if x.Path == path {
			x = e
		}
		entries = append(entries, x)
	}
	if err := m.persist(ctx, entries); err != nil {
		return err
	}
	m.table.mu.Lock()
	m.table.mounts[path] = &mount{entry: e, backend: mt.backend, view: mt.view}
	m.table.mu.Unlock()
	return nil
}

// deleteTree removes every key under prefix.
func deleteTree(ctx context.Context, s logical.Storage, prefix string) error {
	keys, err := s.List(ctx, prefix)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if strings.HasSuffix(k, "/") {
			if err := deleteTree(ctx, s, prefix+k); err != nil {
				return err
			}
			continue
		}
		if err := s.Delete(ctx, prefix+k); err != nil {
			return err
		}
	}
	return nil
}
