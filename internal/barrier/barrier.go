package barrier

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/storage"
)

// ErrSealed is returned by every storage operation, Rotate, KeyStatus and
// ChangeRootKey attempted while the barrier is sealed. The core maps it to
// logical.ErrSealed.
var ErrSealed = errors.New("barrier: sealed")

// ErrInvalidKey is returned by Unseal when the root key cannot open the
// keyring, and by any method given a root key that is not 32 bytes.
var ErrInvalidKey = errors.New("barrier: invalid root key")

// ErrAlreadyInitialized is returned by Initialize when a keyring exists.
var ErrAlreadyInitialized = errors.New("barrier: already initialized")

// ErrNotInitialized is returned by Unseal when there is no keyring.
var ErrNotInitialized = errors.New("barrier: not initialized")

// ErrCorrupt is returned when a stored value fails to decrypt: it was
// altered, copied to another key, truncated, or written under a key term
// this barrier does not have.
var ErrCorrupt = errors.New("barrier: stored entry is corrupt or was tampered with")

// ErrInvalidPath is returned for a logical path the barrier cannot store:
// empty, starting or (for an entry) ending in "/", or with an empty
// segment ("a//b"); and for a List prefix that is not "" and does not end
// in "/".
var ErrInvalidPath = errors.New("barrier: invalid path")

// DefaultDirCacheSize is the number of folder entries a barrier remembers
// as existing when Config.DirCacheSize is zero.
const DefaultDirCacheSize = 16384

// Config configures a Barrier.
type Config struct {
	// Backend is the physical storage. Required.
	Backend storage.Backend
	// Rand is the source of keys and nonces; it must be safe for
	// concurrent use. nil: crypto/rand.Reader.
	Rand io.Reader
	// Now is the clock that stamps key terms. nil: time.Now.
	Now func() time.Time
	// DirCacheSize bounds how many folder entries known to exist are kept
	// in memory, so that a Put need not rewrite its ancestors' entries.
	// 0: DefaultDirCacheSize. Negative: no cache (every Put rewrites them).
	DirCacheSize int
}

// KeyInfo describes the active encryption key term.
type KeyInfo struct {
	// Term is the active term, counted from 1.
	Term uint32
	// InstallTime is when the term was created.
	InstallTime time.Time
	// Encryptions counts values encrypted under any term since the
	// barrier was last unsealed.
	Encryptions int64
}

// Barrier encrypts every entry written to a storage.Backend; see the
// package documentation. It implements logical.Storage. All methods are
// safe for concurrent use, including Seal racing with reads and writes.
type Barrier struct {
	backend  storage.Backend
	rand     io.Reader
	now      func() time.Time
	cacheMax int

	initMu sync.Mutex // serializes Initialize

	// mu guards the following. Every storage operation holds it for
	// reading from start to end, so Seal (which takes it for writing)
	// wipes keys only once no operation is using them.
	mu      sync.RWMutex
	kr      *keyring // nil while sealed
	rootKey []byte   // nil while sealed

	encryptions atomic.Int64

	// tree is held for reading by every write, and for writing by the
	// removal of empty folders, which must not race with a Put that
	// re-creates one.
	tree sync.RWMutex

	cacheMu sync.Mutex          // guards following
	dirs    map[string]struct{} // physical keys of folder entries known to exist
}

var _ logical.Storage = (*Barrier)(nil)

// New returns a sealed barrier over cfg.Backend.
func New(cfg Config) (*Barrier, error) {
	if cfg.Backend == nil {
		return nil, errors.New("barrier: Config.Backend is required")
	}
	b := &Barrier{backend: cfg.Backend, rand: cfg.Rand, now: cfg.Now, cacheMax: cfg.DirCacheSize}
	if b.rand == nil {
		b.rand = rand.Reader
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.cacheMax == 0 {
		b.cacheMax = DefaultDirCacheSize
	}
	return b, nil
}

// String describes b without revealing any key.
func (b *Barrier) String() string {
	if b.Sealed() {
		return "barrier(sealed)"
	}
	return "barrier(unsealed)"
}

// LogValue implements slog.LogValuer without revealing any key.
func (b *Barrier) LogValue() slog.Value { return slog.StringValue(b.String()) }

// GenerateKey returns 32 random bytes from r (nil: crypto/rand.Reader),
// suitable as a root key.
func GenerateKey(r io.Reader) ([]byte, error) {
	if r == nil {
		r = rand.Reader
	}
	k := make([]byte, keySize)
	if _, err := io.ReadFull(r, k); err != nil {
		return nil, fmt.Errorf("barrier: generate key: %w", err)
	}
	return k, nil
}

// Initialized reports whether a keyring exists in the backend. It works
// whether sealed or not.
func (b *Barrier) Initialized(ctx context.Context) (bool, error) {
	_, err := b.backend.Get(ctx, keyringPath)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, storage.ErrNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("barrier: read keyring: %w", err)
	}
}

