package kv

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// V2 is the versioned KV engine. It is safe for concurrent use.
type V2 struct {
	s   logical.Storage
	now func() time.Time
	log *slog.Logger

	cache *readCache // nil: no cache (a standby)
	locks lockSet    // one stripe per key's read-modify-write
	cfgMu sync.Mutex // serializes config read-modify-write
}

// NewV2 returns a version 2 engine over cfg.Storage (required). A nil
// cfg.Now is time.Now; a nil cfg.Logger discards.
func NewV2(cfg logical.BackendConfig) (*V2, error) {
	if cfg.Storage == nil {
		return nil, errors.New("kv: storage is required")
	}
	b := &V2{s: cfg.Storage, now: cfg.Now, log: cfg.Logger}
	if cfg.Cache {
		b.cache = newReadCache(cfg.Epoch)
		b.s = &cachingStorage{Storage: b.s, c: b.cache}
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.log == nil {
		b.log = discard()
	}
	return b, nil
}

// invalidPathWarning is Vault's answer to a path outside the v2 API.
const invalidPathWarning = "Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API endpoints to use. If using the Vault CLI, use 'vault kv %s' for this operation."

// HandleRequest implements logical.Backend; see the package doc for the
// paths. Errors are *logical.Error for the client's mistakes and plain
// errors (internal) for storage failures.
func (b *V2) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	head, key, _ := strings.Cut(req.Path, "/")
	op := req.Operation
	write := op == logical.CreateOperation || op == logical.UpdateOperation
	switch {
	case head == "config" && key == "":
		switch {
		case op == logical.ReadOperation:
			return b.readConfig(ctx)
		case write:
			return nil, b.writeConfig(ctx, req)
		}
	case head == "data":
		switch {
		case op == logical.ReadOperation:
			return b.readData(ctx, req, key)
		case write:
			return b.writeData(ctx, req, key)
		case op == logical.PatchOperation:
			return b.patchData(ctx, req, key)
		case op == logical.DeleteOperation:
			return nil, b.deleteLatest(ctx, key)
		}
	case head == "delete" || head == "undelete" || head == "destroy":
		if write {
			return nil, b.changeVersions(ctx, req, head, key)
		}
	case head == "metadata":
		switch {
		case op == logical.ReadOperation:
			return b.readMetadata(ctx, key)
		case write:
			return nil, b.writeMetadata(ctx, req, key)
		case op == logical.PatchOperation:
			return nil, b.patchMetadata(ctx, req, key)
		case op == logical.DeleteOperation:
			return nil, b.deleteMetadata(ctx, key)
		case op == logical.ListOperation:
			return list(ctx, b.s, listKey(listPrefix(key)))
		}
	case head == "subkeys":
		if op == logical.ReadOperation {
			return b.readSubkeys(ctx, req, key)
		}
	default:
		return invalidPath(op), nil
	}
	return nil, logical.ErrUnsupportedOperation
}

func invalidPath(op logical.Operation) *logical.Response {
	sub := map[logical.Operation]string{
		logical.CreateOperation: "put", logical.UpdateOperation: "put",
		logical.PatchOperation: "patch", logical.ReadOperation: "get",
		logical.ListOperation: "list", logical.DeleteOperation: "delete",
	}[op]
	return &logical.Response{
		Warnings:   []string{strings.Replace(invalidPathWarning, "%s", sub, 1)},
		StatusCode: 404,
	}
}

// Exists implements logical.ExistenceChecker for data/ and metadata/: a
// write to a key with metadata is an update, otherwise a create. Other
// paths have no existence check (their writes are updates).
func (b *V2) Exists(ctx context.Context, req *logical.Request) (ok, exists bool, err error) {
	head, key, _ := strings.Cut(req.Path, "/")
	if head != "data" && head != "metadata" {
		return false, false, nil
	}
	if key == "" {
		return true, false, nil
	}
	mu := b.locks.forKey(key)
	mu.RLock()
	defer mu.RUnlock()
	m, err := b.readMeta(ctx, key)
	if err != nil {
		return false, false, err
	}
	return true, m != nil, nil
}

// ---- config ----

func (b *V2) getConfig(ctx context.Context) (config, error) {
	var c config
	raw, err := b.s.Get(ctx, "config")
	if errors.Is(err, logical.ErrNotFound) {
		return c, nil
	}
	if err != nil {
		return c, wrap(err, "read config")
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, errors.New("kv: stored config is corrupt")
	}
	return c, nil
}

