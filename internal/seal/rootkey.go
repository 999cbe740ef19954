package seal

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/coffer-dev/coffer/internal/shamir"
	"github.com/coffer-dev/coffer/internal/storage"
)

// Physical keys owned by this package.
const (
	ConfigPath  = "core/seal/config"
	RootKeyPath = "core/seal/root-key"
	// KEKPath holds, for an auto-unseal seal, the KEK as wrapped by the
	// Wrapper (opaque to this package).
	KEKPath = "core/seal/kek"
	// RecoveryCheckPath holds, for an auto-unseal seal, a known value
	// sealed under the recovery key, which proves a recovery quorum. It
	// does not open the root key: recovery keys cannot unseal.
	RecoveryCheckPath = "core/seal/recovery-check"
)

const (
	keySize        = 32 // root key and KEK
	nonceSize      = 12
	rootKeyVersion = 1
)

// sealConfig is the stored seal configuration; nothing in it is secret.
// For auto-unseal seals SecretShares = SecretThreshold = 1 (as in Vault)
// and the recovery fields describe the recovery key's shares.
type sealConfig struct {
	Type              string `json:"type"`
	SecretShares      int    `json:"secret_shares"`
	SecretThreshold   int    `json:"secret_threshold"`
	RecoveryShares    int    `json:"recovery_shares,omitempty"`
	RecoveryThreshold int    `json:"recovery_threshold,omitempty"`
}

// auto reports whether c is an auto-unseal seal (recovery keys).
func (c *sealConfig) auto() bool { return c.Type != TypeShamir }

// quorum returns the shares and threshold of the operators' keys: unseal
// keys for Shamir, recovery keys for auto-unseal.
func (c *sealConfig) quorum() (shares, threshold int) {
	if c.auto() {
		return c.RecoveryShares, c.RecoveryThreshold
	}
	return c.SecretShares, c.SecretThreshold
}

// shareLen is the length of every valid share under c: the key itself for
// 1-of-1, the key plus the x-coordinate byte otherwise.
func (c *sealConfig) shareLen() int {
	if _, t := c.quorum(); t == 1 {
		return keySize
	}
	return keySize + shamir.ShareOverhead
}

// validateShares applies Vault's rules to a requested shares/threshold pair.
func validateShares(shares, threshold int) error {
	switch {
	case shares < 1:
		return fmt.Errorf("%w: secret_shares must be at least 1", ErrInvalidConfig)
	case threshold < 1:
		return fmt.Errorf("%w: secret_threshold must be at least 1", ErrInvalidConfig)
	case shares > shamir.MaxParts:
		return fmt.Errorf("%w: secret_shares cannot exceed %d", ErrInvalidConfig, shamir.MaxParts)
	case threshold > shares:
		return fmt.Errorf("%w: secret_threshold cannot be larger than secret_shares", ErrInvalidConfig)
	case shares > 1 && threshold == 1:
		return fmt.Errorf("%w: secret_threshold must be greater than one for multiple shares", ErrInvalidConfig)
	}
	return nil
}

func (c *sealConfig) validate() error {
	if c.Type == "" {
		return fmt.Errorf("%w: stored seal config has no type", ErrUnsupported)
	}
	n, t := c.quorum()
	if err := validateShares(n, t); err != nil {
		return fmt.Errorf("stored seal config: %w", err)
	}
	return nil
}

// loadConfig reads the stored config; (nil, nil) if there is none.
func loadConfig(ctx context.Context, b storage.Backend) (*sealConfig, error) {
	raw, err := b.Get(ctx, ConfigPath)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("seal: read config: %w", err)
	}
	var c sealConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("seal: decode config: %w", err)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return &c, nil
}

func (c *sealConfig) marshal() []byte {
	raw, err := json.Marshal(c)
	if err != nil {
		panic(err) // plain fields cannot fail to marshal
	}
	return raw
}

func newGCM(kek []byte) (cipher.AEAD, error) {
	if len(kek) != keySize {
		return nil, ErrInvalidKey
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return cipher.NewGCM(block)
}

func rootKeyAD() []byte { return append([]byte{rootKeyVersion}, RootKeyPath...) }

// wrapRootKey encrypts rootKey under kek for RootKeyPath.
func wrapRootKey(rand io.Reader, kek, rootKey []byte) ([]byte, error) {
	aead, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+nonceSize, 1+nonceSize+len(rootKey)+aead.Overhead())
	out[0] = rootKeyVersion
	if _, err := io.ReadFull(rand, out[1:]); err != nil {
		return nil, fmt.Errorf("seal: reading randomness: %w", err)
	}
	return aead.Seal(out, out[1:], rootKey, rootKeyAD()), nil
}