// Initialize creates a keyring (a path key and key term 1) and stores it
// encrypted under rootKey, which must be 32 bytes. The barrier stays
// sealed; rootKey is not stored. It returns ErrAlreadyInitialized if a
// keyring exists, ErrInvalidKey if rootKey has the wrong length.
func (b *Barrier) Initialize(ctx context.Context, rootKey []byte) error {
	rootAEAD, err := newAEAD(rootKey)
	if err != nil {
		return err
	}
	b.initMu.Lock()
	defer b.initMu.Unlock()
	ok, err := b.Initialized(ctx)
	if err != nil {
		return err
	}
	if ok {
		return ErrAlreadyInitialized
	}
	pathKey, err := GenerateKey(b.rand)
	if err != nil {
		return err
	}
	key, err := GenerateKey(b.rand)
	if err != nil {
		return err
	}
	aead, err := newAEAD(key)
	if err != nil {
		return err
	}
	kr := newKeyring(pathKey)
	kr.terms = []term{{n: 1, installed: b.now().UTC(), key: key, aead: aead}}
	defer kr.wipe()
	return b.persistKeyring(ctx, rootAEAD, kr)
}

// persistKeyring writes kr encrypted under rootAEAD.
func (b *Barrier) persistKeyring(ctx context.Context, rootAEAD cipher.AEAD, kr *keyring) error {
	pt := kr.marshal()
	defer clear(pt)
	v, err := sealEnvelope(rootAEAD, b.rand, 0, keyringContext, pt)
	if err != nil {
		return err
	}
	if err := b.backend.Apply(ctx, []storage.Op{{Key: keyringPath, Value: v}}); err != nil {
		return fmt.Errorf("barrier: write keyring: %w", err)
	}
	return nil
}

// Unseal reads the keyring and decrypts it with rootKey. It returns
// ErrNotInitialized if there is no keyring and ErrInvalidKey if rootKey
// cannot open it; the barrier's state is then unchanged. Unsealing an
// unsealed barrier reloads the keyring (picking up a rotation made through
// another barrier over the same storage). Entries still in the first
// physical layout are moved to the current one before the barrier opens
// (see migrate.go); if that fails, Unseal returns the error and may be
// retried: the move resumes where it stopped.
func (b *Barrier) Unseal(ctx context.Context, rootKey []byte) error {
	rootAEAD, err := newAEAD(rootKey)
	if err != nil {
		return err
	}
	v, err := b.backend.Get(ctx, keyringPath)
	if errors.Is(err, storage.ErrNotFound) {
		return ErrNotInitialized
	}
	if err != nil {
		return fmt.Errorf("barrier: read keyring: %w", err)
	}
	pt, err := openEnvelope(rootAEAD, keyringContext, v)
	if err != nil {
		return ErrInvalidKey
	}
	defer clear(pt)
	kr, err := parseKeyring(pt)
	if err != nil {
		return fmt.Errorf("barrier: keyring: %w", err)
	}
	if _, err := migrateV1(ctx, b.backend, kr); err != nil {
		kr.wipe()
		return err
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.kr == nil {
		b.encryptions.Store(0)
	} else {
		b.kr.wipe()
		clear(b.rootKey)
	}
	b.kr = kr
	b.rootKey = append([]byte(nil), rootKey...)
	b.ResetDirCache()
	return nil
}

// Seal wipes the keys from memory. It waits for storage operations in
// progress to finish; later ones return ErrSealed. Sealing a sealed
// barrier does nothing.
func (b *Barrier) Seal() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.kr == nil {
		return
	}
	b.kr.wipe()
	b.kr = nil
	clear(b.rootKey)
	b.rootKey = nil
	b.ResetDirCache()
}

// Sealed reports whether the barrier is sealed.
func (b *Barrier) Sealed() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.kr == nil
}

// KeyStatus describes the active key term. It returns ErrSealed if sealed.
func (b *Barrier) KeyStatus() (KeyInfo, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.kr == nil {
		return KeyInfo{}, ErrSealed
	}
	return b.keyInfoLocked(), nil
}

func (b *Barrier) keyInfoLocked() KeyInfo {
	t := b.kr.active()
	return KeyInfo{Term: t.n, InstallTime: t.installed, Encryptions: b.encryptions.Load()}
}

// Rotate adds a new key term, stores the keyring, and encrypts every later
// write under the new term; entries written before stay readable (they are
// re-encrypted only when next written). Reads and writes wait while the
// keyring is stored. On error the active term is unchanged.
func (b *Barrier) Rotate(ctx context.Context) (KeyInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.kr == nil {
		return KeyInfo{}, ErrSealed
	}
	key, err := GenerateKey(b.rand)
	if err != nil {
		return KeyInfo{}, err
	}
	kr, err := b.kr.withNewTerm(key, b.now().UTC())
	if err != nil {
		clear(key)
		return KeyInfo{}, err
	}
	rootAEAD, err := newAEAD(b.rootKey)
	if err != nil {
		return KeyInfo{}, err
	}
	if err := b.persistKeyring(ctx, rootAEAD, kr); err != nil {
		clear(key) // only the new key: the others are shared with b.kr
		return KeyInfo{}, err
	}
	b.kr = kr
	return b.keyInfoLocked(), nil
}

// ChangeRootKey stores the keyring encrypted under newRootKey (32 bytes)
// instead of the current root key; the data keys do not change. It returns
// ErrSealed if sealed and ErrInvalidKey if newRootKey has the wrong length.
// On error the stored keyring still opens with the old root key.
func (b *Barrier) ChangeRootKey(ctx context.Context, newRootKey []byte) error {
	rootAEAD, err := newAEAD(newRootKey)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.kr == nil {
		return ErrSealed
	}
	if err := b.persistKeyring(ctx, rootAEAD, b.kr); err != nil {
		return err
	}
	clear(b.rootKey)
	b.rootKey = append([]byte(nil), newRootKey...)
	return nil
}