func (b *V2) readConfig(ctx context.Context) (*logical.Response, error) {
	c, err := b.getConfig(ctx)
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{
		"max_versions":          c.MaxVersions,
		"cas_required":          c.CASRequired,
		"delete_version_after":  c.DeleteVersionAfter.String(),
		"metadata_cas_required": false,
	}}, nil
}

// configRequest is the body of a config write; absent fields keep their
// value.
type configRequest struct {
	MaxVersions         *logical.Int      `json:"max_versions"`
	CASRequired         *logical.Bool     `json:"cas_required"`
	DeleteVersionAfter  *logical.Duration `json:"delete_version_after"`
	MetadataCASRequired *logical.Bool     `json:"metadata_cas_required"`
}

func (b *V2) writeConfig(ctx context.Context, req *logical.Request) error {
	var r configRequest
	if err := req.Decode(&r); err != nil {
		return err
	}
	if r.MetadataCASRequired != nil && bool(*r.MetadataCASRequired) {
		return logical.Errorf(logical.Invalid, "metadata_cas_required is not supported")
	}
	max, err := maxVersions(r.MaxVersions)
	if err != nil {
		return err
	}
	b.cfgMu.Lock()
	defer b.cfgMu.Unlock()
	c, err := b.getConfig(ctx)
	if err != nil {
		return err
	}
	if r.MaxVersions != nil {
		c.MaxVersions = max
	}
	if r.CASRequired != nil {
		c.CASRequired = bool(*r.CASRequired)
	}
	if r.DeleteVersionAfter != nil {
		c.DeleteVersionAfter = time.Duration(*r.DeleteVersionAfter)
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return wrap(err, "encode config")
	}
	if err := b.s.Put(ctx, "config", raw); err != nil {
		return wrap(err, "write config")
	}
	return nil
}

func maxVersions(v *logical.Int) (uint32, error) {
	if v == nil {
		return 0, nil
	}
	if *v < 0 || *v > 1<<31 {
		return 0, logical.Errorf(logical.Invalid, "max_versions must be between 0 and %d", 1<<31)
	}
	return uint32(*v), nil
}

// ---- data ----

// dataRequest is the body of a data write or patch.
type dataRequest struct {
	Data    json.RawMessage `json:"data"`
	Options struct {
		CAS *logical.Int `json:"cas"`
	} `json:"options"`
}

func (r *dataRequest) object() (map[string]any, error) {
	if len(r.Data) == 0 || string(r.Data) == "null" {
		return nil, logical.Errorf(logical.Invalid, "no data provided")
	}
	return decodeObject(r.Data, "data")
}

// checkCAS applies check-and-set: a given cas must equal the current
// version; without one, a mount or key that requires it refuses.
func checkCAS(c config, m *keyMeta, cas *logical.Int) error {
	switch {
	case cas != nil:
		if *cas < 0 || uint64(*cas) != m.CurrentVersion {
			return logical.Errorf(logical.Conflict, "check-and-set parameter did not match the current version")
		}
	case c.CASRequired || m.CASRequired:
		return logical.Errorf(logical.Invalid, "check-and-set parameter required for this call")
	}
	return nil
}

func (b *V2) readData(ctx context.Context, req *logical.Request, key string) (*logical.Response, error) {
	version, err := queryUint(req, "version")
	if err != nil {
		return nil, err
	}
	if key == "" {
		return nil, nil
	}
	mu := b.locks.forKey(key)
	mu.RLock()
	defer mu.RUnlock()
	m, err := b.readMeta(ctx, key)
	if err != nil || m == nil {
		return nil, err
	}
	if version == 0 {
		version = m.CurrentVersion
	}
	vm := m.Versions[version]
	if vm == nil {
		return nil, nil
	}
	resp := &logical.Response{Data: map[string]any{
		"data":     nil,
		"metadata": versionData(version, vm, m),
	}}
	if vm.Destroyed || vm.deleted(b.now()) {
		resp.StatusCode = 404
		return resp, nil
	}
	// The stored JSON goes out as it is: no decoding and re-encoding.
	raw, err := b.readVersionRaw(ctx, key, version)
	if err != nil {
		return nil, err
	}
	resp.Data.(map[string]any)["data"] = json.RawMessage(raw)
	return resp, nil
}

