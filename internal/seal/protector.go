package seal

import (
	"context"
	"errors"
)

// Protector is the source of the key-encryption key (KEK) that wraps the
// root key. Type names the seal kind as seal-status reports it ("shamir",
// "static", "transit").
//
// Implementations are plain values, safe for concurrent use. Shamir is
// the one whose KEK operators hold as shares; every other Protector must
// also implement Wrapper (auto-unseal), which New checks.
type Protector interface {
	Type() string
}

// Wrapper is an auto-unseal Protector: it wraps the KEK with a key held
// outside this server (a static key file, another server's transit key),
// so the Manager can store the wrapped KEK and unseal without operators.
//
// Wrap returns an opaque blob the same Wrapper (or one configured with the
// same external key) turns back into kek with Unwrap. Both may block on
// the network and must honour ctx. An external key that cannot be reached
// (network, auth, missing key) is an error wrapping ErrKeyUnavailable; a
// blob the key does not open is an error wrapping ErrInvalidKey. Errors
// never carry the KEK, the blob's plaintext or credentials.
type Wrapper interface {
	Protector
	Wrap(ctx context.Context, kek []byte) ([]byte, error)
	Unwrap(ctx context.Context, blob []byte) ([]byte, error)
}

// ErrKeyUnavailable is returned (wrapped, with the reason) when an
// auto-unseal Wrapper cannot reach its external key. The server stays
// sealed and Status.Reason says why.
var ErrKeyUnavailable = errors.New("seal: seal key unavailable")

// Shamir is the Protector whose KEK is held by operators as Shamir shares:
// never stored, rebuilt by Unseal from threshold shares.
type Shamir struct{}

// TypeShamir is the seal type of Shamir.
const TypeShamir = "shamir"

// Type implements Protector.
func (Shamir) Type() string { return TypeShamir }
