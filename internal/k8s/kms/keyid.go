package kms

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrUnknownKeyID is returned by Decrypt for a key_id that this plugin did
// not issue: another key, a malformed value, or a version that does not
// match the ciphertext.
var ErrUnknownKeyID = errors.New("kms: unknown key_id")

// maxKeyIDLen bounds the key_ids the plugin parses; the API server
// accepts key_ids up to 1 KiB.
const maxKeyIDLen = 1024

// DeriveKeyID returns the fallback id of a transit key: the first 16
// bytes, in hex, of SHA-256 over a domain separator, the key's path
// ("transit/keys/k8s-etcd") and the Unix time in seconds at which its
// version 1 was created. It is not secret and reveals neither the path
// nor the time.
//
// Weaknesses, because the transit engine has no key UUID: a key deleted
// and recreated under the same path within the same second gets the same
// id; and trimming version 1 (keys/<name>/trim) removes its creation
// time, so the id can no longer be derived (Status then reports it).
func DeriveKeyID(path string, v1Created int64) string {
	h := sha256.New()
	h.Write([]byte("coffer-kms-v2-key-id\x00"))
	h.Write([]byte(path))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatInt(v1Created, 10)))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// FormatKeyID returns "<id>:v<version>".
func FormatKeyID(id string, version int) string {
	return id + ":v" + strconv.Itoa(version)
}

// ParseKeyID splits a key_id made by FormatKeyID. It returns an error
// wrapping ErrUnknownKeyID for anything else.
func ParseKeyID(s string) (id string, version int, err error) {
	if len(s) > maxKeyIDLen {
		return "", 0, fmt.Errorf("%w: longer than %d bytes", ErrUnknownKeyID, maxKeyIDLen)
	}
	i := strings.LastIndex(s, ":v")
	if i <= 0 {
		return "", 0, fmt.Errorf("%w: %q is not <id>:v<version>", ErrUnknownKeyID, s)
	}
	id, vs := s[:i], s[i+2:]
	v, err := strconv.Atoi(vs)
	if err != nil || v < 1 || strconv.Itoa(v) != vs {
		return "", 0, fmt.Errorf("%w: %q has no valid version", ErrUnknownKeyID, s)
	}
	return id, v, nil
}

// ciphertextVersion returns N from a transit ciphertext "vault:vN:...".
func ciphertextVersion(ct string) (int, bool) {
	rest, ok := strings.CutPrefix(ct, "vault:v")
	if !ok {
		return 0, false
	}
	vs, _, ok := strings.Cut(rest, ":")
	if !ok {
		return 0, false
	}
	v, err := strconv.Atoi(vs)
	if err != nil || v < 1 || strconv.Itoa(v) != vs {
		return 0, false
	}
	return v, true
}

// keyState is what the plugin knows of the transit key from its last read.
type keyState struct {
	// id is the key's id: the engine's "id" field when present, else the
	// derived id.
	id string
	// derived is the derived id, also accepted by Decrypt (equal to id
	// when the engine has no id field).
	derived string
	// latest is the latest version; Encrypt uses it.
	latest int
	// read is when the key was read.
	read time.Time
}

// keyID returns the key_id of the latest version.
func (k *keyState) keyID() string { return FormatKeyID(k.id, k.latest) }

// owns reports whether id names this key.
func (k *keyState) owns(id string) bool { return id == k.id || id == k.derived }
