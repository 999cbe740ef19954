package seal

import (
	"context"
	"fmt"

	"github.com/coffer-dev/coffer/internal/storage"
)

// GenerateRootInit starts a generate-root attempt (Vault's
// sys/generate-root/attempt): a quorum of current key shares that proves
// the operators may mint a new root token. It returns ErrSealed,
// ErrNotInitialized, or ErrAttemptInProgress if one is running.
func (m *Manager) GenerateRootInit(ctx context.Context) (AttemptStatus, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cfg, err := m.unsealedConfigLocked(ctx)
	if err != nil {
		return AttemptStatus{}, err
	}
	if m.genRoot != nil {
		return AttemptStatus{}, ErrAttemptInProgress
	}
	q, err := newQuorum(m.rand, m.now(), cfg)
	if err != nil {
		return AttemptStatus{}, err
	}
	m.genRoot = q
	return q.status(), nil
}

// GenerateRootUpdate adds key to the attempt identified by nonce. done is
// true once the threshold was reached AND the combined shares open the
// stored root key: the attempt is then over and the caller mints the root
// token. Errors: ErrNoAttempt, ErrBadNonce, ErrDuplicateShare and
// ErrInvalidShare (not counted, progress kept), ErrInvalidKey (the
// combined shares are wrong: progress resets, the attempt and its nonce
// stay), ErrSealed.
func (m *Manager) GenerateRootUpdate(ctx context.Context, nonce string, key []byte) (st AttemptStatus, done bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cfg, err := m.unsealedConfigLocked(ctx)
	if err != nil {
		return AttemptStatus{}, false, err
	}
	q := m.genRoot
	if q == nil {
		return AttemptStatus{}, false, ErrNoAttempt
	}
	if nonce != q.nonce {
		return AttemptStatus{}, false, ErrBadNonce
	}
	if err := q.add(key); err != nil {
		return q.status(), false, err
	}
	if !q.ready() {
		return q.status(), false, nil
	}
	final := q.status()
	kek, err := q.combine()
	q.reset()
	if err != nil {
		return q.status(), false, err
	}
	defer clear(kek)
	if err := checkQuorumKey(ctx, m.backend, cfg, kek); err != nil {
		return q.status(), false, err
	}
	m.genRoot = nil
	return final, true, nil
}

// GenerateRootCancel ends the generate-root attempt, if any.
func (m *Manager) GenerateRootCancel() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.genRoot != nil {
		m.genRoot.reset()
		m.genRoot = nil
	}
}

// GenerateRootStatus describes the generate-root attempt; with none,
// Started is false and Required is the current threshold. It returns
// ErrNotInitialized before Init.
func (m *Manager) GenerateRootStatus(ctx context.Context) (AttemptStatus, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.genRoot != nil {
		return m.genRoot.status(), nil
	}
	cfg, err := m.configLocked(ctx)
	if err != nil {
		return AttemptStatus{}, err
	}
	_, t := cfg.quorum()
	return AttemptStatus{Required: t}, nil
}

// RekeyRequest is sys/rekey/init's body: the new shares and threshold.
type RekeyRequest struct {
	SecretShares    int
	SecretThreshold int
}

// RekeyStatus describes a rekey attempt. Required and Progress count
// shares of the CURRENT key; SecretShares and SecretThreshold are the new
// configuration (Vault's n and t in sys/rekey/init).
type RekeyStatus struct {
	AttemptStatus
	SecretShares    int
	SecretThreshold int
}

// RekeyResult carries the new operators' keys, in the layout InitResult
// documents.
type RekeyResult struct {
	Keys [][]byte
}

type rekeyAttempt struct {
	*quorum
	req RekeyRequest
}

func (r *rekeyAttempt) rekeyStatus() RekeyStatus {
	return RekeyStatus{AttemptStatus: r.status(), SecretShares: r.req.SecretShares, SecretThreshold: r.req.SecretThreshold}
}

