package transit

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// Config configures a Backend.
type Config struct {
	// Storage is the mount's own storage view. Required.
	Storage logical.Storage
	// Now is the clock used for key creation times and auto-rotation.
	// nil: time.Now.
	Now func() time.Time
	// Rand is the source of key material, nonces and random bytes.
	// nil: crypto/rand.Reader.
	Rand io.Reader
	// Logger receives key lifecycle events (never key material).
	// nil: discard.
	Logger *slog.Logger
}

// Backend is the transit secrets engine. It implements logical.Backend,
// logical.ExistenceChecker and logical.Periodic, and is safe for
// concurrent use.
type Backend struct {
	storage logical.Storage
	now     func() time.Time
	rand    io.Reader
	log     *slog.Logger

	seed  maphash.Seed
	locks [64]sync.Mutex // per-key write locks, striped by name

	mu    sync.RWMutex // guards following
	cache map[string]*policy
}

var (
	_ logical.Backend          = (*Backend)(nil)
	_ logical.ExistenceChecker = (*Backend)(nil)
	_ logical.Periodic         = (*Backend)(nil)
)

// New returns a transit Backend over cfg.Storage. It returns an error if
// cfg.Storage is nil.
func New(cfg Config) (*Backend, error) {
	if cfg.Storage == nil {
		return nil, errors.New("transit: Config.Storage is required")
	}
	b := &Backend{
		storage: cfg.Storage,
		now:     cfg.Now,
		rand:    cfg.Rand,
		log:     cfg.Logger,
		seed:    maphash.MakeSeed(),
		cache:   make(map[string]*policy),
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.rand == nil {
		b.rand = rand.Reader
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	return b, nil
}

// Factory is the logical.Factory of the transit engine: a Backend over
// cfg.Storage with cfg.Now, cfg.Logger and crypto/rand.
func Factory(ctx context.Context, cfg logical.BackendConfig) (logical.Backend, error) {
	return New(Config{Storage: cfg.Storage, Now: cfg.Now, Logger: cfg.Logger})
}

const storagePrefix = "policy/"

// keyLock returns the write lock of the key named name.
func (b *Backend) keyLock(name string) *sync.Mutex {
	return &b.locks[maphash.String(b.seed, name)%uint64(len(b.locks))]
}

// get returns the current snapshot of the key named name, or nil if it
// does not exist. A cached key costs no storage read and no lock but a
// read lock on the map.
func (b *Backend) get(ctx context.Context, name string) (*policy, error) {
	b.mu.RLock()
	p := b.cache[name]
	b.mu.RUnlock()
	if p != nil {
		return p, nil
	}
	l := b.keyLock(name)
	l.Lock()
	defer l.Unlock()
	return b.loadLocked(ctx, name)
}

// loadLocked returns the key from the cache or, failing that, from storage,
// caching it. The caller holds the key's write lock.
func (b *Backend) loadLocked(ctx context.Context, name string) (*policy, error) {
	b.mu.RLock()
	p := b.cache[name]
	b.mu.RUnlock()
	if p != nil {
		return p, nil
	}
	raw, err := b.storage.Get(ctx, storagePrefix+name)
	if errors.Is(err, logical.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("transit: read key %q: %w", name, err)
	}
	if p, err = unmarshalPolicy(raw); err != nil {
		return nil, fmt.Errorf("transit: key %q: %w", name, err)
	}
	b.publish(name, p)
	return p, nil
}

// publish makes p the current snapshot of name (nil removes it).
func (b *Backend) publish(name string, p *policy) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p == nil {
		delete(b.cache, name)
		return
	}
	b.cache[name] = p
}

// storeLocked writes p to storage and, once that succeeded, publishes it.
// The caller holds the key's write lock.
func (b *Backend) storeLocked(ctx context.Context, p *policy) error {
	raw, err := p.marshal()
	if err != nil {
		return fmt.Errorf("transit: encode key %q: %w", p.name, err)
	}
	if err := b.storage.Put(ctx, storagePrefix+p.name, raw); err != nil {
		return fmt.Errorf("transit: write key %q: %w", p.name, err)
	}
	b.publish(p.name, p)
	return nil
}

// update runs fn on a clone of the key named name under its write lock and
// stores the result. fn returns an error to abandon the change. It returns
// (nil, nil) if the key does not exist.
func (b *Backend) update(ctx context.Context, name string, fn func(p *policy) error) (*policy, error) {
	l := b.keyLock(name)
	l.Lock()
	defer l.Unlock()
	cur, err := b.loadLocked(ctx, name)
	if err != nil || cur == nil {
		return nil, err
	}
	p := cur.clone()
	if err := fn(p); err != nil {
		return nil, err
	}
	if err := b.storeLocked(ctx, p); err != nil {
		return nil, err
	}
	return p, nil
}

// createParams are the settings of a new key.
type createParams struct {
	typ                  keyType
	derived              bool
	convergent           bool
	exportable           bool
	allowPlaintextBackup bool
	autoRotatePeriod     time.Duration
	// forEncryption: the key is created by a first encrypt.
	forEncryption bool
}

func (c *createParams) validate() error {
	if c.forEncryption && !c.typ.supportsEncryption() {
		return userError("key type %s does not support encryption", c.typ)
	}
	if c.convergent && !c.derived {
		return userError("convergent encryption requires derivation to be enabled")
	}
	if c.convergent && !c.typ.symmetric() {
		return userError("convergent encryption not supported for keys of type %s", c.typ)
	}
	if c.derived && !c.typ.supportsDerivation() {
		return userError("key derivation not supported for keys of type %s", c.typ)
	}
	return validateAutoRotate(c.autoRotatePeriod)
}

func validateAutoRotate(d time.Duration) error {
	if d != 0 && d < time.Hour {
		return userError("auto rotate period must be 0 to disable or at least an hour")
	}
	return nil
}

// getOrCreate returns the key named name, creating it with c if it does
// not exist; created reports whether it did.
func (b *Backend) getOrCreate(ctx context.Context, name string, c createParams) (p *policy, created bool, err error) {
	if p, err := b.get(ctx, name); err != nil || p != nil {
		return p, false, err
	}
	if err := c.validate(); err != nil {
		return nil, false, err
	}
	l := b.keyLock(name)
	l.Lock()
	defer l.Unlock()
	if p, err := b.loadLocked(ctx, name); err != nil || p != nil {
		return p, false, err
	}
	v, err := newVersion(c.typ, c.derived, b.rand, b.now())
	if err != nil {
		return nil, false, err
	}
	id, err := newUUID(b.rand)
	if err != nil {
		return nil, false, err
	}
	p = &policy{
		id: id, name: name, typ: c.typ, derived: c.derived, convergent: c.convergent,
		exportable: c.exportable, allowPlaintextBackup: c.allowPlaintextBackup,
		autoRotatePeriod: c.autoRotatePeriod, latestVersion: 1, minDecryptionVersion: 1,
		versions: map[int]*version{1: v},
	}
	if err := b.storeLocked(ctx, p); err != nil {
		return nil, false, err
	}
	b.log.InfoContext(ctx, "transit key created", "name", name, "type", string(c.typ))
	return p, true, nil
}

// rotate adds a new latest version to p, a clone being updated.
func (b *Backend) rotate(p *policy) error {
	v, err := newVersion(p.typ, p.derived, b.rand, b.now())
	if err != nil {
		return err
	}
	p.latestVersion++
	p.versions[p.latestVersion] = v
	return nil
}

// Periodic implements logical.Periodic: it rotates every key whose
// auto_rotate_period has elapsed since its latest version was created. It
// goes on past a key that fails and returns the first error.
func (b *Backend) Periodic(ctx context.Context) error {
	names, err := b.storage.List(ctx, storagePrefix)
	if err != nil {
		return fmt.Errorf("transit: list keys: %w", err)
	}
	var first error
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		p, err := b.get(ctx, name)
		if err != nil || p == nil || !b.rotationDue(p) {
			if first == nil {
				first = err
			}
			continue
		}
		rotated := false
		_, err = b.update(ctx, name, func(p *policy) error {
			if !b.rotationDue(p) {
				return errNoChange
			}
			rotated = true
			return b.rotate(p)
		})
		if err != nil && !errors.Is(err, errNoChange) {
			b.log.ErrorContext(ctx, "transit auto-rotation failed", "name", name, "error", err)
			if first == nil {
				first = err
			}
			continue
		}
		if rotated {
			b.log.InfoContext(ctx, "transit key auto-rotated", "name", name)
		}
	}
	return first
}

