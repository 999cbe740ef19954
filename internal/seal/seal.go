package seal

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/coffer-dev/coffer/internal/storage"
)

// Errors callers branch on. None carries key or share bytes.
var (
	// ErrNotInitialized: Unseal, attempts or Status details before Init.
	ErrNotInitialized = errors.New("seal: not initialized")
	// ErrAlreadyInitialized: Init when the barrier already has a keyring.
	ErrAlreadyInitialized = errors.New("seal: already initialized")
	// ErrInvalidConfig: secret_shares / secret_threshold out of range.
	ErrInvalidConfig = errors.New("seal: invalid seal configuration")
	// ErrInvalidKey: the combined shares do not open the stored root key
	// (or the barrier rejected it). Collected shares are discarded.
	ErrInvalidKey = errors.New("seal: invalid key")
	// ErrInvalidShare: a share of the wrong shape; it was not counted.
	ErrInvalidShare = errors.New("seal: invalid key share")
	// ErrDuplicateShare: an attempt was given a share it already has.
	ErrDuplicateShare = errors.New("seal: key share already provided")
	// ErrSealed: generate-root or rekey while sealed.
	ErrSealed = errors.New("seal: sealed")
	// ErrNoAttempt: an update, with no attempt in progress.
	ErrNoAttempt = errors.New("seal: no attempt in progress")
	// ErrAttemptInProgress: an Init of an attempt while one is running.
	ErrAttemptInProgress = errors.New("seal: attempt already in progress")
	// ErrBadNonce: an update quoting another attempt's nonce.
	ErrBadNonce = errors.New("seal: nonce does not match the attempt in progress")
	// ErrUnsupported: a protector or stored seal type this build cannot use.
	ErrUnsupported = errors.New("seal: unsupported seal type")
	// ErrAutoUnseal: Unseal (with key shares) on an auto-unseal seal,
	// which unseals itself; recovery keys only authorize generate-root
	// and rekey.
	ErrAutoUnseal = errors.New("seal: this server unseals itself (auto-unseal); unseal keys are not accepted")
	// ErrMigrationRequired: the stored seal type differs from the
	// configured one; only UnsealMigrate can open the barrier.
	ErrMigrationRequired = errors.New("seal: the stored seal type differs from the configured seal: unseal with -migrate")
)

// Barrier is what the Manager needs of the barrier; *barrier.Barrier
// satisfies it. Unseal must fail (the barrier's ErrInvalidKey) on a wrong
// key and leave the barrier sealed.
type Barrier interface {
	Initialized(ctx context.Context) (bool, error)
	Initialize(ctx context.Context, rootKey []byte) error // leaves it sealed
	Unseal(ctx context.Context, rootKey []byte) error
	Seal()
	Sealed() bool
}

// Config configures a Manager.
type Config struct {
	// Backend is the physical storage the barrier uses too. Required.
	Backend storage.Backend
	// Barrier is opened with the root key. Required.
	Barrier Barrier
	// Protector supplies the KEK. nil: Shamir{}. Anything but Shamir must
	// implement Wrapper (auto-unseal).
	Protector Protector
	// MigrateFrom is the previous auto-unseal seal (Vault's seal block with
	// disabled = "true") when migrating from it to Shamir with
	// UnsealMigrate. nil: no migration from an auto-unseal seal.
	MigrateFrom Wrapper
	// Rand makes keys, shares, nonces. nil: crypto/rand.Reader. Must be
	// safe for concurrent use if shared.
	Rand io.Reader
	// Now stamps attempts. nil: time.Now.
	Now func() time.Time
}

// Status is Vault's seal-status.
type Status struct {
	Type        string
	Initialized bool
	Sealed      bool
	// T is the threshold and N the number of shares; 0 before Init.
	T, N int
	// Progress counts the distinct unseal shares given so far, and Nonce
	// identifies that unseal attempt ("" when none is in progress).
	Progress int
	Nonce    string
	// RecoverySeal is true for auto-unseal seals; T and N then describe
	// the recovery keys (Vault's recovery_seal).
	RecoverySeal bool
	// Migration is true when the stored seal type differs from the
	// configured one (Type is the stored type): UnsealMigrate is needed.
	Migration bool
	// Reason says why the last AutoUnseal failed ("" after a success or
	// before any attempt). It names the seal and the cause, never a key.
	Reason string
}

