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
// reported by Status. Shamir (the only one so far) splits the KEK into
// shares at Init and rebuilds it from threshold of them at Unseal; 1-of-1
// gives the KEK itself as the only key, as Vault does. Auto-unseal kinds
// ("static", "transit") will wrap the KEK with an external key and store
// the wrapped KEK; Manager then unseals without shares. New refuses any
// Protector other than Shamir until then.
//
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
