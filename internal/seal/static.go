package seal

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// TypeStatic is the seal type of Static.
const TypeStatic = "static"

// StaticConfig configures a Static protector: Vault's seal "static" block.
//
// Keys are references, never literal keys in the config file:
// "file:///path" (the file's content, e.g. a mounted Kubernetes Secret) or
// "env://VAR". The value is 32 bytes, raw or standard base64 (surrounding
// whitespace is ignored).
type StaticConfig struct {
	// CurrentKeyID names CurrentKey; it is stored with every wrapped KEK
	// so a later key can tell which key to use. Required, at most 255 bytes.
	CurrentKeyID string
	// CurrentKey wraps new KEKs and unwraps those stored under
	// CurrentKeyID. Required.
	CurrentKey string
	// PreviousKeyID and PreviousKey, both or neither, unwrap a KEK stored
	// under a key being rotated out. "": none.
	PreviousKeyID string
	PreviousKey   string
	// Getenv resolves env:// references. nil: os.Getenv.
	Getenv func(string) string
	// ReadFile resolves file:// references. nil: os.ReadFile.
	ReadFile func(string) ([]byte, error)
	// Rand makes nonces. nil: crypto/rand.Reader.
	Rand io.Reader
}

// Static is an auto-unseal Protector whose KEK is wrapped with AES-256-GCM
// under a 32-byte key read from a file or an environment variable. It is
// safe for concurrent use.
type Static struct {
	id, prevID string
	rand       io.Reader
	cfg        StaticConfig

	mu        sync.Mutex // guards following
	key, prev []byte     // nil until resolved
}