// InitRequest is sys/init's body. A Shamir seal uses the Secret fields
// and ignores the Recovery ones; an auto-unseal seal does the opposite.
type InitRequest struct {
	SecretShares      int
	SecretThreshold   int
	RecoveryShares    int
	RecoveryThreshold int
}

// InitResult carries the operators' keys. Shamir: Keys holds SecretShares
// unseal keys, of which SecretThreshold unseal; for 1-of-1 the only key is
// the KEK itself (32 bytes, as in Vault), otherwise each key is 33 bytes
// (a Shamir share). Auto-unseal: Keys is empty and RecoveryKeys holds the
// recovery shares in the same layout.
type InitResult struct {
	Keys         [][]byte
	RecoveryKeys [][]byte
}

// Manager runs init, unseal, seal, generate-root and rekey. All methods
// are safe for concurrent use; they are serialized by one lock, held
// across storage calls (these operations are rare and must not interleave).
type Manager struct {
	backend     storage.Backend
	barrier     Barrier
	protector   Protector
	wrapper     Wrapper // protector as a Wrapper; nil for Shamir
	migrateFrom Wrapper
	rand        io.Reader
	now         func() time.Time

	mu      sync.Mutex    // guards following
	unseal  *quorum       // nil: no unseal in progress
	genRoot *quorum       // nil: no generate-root attempt
	rekey   *rekeyAttempt // nil: no rekey attempt
	reason  string        // why the last AutoUnseal failed
}

// New returns a Manager. It validates cfg: Backend and Barrier are
// required, and the Protector must be Shamir or a Wrapper
// (ErrUnsupported otherwise). New does no I/O.
func New(cfg Config) (*Manager, error) {
	if cfg.Backend == nil {
		return nil, errors.New("seal: Config.Backend is required")
	}
	if cfg.Barrier == nil {
		return nil, errors.New("seal: Config.Barrier is required")
	}
	m := &Manager{backend: cfg.Backend, barrier: cfg.Barrier, protector: cfg.Protector, migrateFrom: cfg.MigrateFrom, rand: cfg.Rand, now: cfg.Now}
	if m.protector == nil {
		m.protector = Shamir{}
	}
	if _, ok := m.protector.(Shamir); !ok {
		w, ok := m.protector.(Wrapper)
		if !ok || w.Type() == TypeShamir || w.Type() == "" {
			return nil, fmt.Errorf("%w: %q", ErrUnsupported, m.protector.Type())
		}
		m.wrapper = w
	}
	if m.rand == nil {
		m.rand = rand.Reader
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m, nil
}

// Status reports the seal status. An uninitialized server reports
// Initialized false, Sealed true and T = N = 0, as Vault does.
func (m *Manager) Status(ctx context.Context) (Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cfg, err := m.configLocked(ctx)
	if errors.Is(err, ErrNotInitialized) {
		return Status{Type: m.protector.Type(), Sealed: true, RecoverySeal: m.wrapper != nil, Reason: m.reason}, nil
	}
	if err != nil {
		return Status{}, err
	}
	return m.statusLocked(cfg), nil
}

func (m *Manager) statusLocked(cfg *sealConfig) Status {
	n, t := cfg.quorum()
	st := Status{
		Type: cfg.Type, Initialized: true, Sealed: m.barrier.Sealed(),
		T: t, N: n, RecoverySeal: cfg.auto(),
		Migration: cfg.Type != m.protector.Type(), Reason: m.reason,
	}
	if st.Sealed && m.unseal != nil {
		st.Progress, st.Nonce = len(m.unseal.shares), m.unseal.nonce
	}
	return st
}

// configLocked returns the stored config if the barrier is initialized,
// ErrNotInitialized if not.
func (m *Manager) configLocked(ctx context.Context) (*sealConfig, error) {
	ok, err := m.barrier.Initialized(ctx)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	if !ok {
		return nil, ErrNotInitialized
	}
	cfg, err := loadConfig(ctx, m.backend)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, fmt.Errorf("seal: barrier is initialized but %s is missing", ConfigPath)
	}
	return cfg, nil
}

