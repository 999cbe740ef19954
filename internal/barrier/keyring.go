package barrier

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"log/slog"
	"math"
	"sync"
	"time"
)

// keyringPath is the physical key of the keyring, encrypted under the root
// key. The rest of core/ belongs to the seal package.
const keyringPath = "core/keyring"

// keyringContext is the additional data the keyring is sealed with.
const keyringContext = "k:" + keyringPath

// Serialized keyring (before encryption under the root key):
//
//	version (1 byte, = 1) | path key (32) | count (uint32) | count × [ term (uint32) | install time (int64 Unix ns) | key (32) ]
//
// Terms are strictly increasing; the last one is active.
const (
	keyringVersion  byte = 1
	keyringHeader        = 1 + keySize + 4
	keyringTermSize      = 4 + 8 + keySize
)

// term is one data-encryption key.
type term struct {
	n         uint32
	installed time.Time
	key       []byte
	aead      cipher.AEAD
}

// keyring holds the keys the barrier encrypts and names entries with. It
// redacts itself when printed or logged.
type keyring struct {
	pathKey []byte
	terms   []term     // ascending by n; the last is active
	macs    *sync.Pool // of HMAC-SHA256 hashes under pathKey, shared by rotated copies
}

func newKeyring(pathKey []byte) *keyring {
	return &keyring{pathKey: pathKey, macs: &sync.Pool{New: func() any { return hmac.New(sha256.New, pathKey) }}}
}

// String implements fmt.Stringer without revealing any key.
func (k *keyring) String() string { return "barrier.keyring(REDACTED)" }

// GoString implements fmt.GoStringer without revealing any key.
func (k *keyring) GoString() string { return k.String() }

// LogValue implements slog.LogValuer without revealing any key.
func (k *keyring) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// active returns the term new writes use.
func (k *keyring) active() *term { return &k.terms[len(k.terms)-1] }

// aeadFor returns the cipher of term n, or ErrCorrupt if it is unknown.
func (k *keyring) aeadFor(n uint32) (cipher.AEAD, error) {
	// Terms are few and the newest is the most used: search from the end.
	for i := len(k.terms) - 1; i >= 0; i-- {
		if k.terms[i].n == n {
			return k.terms[i].aead, nil
		}
	}
	return nil, fmt.Errorf("%w: unknown key term %d", ErrCorrupt, n)
}

// open decrypts an envelope with whichever term it names.
func (k *keyring) open(context string, v []byte) ([]byte, error) {
	n, err := envelopeTerm(v)
	if err != nil {
		return nil, err
	}
	aead, err := k.aeadFor(n)
	if err != nil {
		return nil, err
	}
	return openEnvelope(aead, context, v)
}

// mac returns HMAC-SHA256(pathKey, domain+s).
func (k *keyring) mac(domain, s string) [sha256.Size]byte {
	m := k.macs.Get().(hash.Hash)
	m.Write([]byte(domain))
	m.Write([]byte(s))
	var sum [sha256.Size]byte
	m.Sum(sum[:0])
	m.Reset()
	k.macs.Put(m)
	return sum
}

// hash returns hex(HMAC-SHA256(pathKey, domain+s)): the names of the first
// physical layout.
func (k *keyring) hash(domain, s string) string {
	sum := k.mac(domain, s)
	return hex.EncodeToString(sum[:])
}

// name returns base64url(first 16 bytes of HMAC-SHA256(pathKey, domain+s)),
// 22 characters: the names of the current layout. 128 bits keep collisions
// out of reach (about 2^64 names in one folder), and short names keep the
// backend's B+tree shallow: bolt's branch pages hold the keys, so 47-byte
// keys instead of 131-byte ones mean fewer branch pages per commit.
func (k *keyring) name(domain, s string) string {
	sum := k.mac(domain, s)
	return base64.RawURLEncoding.EncodeToString(sum[:nameSize])
}

// nameSize is the bytes of HMAC kept in a name.
const nameSize = 16

// withNewTerm returns a copy of k with one more term, sharing k's keys.
func (k *keyring) withNewTerm(key []byte, installed time.Time) (*keyring, error) {
	last := k.active().n
	if last == math.MaxUint32 {
		return nil, fmt.Errorf("barrier: no key term left after %d", last)
	}
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	terms := make([]term, len(k.terms), len(k.terms)+1)
	copy(terms, k.terms)
	terms = append(terms, term{n: last + 1, installed: installed, key: key, aead: aead})
	return &keyring{pathKey: k.pathKey, terms: terms, macs: k.macs}, nil
}

// wipe zeroes every key k holds. The ciphers and HMACs built from them are
// dropped, but their expanded keys stay in memory until collected: Go's
// crypto packages offer no way to clear them.
func (k *keyring) wipe() {
	clear(k.pathKey)
	k.macs = nil
	for i := range k.terms {
		clear(k.terms[i].key)
		k.terms[i].aead = nil
	}
	k.terms = nil
}

// marshal serializes k. The caller wipes the result when done with it.
func (k *keyring) marshal() []byte {
	b := make([]byte, 0, keyringHeader+len(k.terms)*keyringTermSize)
	b = append(b, keyringVersion)
	b = append(b, k.pathKey...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(k.terms)))
	for _, t := range k.terms {
		b = binary.BigEndian.AppendUint32(b, t.n)
		b = binary.BigEndian.AppendUint64(b, uint64(t.installed.UnixNano()))
		b = append(b, t.key...)
	}
	return b
}

// parseKeyring is the inverse of marshal; it copies the keys out of b.
// It returns ErrCorrupt for anything malformed.
func parseKeyring(b []byte) (*keyring, error) {
	if len(b) < keyringHeader {
		return nil, fmt.Errorf("%w: keyring is %d bytes", ErrCorrupt, len(b))
	}
	if b[0] != keyringVersion {
		return nil, fmt.Errorf("%w: unknown keyring version %d", ErrCorrupt, b[0])
	}
	count := binary.BigEndian.Uint32(b[1+keySize : keyringHeader])
	rest := b[keyringHeader:]
	if count == 0 || uint64(len(rest)) != uint64(count)*keyringTermSize {
		return nil, fmt.Errorf("%w: keyring of %d terms is %d bytes", ErrCorrupt, count, len(b))
	}
	k := newKeyring(append([]byte(nil), b[1:1+keySize]...))
	k.terms = make([]term, 0, count)
	for i := uint32(0); i < count; i++ {
		t := rest[i*keyringTermSize : (i+1)*keyringTermSize]
		n := binary.BigEndian.Uint32(t[0:4])
		if n == 0 || (len(k.terms) > 0 && n <= k.active().n) {
			k.wipe()
			return nil, fmt.Errorf("%w: keyring terms out of order", ErrCorrupt)
		}
		key := append([]byte(nil), t[12:12+keySize]...)
		aead, err := newAEAD(key)
		if err != nil {
			k.wipe()
			return nil, err
		}
		installed := time.Unix(0, int64(binary.BigEndian.Uint64(t[4:12]))).UTC()
		k.terms = append(k.terms, term{n: n, installed: installed, key: key, aead: aead})
	}
	return k, nil
}
