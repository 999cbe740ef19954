package seal

// Protector is the source of the key-encryption key (KEK) that wraps the
// root key. Type names the seal kind as seal-status reports it ("shamir").
//
// Implementations are plain values, safe for concurrent use. For now only
// Shamir exists; auto-unseal kinds will add methods to wrap and unwrap the
// KEK with an external key, and Manager will recognize them by interface.
type Protector interface {
	Type() string
}

// Shamir is the Protector whose KEK is held by operators as Shamir shares:
// never stored, rebuilt by Unseal from threshold shares.
type Shamir struct{}

// TypeShamir is the seal type of Shamir.
const TypeShamir = "shamir"

// Type implements Protector.
func (Shamir) Type() string { return TypeShamir }
