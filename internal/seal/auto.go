package seal

import (
	"context"
	"errors"
	"fmt"

	"github.com/coffer-dev/coffer/internal/storage"
)

// ErrNoMigration: UnsealMigrate when the stored seal type already is the
// configured one.
var ErrNoMigration = errors.New("seal: no seal migration pending: the stored seal is the configured one")

// Rewrapper is optionally implemented by a Wrapper that can tell a blob
// wrapped under a key it is rotating out (Static's previous_key). After
// AutoUnseal opens such a blob, the KEK is wrapped again with the current
// key and stored.
type Rewrapper interface {
	NeedsRewrap(blob []byte) bool
}

// NeedsRewrap implements Rewrapper: true for a blob under the previous key.
func (s *Static) NeedsRewrap(blob []byte) bool {
	return len(blob) >= 2 && len(blob) >= 2+int(blob[1]) && string(blob[2:2+int(blob[1])]) != s.id
}

// AutoUnseal unseals an auto-unseal seal without operators: it unwraps the
// stored KEK with the Wrapper, opens the root key with it and unseals the
// barrier. It returns nil when the barrier is already unsealed. It is safe
// to call from a retry loop and concurrently with everything else.
//
// Errors (the barrier stays sealed): ErrNotInitialized before Init;
// ErrUnsupported for a Shamir seal; ErrMigrationRequired when the stored
// seal type differs from the configured one; ErrKeyUnavailable when the
// seal key cannot be reached (retry later); ErrInvalidKey when the key
// reached does not open what is stored. After a failure Status.Reason
// holds the error's text (no key material); a success clears it.
func (m *Manager) AutoUnseal(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	err := m.autoUnsealLocked(ctx)
	if err != nil && !errors.Is(err, ErrNotInitialized) {
		m.reason = err.Error()
	} else if err == nil {
		m.reason = ""
	}
	return err
}

func (m *Manager) autoUnsealLocked(ctx context.Context) error {
	if m.wrapper == nil {
		return fmt.Errorf("%w: %w", ErrUnsupported, errNotAuto)
	}
	cfg, err := m.configLocked(ctx)
	if err != nil {
		return err
	}
	if !m.barrier.Sealed() {
		return nil
	}
	if cfg.Type != m.wrapper.Type() {
		return fmt.Errorf("%w (stored %q, configured %q)", ErrMigrationRequired, cfg.Type, m.wrapper.Type())
	}
	blob, err := m.backend.Get(ctx, KEKPath)
	if err != nil {
		return fmt.Errorf("seal: read wrapped KEK: %w", err)
	}
	kek, err := m.wrapper.Unwrap(ctx, blob)
	if err != nil {
		return fmt.Errorf("seal: %s seal: unwrap KEK: %w", m.wrapper.Type(), err)
	}
	defer clear(kek)
	if err := m.openBarrierLocked(ctx, kek); err != nil {
		return err
	}
	m.resetAllLocked()
	if rw, ok := m.wrapper.(Rewrapper); ok && rw.NeedsRewrap(blob) {
		// Best effort: the old key still opens the stored blob until this
		// succeeds, so a failure only postpones the rewrap to the next unseal.
		if nb, err := m.wrapper.Wrap(ctx, kek); err == nil {
			_ = m.backend.Apply(ctx, []storage.Op{{Key: KEKPath, Value: nb}})
		}
	}
	return nil
}

// UnsealMigrate is Unseal for a seal migration (Vault's "operator unseal
// -migrate"), when the stored seal type differs from the configured one.
// key is a share of the stored seal's operator keys; progress works as in
// Unseal. At the threshold:
//
//   - Shamir → auto-unseal (Config.Protector is a Wrapper): the shares
//     rebuild the KEK, which opens the root key; a new KEK wrapped by the
//     Wrapper replaces it, and the old unseal keys become the recovery
//     keys (same shares and threshold: nothing new to hand out).
//   - auto-unseal → Shamir (Config.Protector is Shamir and
//     Config.MigrateFrom is the old Wrapper): the shares rebuild the
//     recovery key; the old Wrapper unwraps the KEK, which opens the root
//     key; the root key is then wrapped under the recovery key, and the
//     recovery keys become the unseal keys.
//
// The new seal entries are written in one atomic Apply, then the barrier
// is unsealed. Errors: ErrNoMigration, ErrMigrationRequired (auto → Shamir
// without a matching MigrateFrom), ErrUnsupported (auto → another auto
// seal), ErrKeyUnavailable, ErrInvalidKey and the share errors of Unseal.
func (m *Manager) UnsealMigrate(ctx context.Context, key []byte) (Status, error) {
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
	case cfg.Type == m.protector.Type():
		return m.statusLocked(cfg), ErrNoMigration
	case cfg.auto() && m.wrapper != nil:
		return m.statusLocked(cfg), fmt.Errorf("%w: migration between two auto-unseal seals (%s → %s); migrate to shamir first",
			ErrUnsupported, cfg.Type, m.wrapper.Type())
	case cfg.auto() && (m.migrateFrom == nil || m.migrateFrom.Type() != cfg.Type):
		return m.statusLocked(cfg), fmt.Errorf("%w: configure the old %q seal with disabled = \"true\" to migrate from it",
			ErrMigrationRequired, cfg.Type)
	}
	st, combined, err := m.addUnsealShareLocked(cfg, key)
	if err != nil || combined == nil {
		return st, err
	}
	defer clear(combined)
	migrate := m.toAutoLocked
	if cfg.auto() {
		migrate = m.toShamirLocked
	}
	next, rootKey, err := migrate(ctx, cfg, combined)
	if err != nil {
		return m.statusLocked(cfg), err
	}
	defer clear(rootKey)
	if err := m.barrier.Unseal(ctx, rootKey); err != nil {
		return m.statusLocked(next), fmt.Errorf("%w: barrier refused the root key: %w", ErrInvalidKey, err)
	}
	m.resetAllLocked()
	m.reason = ""
	return m.statusLocked(next), nil
}