// Init creates the root key and the KEK, stores the seal config and the
// wrapped root key, initializes the barrier, and leaves it UNSEALED so the
// caller can create the root token; the caller then calls Seal. It returns
// ErrInvalidConfig for bad shares/threshold (Vault's rules: 1 <= threshold
// <= shares <= 255, and threshold 1 only with one share) and
// ErrAlreadyInitialized. If it fails before the barrier is initialized,
// Init can simply be called again. Once the seal entries are stored, a
// failure still returns the keys along with the error: if the barrier did
// get initialized they are the only way to unseal it, so the caller must
// show them (or retry Init, which overwrites them if it did not).
//
// With an auto-unseal Protector, Init validates RecoveryShares and
// RecoveryThreshold by the same rules, wraps the KEK with the Wrapper (an
// unreachable seal key is ErrKeyUnavailable and nothing is written) and
// returns the recovery keys; the stored seal config then has secret
// shares and threshold 1.
func (m *Manager) Init(ctx context.Context, req InitRequest) (*InitResult, error) {
	cfg := &sealConfig{Type: m.protector.Type(), SecretShares: req.SecretShares, SecretThreshold: req.SecretThreshold}
	if m.wrapper != nil {
		cfg.SecretShares, cfg.SecretThreshold = 1, 1
		cfg.RecoveryShares, cfg.RecoveryThreshold = req.RecoveryShares, req.RecoveryThreshold
		if err := validateShares(req.RecoveryShares, req.RecoveryThreshold); err != nil {
			return nil, fmt.Errorf("%w (recovery keys)", err)
		}
	} else if err := validateShares(req.SecretShares, req.SecretThreshold); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ok, err := m.barrier.Initialized(ctx)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	if ok {
		return nil, ErrAlreadyInitialized
	}

	rootKey, err := randomKey(m.rand)
	if err != nil {
		return nil, err
	}
	defer clear(rootKey)
	kek, err := randomKey(m.rand)
	if err != nil {
		return nil, err
	}
	defer clear(kek)
	wrapped, err := wrapRootKey(m.rand, kek, rootKey)
	if err != nil {
		return nil, err
	}
	ops := []storage.Op{
		{Key: ConfigPath, Value: cfg.marshal()},
		{Key: RootKeyPath, Value: wrapped},
	}
	res := &InitResult{}
	if m.wrapper == nil {
		if res.Keys, err = splitKEK(kek, cfg, m.rand); err != nil {
			return nil, err
		}
	} else {
		blob, err := m.wrapper.Wrap(ctx, kek)
		if err != nil {
			return nil, fmt.Errorf("seal: wrap KEK with the %s seal: %w", m.wrapper.Type(), err)
		}
		recoveryKey, err := randomKey(m.rand)
		if err != nil {
			return nil, err
		}
		defer clear(recoveryKey)
		if res.RecoveryKeys, err = splitKEK(recoveryKey, cfg, m.rand); err != nil {
			return nil, err
		}
		check, err := sealRecoveryCheck(m.rand, recoveryKey)
		if err != nil {
			return nil, err
		}
		ops = append(ops, storage.Op{Key: KEKPath, Value: blob}, storage.Op{Key: RecoveryCheckPath, Value: check})
	}
	// The seal entries go first: a failure after this leaves the barrier
	// uninitialized, and a retried Init overwrites them.
	if err := m.backend.Apply(ctx, ops); err != nil {
		return nil, fmt.Errorf("seal: write seal entries: %w", err)
	}
	// From here on the keys may be the only way into an initialized
	// barrier (an Apply can fail after it became durable), so they are
	// returned even with an error.
	if err := m.barrier.Initialize(ctx, rootKey); err != nil {
		return res, fmt.Errorf("seal: initialize barrier: %w", err)
	}
	if err := m.barrier.Unseal(ctx, rootKey); err != nil {
		return res, fmt.Errorf("seal: unseal new barrier: %w", err)
	}
	m.resetAllLocked()
	m.reason = ""
	return res, nil
}