// versionData reads the data of a live version.
func (b *V2) versionData(ctx context.Context, key string, n uint64) (map[string]any, error) {
	raw, err := b.s.Get(ctx, versionKey(key, n))
	if err != nil {
		return nil, versionReadError(err)
	}
	return decodeStored(raw)
}

func versionReadError(err error) error {
	if errors.Is(err, logical.ErrNotFound) {
		return errors.New("kv: a live version has no data")
	}
	return wrap(err, "read version")
}

func (b *V2) writeData(ctx context.Context, req *logical.Request, key string) (*logical.Response, error) {
	return b.writeVersion(ctx, req, key, true, func(m *keyMeta, c config, data map[string]any) (*logical.Response, error) {
		return b.addVersionLocked(ctx, key, m, c, data)
	})
}

// writeVersion decodes the data of a write or patch of key and, holding
// the key's lock with its metadata loaded and the request's check-and-set
// passed, returns next(metadata, mount config, data). A key without
// metadata starts afresh if create is set and is not found otherwise.
func (b *V2) writeVersion(ctx context.Context, req *logical.Request, key string, create bool,
	next func(m *keyMeta, c config, data map[string]any) (*logical.Response, error)) (*logical.Response, error) {
	if err := checkWriteKey(key); err != nil {
		return nil, err
	}
	var r dataRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	data, err := r.object()
	if err != nil {
		return nil, err
	}
	c, err := b.getConfig(ctx)
	if err != nil {
		return nil, err
	}
	mu := b.locks.forKey(key)
	mu.Lock()
	defer mu.Unlock()
	m, err := b.metaForWrite(ctx, key)
	if err != nil {
		return nil, err
	}
	if m == nil {
		if !create {
			return nil, errNotFound()
		}
		m = newKeyMeta()
	}
	if err := checkCAS(c, m, r.Options.CAS); err != nil {
		return nil, err
	}
	return next(m, c, data)
}

// addVersionLocked stores data as the next version of key, with the
// metadata and the pruning of old versions in one Apply. The caller holds
// the key's lock.
func (b *V2) addVersionLocked(ctx context.Context, key string, m *keyMeta, c config, data map[string]any) (*logical.Response, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, wrap(err, "encode data")
	}
	n, pruned := m.addVersion(b.now().UTC(), c)
	mops, err := metaOps(key, m)
	if err != nil {
		return nil, err
	}
	ops := make([]logical.Op, 0, 1+len(pruned)+len(mops))
	ops = append(ops, logical.Op{Key: versionKey(key, n), Value: raw})
	for _, p := range pruned {
		ops = append(ops, logical.Op{Key: versionKey(key, p), Delete: true})
	}
	ops = append(ops, mops...)
	if err := b.s.Apply(ctx, ops); err != nil {
		return nil, wrap(err, "write version")
	}
	if b.cache != nil {
		b.cache.set(metaKey(key), m, nil)
		b.cache.set(versionKey(key, n), nil, raw)
	}
	return &logical.Response{Data: versionData(n, m.Versions[n], m)}, nil
}

func (b *V2) patchData(ctx context.Context, req *logical.Request, key string) (*logical.Response, error) {
	return b.writeVersion(ctx, req, key, false, func(m *keyMeta, c config, patch map[string]any) (*logical.Response, error) {
		vm := m.Versions[m.CurrentVersion]
		if vm == nil {
			return nil, errNotFound()
		}
		if vm.Destroyed || vm.deleted(b.now()) {
			return &logical.Response{Data: versionData(m.CurrentVersion, vm, m), StatusCode: 404}, nil
		}
		data, err := b.versionData(ctx, key, m.CurrentVersion)
		if err != nil {
			return nil, err
		}
		merged, _ := mergePatch(data, patch).(map[string]any)
		return b.addVersionLocked(ctx, key, m, c, merged)
	})
}

// deleteLatest soft-deletes the current version; nothing happens when it
// is missing, already deleted or destroyed.
func (b *V2) deleteLatest(ctx context.Context, key string) error {
	if key == "" {
		return nil
	}
	mu := b.locks.forKey(key)
	mu.Lock()
	defer mu.Unlock()
	m, err := getMeta(ctx, b.s, key)
	if err != nil || m == nil {
		return err
	}
	now := b.now().UTC()
	vm := m.Versions[m.CurrentVersion]
	if vm == nil || vm.Destroyed || vm.deleted(now) {
		return nil
	}
	vm.DeletionTime = now
	return b.putMetaLocked(ctx, key, m)
}

