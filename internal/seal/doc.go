// Package seal protects the root key that opens the barrier, and runs the
// share quorums operators use to unseal, generate a root token and rekey.
//
// # Keys and layout
//
// Two keys, as in Vault:
//
//   - the root key (32 random bytes) opens the barrier's keyring;
//   - the key-encryption key (KEK, 32 random bytes) wraps the root key.
//
// The root key is stored wrapped, the KEK is never stored (for the Shamir
// seal: operators hold it as shares). Physical keys, next to the barrier's
// "core/keyring":
//
//	core/seal/config     JSON {"type","secret_shares","secret_threshold"}; not secret
//	core/seal/root-key   version (1 byte, = 1) | nonce (12) | AES-256-GCM(KEK, root key)
//	                     with additional data version | "core/seal/root-key"
//
// A wrong KEK, a flipped bit or a value moved to another key fails to open
// (ErrInvalidKey); nothing in storage reveals the root key or the KEK.
//
// # Protectors
//
// A Protector is where the KEK comes from; its Type is the seal type
// reported by Status. Shamir splits the KEK into shares at Init and
// rebuilds it from threshold of them at Unseal; 1-of-1 gives the KEK
// itself as the only key, as Vault does.
//
// Auto-unseal protectors implement Wrapper: they wrap the KEK with a key
// held elsewhere, and the wrapped KEK is stored at core/seal/kek. Static
// (here) uses a 32-byte key from a file or an environment variable;
// package seal/transitseal uses another server's transit key over HTTP
// (kept out of this package so the core stays free of net/http).
// With a Wrapper:
//
//   - Init takes recovery shares and threshold and returns recovery keys:
//     Shamir shares of a random recovery key. A value sealed under it
//     (core/seal/recovery-check) proves a recovery quorum; recovery keys
//     never open the root key, so they cannot unseal.
//   - AutoUnseal unwraps the KEK and unseals; an unreachable seal key is
//     ErrKeyUnavailable, the server stays sealed and Status.Reason says why.
//   - Unseal refuses shares (ErrAutoUnseal); generate-root and rekey take
//     recovery keys, and rekey replaces the recovery key.
//
// UnsealMigrate moves a server between Shamir and an auto-unseal seal,
// turning unseal keys into recovery keys and back (see its doc).

// # Life cycle
//
//	m, _ := seal.New(seal.Config{Backend: backend, Barrier: b})
//	res, _ := m.Init(ctx, seal.InitRequest{SecretShares: 5, SecretThreshold: 3})
//	// barrier is unsealed here: create the root token, then
//	_ = m.Seal(ctx)
//	st, _ := m.Unseal(ctx, res.Keys[0]) // st.Progress == 1
//	st, _ = m.Unseal(ctx, res.Keys[3])  // 2
//	st, _ = m.Unseal(ctx, res.Keys[1])  // unsealed
//
// # Quorums
//
// Unseal, generate-root and rekey each collect distinct shares up to the
// threshold. The same share twice is not progress (Unseal ignores it, the
// attempts return ErrDuplicateShare). A share of the wrong length, or with
// the x-coordinate of a different share already given, is ErrInvalidShare
// and does not count. When the threshold is reached the shares are
// combined and the result is checked by opening the stored root key: if it
// does not open, the collected shares are discarded and ErrInvalidKey is
// returned. Generate-root and rekey are attempts with a random nonce that
// every update must quote (ErrBadNonce); only one attempt of each kind runs
// at a time, and both need the barrier unsealed. Sealing discards all
// progress and cancels both attempts.
//
// Shares, the KEK and the root key are wiped from memory after use and
// never appear in errors or logs.
package seal