// Unseal adds key (one share, or for 1-of-1 the key itself) to the unseal
// progress. Below the threshold it returns the status with Progress; a
// share already given is ignored (no error, no progress). At the threshold
// it combines the shares, opens the root key and unseals the barrier; the
// shares are discarded either way, and a result that opens nothing is
// ErrInvalidKey. A share of the wrong shape is ErrInvalidShare, not
// counted, progress kept. When already unsealed it returns the status. It
// returns ErrNotInitialized before Init, ErrAutoUnseal for an auto-unseal
// seal and ErrMigrationRequired when the stored seal type is not the
// configured one.
func (m *Manager) Unseal(ctx context.Context, key []byte) (Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cfg, err := m.configLocked(ctx)
	if err != nil {
		return Status{}, err
	}
	if !m.barrier.Sealed() {
		return m.statusLocked(cfg), nil
	}
	switch {
	case cfg.Type != m.protector.Type():
		return m.statusLocked(cfg), ErrMigrationRequired
	case cfg.auto():
		return m.statusLocked(cfg), ErrAutoUnseal
	}
	st, kek, err := m.addUnsealShareLocked(cfg, key)
	if err != nil || kek == nil {
		return st, err
	}
	defer clear(kek)
	if err := m.openBarrierLocked(ctx, kek); err != nil {
		return m.statusLocked(cfg), err
	}
	return m.statusLocked(cfg), nil
}

// addUnsealShareLocked adds key to the unseal quorum of cfg, starting
// one if none is in progress. Once the threshold is reached it drops the
// quorum and returns the combined secret, which the caller clears; until
// then, or when key was already given (not an error), the secret is nil.
// The Status is the one to return with an error or a nil secret: the zero
// Status if no quorum could be started, cfg's otherwise.
func (m *Manager) addUnsealShareLocked(cfg *sealConfig, key []byte) (Status, []byte, error) {
	if m.unseal == nil {
		q, err := newQuorum(m.rand, m.now(), cfg)
		if err != nil {
			return Status{}, nil, err
		}
		m.unseal = q
	}
	switch err := m.unseal.add(key); {
	case errors.Is(err, ErrDuplicateShare):
		return m.statusLocked(cfg), nil, nil
	case err != nil:
		return m.statusLocked(cfg), nil, err
	}
	if !m.unseal.ready() {
		return m.statusLocked(cfg), nil, nil
	}
	secret, err := m.unseal.combine()
	m.unseal.reset()
	m.unseal = nil
	if err != nil {
		return m.statusLocked(cfg), nil, err
	}
	return m.statusLocked(cfg), secret, nil
}

// openBarrierLocked opens the stored root key with kek and unseals the
// barrier with it.
func (m *Manager) openBarrierLocked(ctx context.Context, kek []byte) error {
	rootKey, err := openRootKey(ctx, m.backend, kek)
	if err != nil {
		return err
	}
	defer clear(rootKey)
	if err := m.barrier.Unseal(ctx, rootKey); err != nil {
		return fmt.Errorf("%w: barrier refused the root key: %w", ErrInvalidKey, err)
	}
	return nil
}

// ResetUnseal discards the unseal progress.
func (m *Manager) ResetUnseal() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.unseal != nil {
		m.unseal.reset()
		m.unseal = nil
	}
}

// Seal seals the barrier (wiping its keys) and discards unseal progress
// and any generate-root or rekey attempt. Sealing a sealed or
// uninitialized server does nothing. The error is for future seal kinds;
// it is nil today.
func (m *Manager) Seal(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.barrier.Seal()
	m.resetAllLocked()
	return nil
}

func (m *Manager) resetAllLocked() {
	if m.unseal != nil {
		m.unseal.reset()
		m.unseal = nil
	}
	if m.genRoot != nil {
		m.genRoot.reset()
		m.genRoot = nil
	}
	if m.rekey != nil {
		m.rekey.reset()
		m.rekey = nil
	}
}