// unwrapRootKey opens the value stored at RootKeyPath with kek. Any
// failure to open (wrong KEK, tampered or misplaced value) is ErrInvalidKey.
func unwrapRootKey(kek, v []byte) ([]byte, error) {
	aead, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	if len(v) < 1+nonceSize+aead.Overhead() || v[0] != rootKeyVersion {
		return nil, fmt.Errorf("%w: stored root key is malformed", ErrInvalidKey)
	}
	rootKey, err := aead.Open(nil, v[1:1+nonceSize], v[1+nonceSize:], rootKeyAD())
	if err != nil || len(rootKey) != keySize {
		clear(rootKey)
		return nil, ErrInvalidKey
	}
	return rootKey, nil
}

// openRootKey reads the wrapped root key and opens it with kek.
func openRootKey(ctx context.Context, b storage.Backend, kek []byte) ([]byte, error) {
	v, err := b.Get(ctx, RootKeyPath)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("seal: no stored root key: %w", ErrNotInitialized)
	}
	if err != nil {
		return nil, fmt.Errorf("seal: read root key: %w", err)
	}
	return unwrapRootKey(kek, v)
}

// splitKEK makes the operators' keys for kek (the KEK for Shamir, the
// recovery key for auto-unseal) under c.
func splitKEK(kek []byte, c *sealConfig, rand io.Reader) ([][]byte, error) {
	n, t := c.quorum()
	shares, err := shamir.Split(kek, n, t, rand)
	if err != nil {
		return nil, fmt.Errorf("seal: split key: %w", err)
	}
	return shares, nil
}

func randomKey(rand io.Reader) ([]byte, error) {
	k := make([]byte, keySize)
	if _, err := io.ReadFull(rand, k); err != nil {
		return nil, fmt.Errorf("seal: reading randomness: %w", err)
	}
	return k, nil
}

const recoveryCheckPlaintext = "coffer recovery key check v1"

func recoveryAD() []byte { return append([]byte{rootKeyVersion}, RecoveryCheckPath...) }

// sealRecoveryCheck seals the known check value under recoveryKey.
func sealRecoveryCheck(rand io.Reader, recoveryKey []byte) ([]byte, error) {
	aead, err := newGCM(recoveryKey)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+nonceSize, 1+nonceSize+len(recoveryCheckPlaintext)+aead.Overhead())
	out[0] = rootKeyVersion
	if _, err := io.ReadFull(rand, out[1:]); err != nil {
		return nil, fmt.Errorf("seal: reading randomness: %w", err)
	}
	return aead.Seal(out, out[1:], []byte(recoveryCheckPlaintext), recoveryAD()), nil
}

// checkRecoveryKey verifies recoveryKey against the stored check value;
// ErrInvalidKey if it does not open it.
func checkRecoveryKey(ctx context.Context, b storage.Backend, recoveryKey []byte) error {
	v, err := b.Get(ctx, RecoveryCheckPath)
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("seal: no stored recovery key check: %w", ErrNotInitialized)
	}
	if err != nil {
		return fmt.Errorf("seal: read recovery key check: %w", err)
	}
	aead, err := newGCM(recoveryKey)
	if err != nil {
		return err
	}
	if len(v) < 1+nonceSize+aead.Overhead() || v[0] != rootKeyVersion {
		return fmt.Errorf("%w: stored recovery key check is malformed", ErrInvalidKey)
	}
	if _, err := aead.Open(nil, v[1:1+nonceSize], v[1+nonceSize:], recoveryAD()); err != nil {
		return ErrInvalidKey
	}
	return nil
}

// checkQuorumKey verifies key, combined from operators' shares: for Shamir
// it must open the stored root key, for auto-unseal the recovery check.
func checkQuorumKey(ctx context.Context, b storage.Backend, c *sealConfig, key []byte) error {
	if c.auto() {
		return checkRecoveryKey(ctx, b, key)
	}
	rootKey, err := openRootKey(ctx, b, key)
	clear(rootKey)
	return err
}