var errNoChange = errors.New("transit: no change")

func (b *Backend) rotationDue(p *policy) bool {
	if p.autoRotatePeriod <= 0 {
		return false
	}
	v := p.versions[p.latestVersion]
	return !b.now().Before(v.created.Add(p.autoRotatePeriod))
}

// nameRE is Vault's GenericNameRegex: word characters, with - . @ inside.
var nameRE = regexp.MustCompile(`^\w(([\w.@-]+)?\w)?$`)

func validName(name string) error {
	if !nameRE.MatchString(name) {
		return userError("invalid key name")
	}
	return nil
}

// Exists implements logical.ExistenceChecker for keys/<name> and
// encrypt/<name>, so that creating a key, even implicitly by a first
// encrypt, needs the create capability as in Vault.
func (b *Backend) Exists(ctx context.Context, req *logical.Request) (ok, exists bool, err error) {
	parts := strings.Split(strings.Trim(req.Path, "/"), "/")
	if len(parts) != 2 || (parts[0] != "keys" && parts[0] != "encrypt") || validName(parts[1]) != nil {
		return false, false, nil
	}
	p, err := b.get(ctx, parts[1])
	if err != nil {
		return true, false, err
	}
	return true, p != nil, nil
}

func isWrite(op logical.Operation) bool {
	return op == logical.UpdateOperation || op == logical.CreateOperation
}