// NewStatic validates cfg and resolves the keys it names. A key that is
// not 32 bytes, or a reference that is neither file:// nor env://, is
// ErrInvalidConfig. A reference that cannot be read yet (the mounted
// secret or the variable is missing) is not an error here: Wrap and Unwrap
// try again and return ErrKeyUnavailable until it can be read, so a server
// starts sealed and says why. Errors name the reference, never the key.
func NewStatic(cfg StaticConfig) (*Static, error) {
	if cfg.Getenv == nil {
		cfg.Getenv = os.Getenv
	}
	if cfg.ReadFile == nil {
		cfg.ReadFile = os.ReadFile
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.CurrentKeyID == "" || len(cfg.CurrentKeyID) > 255 {
		return nil, fmt.Errorf("%w: static seal: current_key_id must be 1 to 255 bytes", ErrInvalidConfig)
	}
	if (cfg.PreviousKeyID == "") != (cfg.PreviousKey == "") || len(cfg.PreviousKeyID) > 255 {
		return nil, fmt.Errorf("%w: static seal: previous_key_id and previous_key go together", ErrInvalidConfig)
	}
	for name, ref := range map[string]string{"current_key": cfg.CurrentKey, "previous_key": cfg.PreviousKey} {
		if ref != "" && !strings.HasPrefix(ref, "file://") && !strings.HasPrefix(ref, "env://") {
			return nil, fmt.Errorf("%w: static seal: %s must be file:///path or env://VAR", ErrInvalidConfig, name)
		}
	}
	s := &Static{id: cfg.CurrentKeyID, prevID: cfg.PreviousKeyID, rand: cfg.Rand, cfg: cfg}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, get := range []func() ([]byte, error){s.currentLocked, s.previousLocked} {
		if _, err := get(); err != nil && !errors.Is(err, ErrKeyUnavailable) {
			return nil, err
		}
	}
	return s, nil
}

// currentLocked returns the current key, resolving it if not yet done.
func (s *Static) currentLocked() ([]byte, error) {
	if s.key == nil {
		k, err := resolveKey(s.cfg, "current_key", s.cfg.CurrentKey)
		if err != nil {
			return nil, err
		}
		s.key = k
	}
	return s.key, nil
}

// previousLocked returns the previous key (nil, nil when none is set).
func (s *Static) previousLocked() ([]byte, error) {
	if s.cfg.PreviousKey == "" {
		return nil, nil
	}
	if s.prev == nil {
		k, err := resolveKey(s.cfg, "previous_key", s.cfg.PreviousKey)
		if err != nil {
			return nil, err
		}
		s.prev = k
	}
	return s.prev, nil
}

func resolveKey(cfg StaticConfig, name, ref string) ([]byte, error) {
	var raw []byte
	switch {
	case strings.HasPrefix(ref, "file://"):
		b, err := cfg.ReadFile(strings.TrimPrefix(ref, "file://"))
		if err != nil {
			// The path is not secret; the error from ReadFile names only it.
			return nil, fmt.Errorf("%w: static seal: %s: %w", ErrKeyUnavailable, name, err)
		}
		raw = b
	case strings.HasPrefix(ref, "env://"):
		v := strings.TrimPrefix(ref, "env://")
		s := cfg.Getenv(v)
		if s == "" {
			return nil, fmt.Errorf("%w: static seal: %s: environment variable %s is empty or unset", ErrKeyUnavailable, name, v)
		}
		raw = []byte(s)
	default:
		return nil, fmt.Errorf("%w: static seal: %s must be file:///path or env://VAR", ErrInvalidConfig, name)
	}
	if len(raw) == keySize {
		return raw, nil
	}
	trimmed := strings.TrimSpace(string(raw))
	if len(trimmed) == keySize {
		return []byte(trimmed), nil
	}
	k, err := base64.StdEncoding.DecodeString(trimmed)
	clear(raw)
	if err != nil || len(k) != keySize {
		clear(k)
		return nil, fmt.Errorf("%w: static seal: %s must be 32 bytes, raw or base64", ErrInvalidConfig, name)
	}
	return k, nil
}

// Type implements Protector.
func (*Static) Type() string { return TypeStatic }

// KeyID returns the current key's id.
func (s *Static) KeyID() string { return s.id }

const staticVersion = 1

func staticAD(id string) []byte { return append([]byte("coffer/seal/static\x00"), id...) }

// Wrap implements Wrapper: version | len(id) | id | nonce | AES-256-GCM.
func (s *Static) Wrap(_ context.Context, kek []byte) ([]byte, error) {
	s.mu.Lock()
	key, err := s.currentLocked()
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	out := append([]byte{staticVersion, byte(len(s.id))}, s.id...)
	nonce := make([]byte, nonceSize)
	if _, err := io.ReadFull(s.rand, nonce); err != nil {
		return nil, fmt.Errorf("seal: reading randomness: %w", err)
	}
	out = append(out, nonce...)
	return aead.Seal(out, nonce, kek, staticAD(s.id)), nil
}

// Unwrap implements Wrapper. A blob stored under a key id that is neither
// the current nor the previous one is ErrKeyUnavailable (configure that
// key); a blob that does not open is ErrInvalidKey.
func (s *Static) Unwrap(_ context.Context, blob []byte) ([]byte, error) {
	if len(blob) < 2 || blob[0] != staticVersion || len(blob) < 2+int(blob[1])+nonceSize {
		return nil, fmt.Errorf("%w: static seal: wrapped key is malformed", ErrInvalidKey)
	}
	id := string(blob[2 : 2+int(blob[1])])
	rest := blob[2+int(blob[1]):]
	var (
		key []byte
		err error
	)
	s.mu.Lock()
	switch id {
	case s.id:
		key, err = s.currentLocked()
	case s.prevID:
		key, err = s.previousLocked()
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if key == nil {
		return nil, fmt.Errorf("%w: static seal: the KEK is wrapped with key id %q; configure it as current_key_id or previous_key_id", ErrKeyUnavailable, id)
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	kek, err := aead.Open(nil, rest[:nonceSize], rest[nonceSize:], staticAD(id))
	if err != nil {
		return nil, fmt.Errorf("%w: static seal: key %q does not open the wrapped KEK", ErrInvalidKey, id)
	}
	return kek, nil
}

// errNotAuto is returned for auto-unseal operations on a Shamir seal.
var errNotAuto = errors.New("seal: this server's seal is shamir: it is unsealed with key shares")

// StaticConfigFromBlock reads a seal "static" config block's attributes
// (as internal/config collects them): current_key_id, current_key,
// previous_key_id, previous_key. Unknown attributes and non-string values
// are ErrInvalidConfig; "disabled" is accepted and left to the caller.
func StaticConfigFromBlock(attrs map[string]any) (StaticConfig, error) {
	var c StaticConfig
	for k, v := range attrs {
		s, ok := v.(string)
		if !ok && k != "disabled" {
			return c, fmt.Errorf("%w: static seal: %s must be a string", ErrInvalidConfig, k)
		}
		switch k {
		case "current_key_id":
			c.CurrentKeyID = s
		case "current_key":
			c.CurrentKey = s
		case "previous_key_id":
			c.PreviousKeyID = s
		case "previous_key":
			c.PreviousKey = s
		case "disabled":
		default:
			return c, fmt.Errorf("%w: static seal: unknown setting %q", ErrInvalidConfig, k)
		}
	}
	return c, nil
}