func (b *V2) putMetaLocked(ctx context.Context, key string, m *keyMeta, extra ...logical.Op) error {
	mops, err := metaOps(key, m)
	if err != nil {
		return err
	}
	if err := b.s.Apply(ctx, append(extra, mops...)); err != nil {
		return wrap(err, "write metadata")
	}
	return nil
}

// versionsRequest is the body of delete/, undelete/ and destroy/.
type versionsRequest struct {
	Versions versionList `json:"versions"`
}

// changeVersions serves delete/, undelete/ and destroy/: versions that do
// not exist, or are destroyed, are skipped as in Vault.
func (b *V2) changeVersions(ctx context.Context, req *logical.Request, action, key string) error {
	if err := checkWriteKey(key); err != nil {
		return err
	}
	var r versionsRequest
	if err := req.Decode(&r); err != nil {
		return err
	}
	if len(r.Versions) == 0 {
		return logical.Errorf(logical.Invalid, "no version number provided")
	}
	mu := b.locks.forKey(key)
	mu.Lock()
	defer mu.Unlock()
	m, err := getMeta(ctx, b.s, key)
	if err != nil || m == nil {
		return err
	}
	now := b.now().UTC()
	var ops []logical.Op
	for _, n := range r.Versions {
		vm := m.Versions[n]
		if vm == nil || vm.Destroyed {
			continue
		}
		switch action {
		case "delete":
			if !vm.deleted(now) {
				vm.DeletionTime = now
			}
		case "undelete":
			vm.DeletionTime = time.Time{}
		case "destroy":
			vm.Destroyed = true
			ops = append(ops, logical.Op{Key: versionKey(key, n), Delete: true})
		}
	}
	return b.putMetaLocked(ctx, key, m, ops...)
}

// versionList is a list of version numbers given as [1,2], ["1","2"],
// "1,2" or 3, as Vault's comma-int-slice fields accept.
type versionList []uint64

// UnmarshalJSON implements json.Unmarshaler.
func (l *versionList) UnmarshalJSON(b []byte) error {
	var items []logical.Int
	switch s := strings.TrimSpace(string(b)); {
	case s == "null":
		return nil
	case strings.HasPrefix(s, "["):
		if err := json.Unmarshal(b, &items); err != nil {
			return &logical.FieldError{Want: "list of version numbers"}
		}
	case strings.HasPrefix(s, `"`):
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return &logical.FieldError{Want: "list of version numbers"}
		}
		for _, p := range strings.Split(str, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			var n logical.Int
			if err := json.Unmarshal([]byte(`"`+p+`"`), &n); err != nil {
				return &logical.FieldError{Want: "list of version numbers"}
			}
			items = append(items, n)
		}
	default:
		var n logical.Int
		if err := n.UnmarshalJSON(b); err != nil {
			return &logical.FieldError{Want: "list of version numbers"}
		}
		items = append(items, n)
	}
	out := make(versionList, 0, len(items))
	for _, n := range items {
		if n < 0 {
			return &logical.FieldError{Want: "list of version numbers"}
		}
		out = append(out, uint64(n))
	}
	*l = out
	return nil
}

// ---- subkeys ----

func (b *V2) readSubkeys(ctx context.Context, req *logical.Request, key string) (*logical.Response, error) {
	version, err := queryUint(req, "version")
	if err != nil {
		return nil, err
	}
	depth, err := queryUint(req, "depth")
	if err != nil {
		return nil, err
	}
	if key == "" {
		return nil, nil
	}
	mu := b.locks.forKey(key)
	mu.RLock()
	defer mu.RUnlock()
	m, err := getMeta(ctx, b.s, key)
	if err != nil || m == nil {
		return nil, err
	}
	if version == 0 {
		version = m.CurrentVersion
	}
	vm := m.Versions[version]
	if vm == nil {
		return nil, nil
	}
	data := map[string]any{"subkeys": nil, "metadata": versionData(version, vm, m)}
	if vm.Destroyed || vm.deleted(b.now()) {
		return &logical.Response{Data: data, StatusCode: 404}, nil
	}
	d, err := b.versionData(ctx, key, version)
	if err != nil {
		return nil, err
	}
	data["subkeys"] = subkeys(d, int(depth), 1)
	return &logical.Response{Data: data}, nil
}
