// Package transit is the transit secrets engine: encryption as a service,
// compatible with Vault's transit API so that the Vault Go client, sops
// (--hc-vault-transit) and Terraform work against it unchanged.
//
// # What it stores
//
// Each named key is one storage entry, "policy/<name>", holding every key
// version's material as JSON. The entry is only ever written through the
// mount's logical.Storage (the barrier encrypts it); key material leaves
// the engine only through export/… on a key created exportable.
//
// # Wire formats
//
// Ciphertexts, signatures and HMACs are "vault:v<N>:<base64>", exactly as
// Vault lays them out: for aes256-gcm96 and chacha20-poly1305 the base64 is
// of nonce(12) | ciphertext | tag(16); for rsa-* of the RSA-OAEP(SHA-256)
// ciphertext. A ciphertext made here has the same shape as Vault's, and one
// made by Vault with the same key material decrypts here.
//
// # Derivation and convergent encryption
//
// A derived key (derived=true) never encrypts with its stored key: every
// request brings a base64 "context", and the working key is
// HKDF-SHA256(ikm=version key, salt=none, info=context), Vault's
// "hkdf_sha256" KDF. A convergent key (convergent_encryption=true, which
// requires derived) follows Vault's convergent version 3: 64 bytes are read
// from that HKDF stream, the first 32 are the AEAD key and the last 32 an
// HMAC key, and the nonce is the first 12 bytes of
// HMAC-SHA256(hmac key, plaintext). The same plaintext under the same
// context and version thus gives the same ciphertext, and different
// contexts give unrelated ones. A client-supplied nonce is refused, as
// Vault does for version 3.
//
// # Concurrency and caching
//
// Parsed keys are cached in memory as immutable snapshots: encrypt, decrypt,
// sign and the like read the snapshot without any lock and without any
// storage read. Every change to a key (create, rotate, config, trim,
// delete) holds that key's write lock, writes storage first, and only then
// publishes a new snapshot, so a concurrent encrypt uses either the old or
// the new key, never a half-changed one. Backend is safe for concurrent
// use. Periodic rotates keys whose auto_rotate_period has elapsed since
// their latest version was made, by the injected clock.
package transit