// RekeyInit starts a rekey attempt (Vault's sys/rekey/init): a quorum of
// current shares after which the KEK is replaced and new shares are
// issued. With an auto-unseal seal the quorum is of recovery keys and the
// RECOVERY key is replaced (Vault's sys/rekey-recovery-key): req then
// gives the new recovery shares and threshold; the KEK stays with the
// Wrapper. It returns ErrInvalidConfig for a bad request (Init's rules),
// ErrSealed, ErrNotInitialized, or ErrAttemptInProgress.
func (m *Manager) RekeyInit(ctx context.Context, req RekeyRequest) (RekeyStatus, error) {
	if err := validateShares(req.SecretShares, req.SecretThreshold); err != nil {
		return RekeyStatus{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cfg, err := m.unsealedConfigLocked(ctx)
	if err != nil {
		return RekeyStatus{}, err
	}
	if m.rekey != nil {
		return RekeyStatus{}, ErrAttemptInProgress
	}
	q, err := newQuorum(m.rand, m.now(), cfg)
	if err != nil {
		return RekeyStatus{}, err
	}
	m.rekey = &rekeyAttempt{quorum: q, req: req}
	return m.rekey.rekeyStatus(), nil
}

// RekeyUpdate adds key (a share of the current KEK) to the attempt
// identified by nonce. At the threshold, once the combined shares open the
// stored root key, it generates a new KEK, and stores the root key wrapped
// under it together with the new config in one atomic backend Apply; the
// new keys are returned and the old ones stop working. A generate-root
// attempt in progress is cancelled then (its shares are stale). Errors as
// for GenerateRootUpdate; on a storage error the old keys stay valid and
// the attempt's progress resets.
func (m *Manager) RekeyUpdate(ctx context.Context, nonce string, key []byte) (RekeyStatus, *RekeyResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cfg, err := m.unsealedConfigLocked(ctx)
	if err != nil {
		return RekeyStatus{}, nil, err
	}
	r := m.rekey
	if r == nil {
		return RekeyStatus{}, nil, ErrNoAttempt
	}
	if nonce != r.nonce {
		return RekeyStatus{}, nil, ErrBadNonce
	}
	if err := r.add(key); err != nil {
		return r.rekeyStatus(), nil, err
	}
	if !r.ready() {
		return r.rekeyStatus(), nil, nil
	}
	final := r.rekeyStatus()
	kek, err := r.combine()
	r.reset()
	if err != nil {
		return r.rekeyStatus(), nil, err
	}
	defer clear(kek)
	replace := m.replaceKEKLocked
	if cfg.auto() {
		replace = m.replaceRecoveryKeyLocked
	}
	keys, err := replace(ctx, cfg, kek, r.req)
	if err != nil {
		return r.rekeyStatus(), nil, err
	}
	m.rekey = nil
	if m.genRoot != nil {
		m.genRoot.reset()
		m.genRoot = nil
	}
	return final, &RekeyResult{Keys: keys}, nil
}

// replaceKEKLocked verifies kek against the stored root key, then wraps
// the root key under a new KEK split per req, and stores both atomically.
func (m *Manager) replaceKEKLocked(ctx context.Context, _ *sealConfig, kek []byte, req RekeyRequest) ([][]byte, error) {
	rootKey, err := openRootKey(ctx, m.backend, kek)
	if err != nil {
		return nil, err
	}
	defer clear(rootKey)
	newKEK, err := randomKey(m.rand)
	if err != nil {
		return nil, err
	}
	defer clear(newKEK)
	cfg := &sealConfig{Type: m.protector.Type(), SecretShares: req.SecretShares, SecretThreshold: req.SecretThreshold}
	keys, err := splitKEK(newKEK, cfg, m.rand)
	if err != nil {
		return nil, err
	}
	wrapped, err := wrapRootKey(m.rand, newKEK, rootKey)
	if err != nil {
		return nil, err
	}
	if err := m.backend.Apply(ctx, []storage.Op{
		{Key: RootKeyPath, Value: wrapped},
		{Key: ConfigPath, Value: cfg.marshal()},
	}); err != nil {
		return nil, fmt.Errorf("seal: write rekeyed seal entries: %w", err)
	}
	return keys, nil
}

// RekeyCancel ends the rekey attempt, if any.
func (m *Manager) RekeyCancel() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rekey != nil {
		m.rekey.reset()
		m.rekey = nil
	}
}

// RekeyStatus describes the rekey attempt; with none, Started is false and
// Required is the current threshold. It returns ErrNotInitialized before
// Init.
func (m *Manager) RekeyStatus(ctx context.Context) (RekeyStatus, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rekey != nil {
		return m.rekey.rekeyStatus(), nil
	}
	cfg, err := m.configLocked(ctx)
	if err != nil {
		return RekeyStatus{}, err
	}
	_, t := cfg.quorum()
	return RekeyStatus{AttemptStatus: AttemptStatus{Required: t}}, nil
}

// unsealedConfigLocked returns the config, or ErrNotInitialized or
// ErrSealed.
func (m *Manager) unsealedConfigLocked(ctx context.Context) (*sealConfig, error) {
	cfg, err := m.configLocked(ctx)
	if err != nil {
		return nil, err
	}
	if m.barrier.Sealed() {
		return nil, ErrSealed
	}
	return cfg, nil
}

// replaceRecoveryKeyLocked verifies recoveryKey, then makes a new recovery
// key split per req and stores its check value and the config atomically.
func (m *Manager) replaceRecoveryKeyLocked(ctx context.Context, cfg *sealConfig, recoveryKey []byte, req RekeyRequest) ([][]byte, error) {
	if err := checkRecoveryKey(ctx, m.backend, recoveryKey); err != nil {
		return nil, err
	}
	newKey, err := randomKey(m.rand)
	if err != nil {
		return nil, err
	}
	defer clear(newKey)
	next := *cfg
	next.RecoveryShares, next.RecoveryThreshold = req.SecretShares, req.SecretThreshold
	keys, err := splitKEK(newKey, &next, m.rand)
	if err != nil {
		return nil, err
	}
	check, err := sealRecoveryCheck(m.rand, newKey)
	if err != nil {
		return nil, err
	}
	if err := m.backend.Apply(ctx, []storage.Op{
		{Key: RecoveryCheckPath, Value: check},
		{Key: ConfigPath, Value: next.marshal()},
	}); err != nil {
		return nil, fmt.Errorf("seal: write new recovery key: %w", err)
	}
	return keys, nil
}