// toAutoLocked migrates a Shamir seal whose KEK is kek to m.wrapper. It
// returns the new config and the root key.
func (m *Manager) toAutoLocked(ctx context.Context, cfg *sealConfig, kek []byte) (*sealConfig, []byte, error) {
	rootKey, err := openRootKey(ctx, m.backend, kek)
	if err != nil {
		return nil, nil, err
	}
	ok := false
	defer func() {
		if !ok {
			clear(rootKey)
		}
	}()
	newKEK, err := randomKey(m.rand)
	if err != nil {
		return nil, nil, err
	}
	defer clear(newKEK)
	blob, err := m.wrapper.Wrap(ctx, newKEK)
	if err != nil {
		return nil, nil, fmt.Errorf("seal: wrap KEK with the %s seal: %w", m.wrapper.Type(), err)
	}
	wrapped, err := wrapRootKey(m.rand, newKEK, rootKey)
	if err != nil {
		return nil, nil, err
	}
	check, err := sealRecoveryCheck(m.rand, kek) // the old KEK is the recovery key
	if err != nil {
		return nil, nil, err
	}
	next := &sealConfig{Type: m.wrapper.Type(), SecretShares: 1, SecretThreshold: 1,
		RecoveryShares: cfg.SecretShares, RecoveryThreshold: cfg.SecretThreshold}
	if err := m.backend.Apply(ctx, []storage.Op{
		{Key: ConfigPath, Value: next.marshal()},
		{Key: RootKeyPath, Value: wrapped},
		{Key: KEKPath, Value: blob},
		{Key: RecoveryCheckPath, Value: check},
	}); err != nil {
		return nil, nil, fmt.Errorf("seal: write migrated seal entries: %w", err)
	}
	ok = true
	return next, rootKey, nil
}

// toShamirLocked migrates an auto-unseal seal, whose recovery key is
// recoveryKey, to Shamir. It returns the new config and the root key.
func (m *Manager) toShamirLocked(ctx context.Context, cfg *sealConfig, recoveryKey []byte) (*sealConfig, []byte, error) {
	if err := checkRecoveryKey(ctx, m.backend, recoveryKey); err != nil {
		return nil, nil, err
	}
	blob, err := m.backend.Get(ctx, KEKPath)
	if err != nil {
		return nil, nil, fmt.Errorf("seal: read wrapped KEK: %w", err)
	}
	kek, err := m.migrateFrom.Unwrap(ctx, blob)
	if err != nil {
		return nil, nil, fmt.Errorf("seal: old %s seal: unwrap KEK: %w", m.migrateFrom.Type(), err)
	}
	defer clear(kek)
	rootKey, err := openRootKey(ctx, m.backend, kek)
	if err != nil {
		return nil, nil, err
	}
	wrapped, err := wrapRootKey(m.rand, recoveryKey, rootKey) // the recovery key is the new KEK
	if err != nil {
		clear(rootKey)
		return nil, nil, err
	}
	next := &sealConfig{Type: TypeShamir, SecretShares: cfg.RecoveryShares, SecretThreshold: cfg.RecoveryThreshold}
	if err := m.backend.Apply(ctx, []storage.Op{
		{Key: ConfigPath, Value: next.marshal()},
		{Key: RootKeyPath, Value: wrapped},
		{Key: KEKPath, Delete: true},
		{Key: RecoveryCheckPath, Delete: true},
	}); err != nil {
		clear(rootKey)
		return nil, nil, fmt.Errorf("seal: write migrated seal entries: %w", err)
	}
	return next, rootKey, nil
}
