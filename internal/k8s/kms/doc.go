// Package kms is Coffer's Kubernetes KMS v2 plugin: a gRPC server on a unix
// socket, next to kube-apiserver, that wraps and unwraps the API server's
// data-encryption-key seeds with a Coffer transit key.
//
// The plugin is an ordinary API client of Coffer (package api); it never
// holds the key-encryption key. The API server calls three procedures
// (k8s.io/kms/apis/v2, served through k8s.io/kms/pkg/service):
//
//   - Status: version "v2", healthz "ok" or a one-line reason (Coffer
//     sealed, unreachable, the token refused, the key missing), and the
//     key_id of the transit key's latest version. The API server polls it
//     about once a minute (every 10 seconds while unhealthy).
//   - Encrypt: the seed → transit encrypt with the version Status last
//     reported, so Encrypt's key_id always equals Status's.
//   - Decrypt: the key_id must name this key (its id) and the version the
//     ciphertext carries; anything else is refused before Coffer is asked.
//
// # key_id
//
// A key_id is "<key id>:v<version>". The key id is a stable, non-secret
// name of the transit key: a hex SHA-256 digest of the key's path and
// the creation time of its version 1 (see DeriveKeyID), so a key deleted
// and recreated under the same name gets a new id, and a rotation (a new
// version) gives a new key_id, which makes the API server generate a new
// seed. The transit engine exposes no key UUID today; DeriveKeyID is the
// fallback and its weaknesses are documented there. When the key read
// carries an "id" field the plugin uses it, and keeps accepting key_ids
// under the derived id so that data written before the upgrade still
// decrypts.
//
// # Outages
//
// The API server keeps every seed it has unwrapped in memory and reuses it
// indefinitely, so a running API server needs the plugin only to write
// under a new seed and after a restart. For short Coffer outages the
// plugin keeps, in memory only, a cache of seeds it recently wrapped or
// unwrapped, bounded in entries and age (Config.CacheSize, CacheTTL). The
// cache answers a Decrypt only when Coffer cannot answer (unreachable,
// sealed, 5xx); when Coffer answers with a refusal (token revoked, access
// removed, ciphertext rejected) the refusal wins, so revoking the plugin's
// access is effective at once. Nothing is ever written to disk.
package kms