// HandleRequest implements logical.Backend. Errors are *logical.Error for
// the client's mistakes (Invalid, NotFound, Unsupported) and wrapped
// storage errors otherwise; no message carries key material or plaintext.
func (b *Backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	path := strings.TrimSuffix(req.Path, "/")
	parts := strings.Split(path, "/")
	op := req.Operation
	// check returns the handler when op is allowed.
	route := func(allowed bool, h func() (*logical.Response, error)) (*logical.Response, error) {
		if !allowed {
			return nil, logical.ErrUnsupportedOperation
		}
		return h()
	}
	nameAt := func(i int) (string, error) {
		if err := validName(parts[i]); err != nil {
			return "", err
		}
		return parts[i], nil
	}
	var h func(name string) (*logical.Response, error)
	var nameIdx int
	var allowed bool
	switch {
	case path == "keys":
		return route(op == logical.ListOperation, func() (*logical.Response, error) { return b.listKeys(ctx) })
	case parts[0] == "keys" && len(parts) == 2:
		nameIdx, allowed = 1, true
		switch {
		case op == logical.ReadOperation:
			h = func(n string) (*logical.Response, error) { return b.readKey(ctx, n) }
		case isWrite(op):
			h = func(n string) (*logical.Response, error) { return b.createKey(ctx, req, n) }
		case op == logical.DeleteOperation:
			h = func(n string) (*logical.Response, error) { return b.deleteKey(ctx, n) }
		default:
			allowed = false
		}
	case parts[0] == "keys" && len(parts) == 3:
		nameIdx, allowed = 1, isWrite(op)
		switch parts[2] {
		case "config":
			h = func(n string) (*logical.Response, error) { return b.configKey(ctx, req, n) }
		case "rotate":
			h = func(n string) (*logical.Response, error) { return b.rotateKey(ctx, n) }
		case "trim":
			h = func(n string) (*logical.Response, error) { return b.trimKey(ctx, req, n) }
		default:
			return nil, logical.ErrUnsupportedPath(req.Path)
		}
	case parts[0] == "export" && (len(parts) == 3 || len(parts) == 4):
		ver := ""
		if len(parts) == 4 {
			ver = parts[3]
		}
		nameIdx, allowed = 2, op == logical.ReadOperation
		h = func(n string) (*logical.Response, error) { return b.exportKey(ctx, parts[1], n, ver) }
	case len(parts) == 2 && (parts[0] == "encrypt" || parts[0] == "decrypt" || parts[0] == "rewrap"):
		nameIdx, allowed = 1, isWrite(op)
		h = map[string]func(string) (*logical.Response, error){
			"encrypt": func(n string) (*logical.Response, error) { return b.encrypt(ctx, req, n) },
			"decrypt": func(n string) (*logical.Response, error) { return b.decrypt(ctx, req, n) },
			"rewrap":  func(n string) (*logical.Response, error) { return b.rewrap(ctx, req, n) },
		}[parts[0]]
	case parts[0] == "datakey" && len(parts) == 3:
		nameIdx, allowed = 2, isWrite(op)
		h = func(n string) (*logical.Response, error) { return b.datakey(ctx, req, parts[1], n) }
	case (parts[0] == "sign" || parts[0] == "verify" || parts[0] == "hmac") && (len(parts) == 2 || len(parts) == 3):
		algo := ""
		if len(parts) == 3 {
			algo = parts[2]
		}
		nameIdx, allowed = 1, isWrite(op)
		h = map[string]func(string) (*logical.Response, error){
			"sign":   func(n string) (*logical.Response, error) { return b.sign(ctx, req, n, algo) },
			"verify": func(n string) (*logical.Response, error) { return b.verify(ctx, req, n, algo) },
			"hmac":   func(n string) (*logical.Response, error) { return b.hmac(ctx, req, n, algo) },
		}[parts[0]]
	case parts[0] == "random" && len(parts) <= 3:
		return route(isWrite(op), func() (*logical.Response, error) { return b.random(req, parts[1:]) })
	case parts[0] == "hash" && len(parts) <= 2:
		return route(isWrite(op), func() (*logical.Response, error) { return b.hash(req, parts[1:]) })
	default:
		return nil, logical.ErrUnsupportedPath(req.Path)
	}
	if !allowed {
		return nil, logical.ErrUnsupportedOperation
	}
	name, err := nameAt(nameIdx)
	if err != nil {
		return nil, err
	}
	return h(name)
}

// newUUID returns a random (version 4) UUID.
func newUUID(r io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("transit: read random: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
