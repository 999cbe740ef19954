package barrier

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"io"
)

// The envelope of every encrypted value the barrier writes:
//
//	version (1 byte, = 1) | term (uint32, big endian) | nonce (12 bytes) | AES-256-GCM ciphertext and tag
//
// The additional data is the 5-byte header (version and term) followed by a
// domain-separated context string: "d:"+path for a value, "l:"+folder for
// a child's name, "k:core/keyring" for the keyring. A value therefore
// opens only under the key, term, kind and path it was written for.
const (
	envelopeVersion  byte = 1
	headerSize            = 5
	nonceSize             = 12
	tagSize               = 16
	envelopeOverhead      = headerSize + nonceSize + tagSize
	keySize               = 32
)

// newAEAD returns AES-256-GCM under key, which must be 32 bytes.
func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != keySize {
		return nil, fmt.Errorf("%w: key is %d bytes, want %d", ErrInvalidKey, len(key), keySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("barrier: %w", err)
	}
	return cipher.NewGCM(block)
}

// sealEnvelope encrypts plaintext under aead, labelling it with term and
// binding it to context. The nonce is read from r.
func sealEnvelope(aead cipher.AEAD, r io.Reader, term uint32, context string, plaintext []byte) ([]byte, error) {
	out := make([]byte, headerSize+nonceSize, headerSize+nonceSize+len(plaintext)+tagSize)
	out[0] = envelopeVersion
	binary.BigEndian.PutUint32(out[1:headerSize], term)
	if _, err := io.ReadFull(r, out[headerSize:]); err != nil {
		return nil, fmt.Errorf("barrier: read nonce: %w", err)
	}
	ad := additionalData(out[:headerSize], context)
	return aead.Seal(out, out[headerSize:headerSize+nonceSize], plaintext, ad), nil
}

// envelopeTerm returns the key term a value was encrypted under. It returns
// ErrCorrupt if v is too short or of an unknown version.
func envelopeTerm(v []byte) (uint32, error) {
	if len(v) < envelopeOverhead {
		return 0, fmt.Errorf("%w: value is %d bytes, shorter than the envelope", ErrCorrupt, len(v))
	}
	if v[0] != envelopeVersion {
		return 0, fmt.Errorf("%w: unknown envelope version %d", ErrCorrupt, v[0])
	}
	return binary.BigEndian.Uint32(v[1:headerSize]), nil
}

// openEnvelope decrypts v, which must have been sealed with aead for
// context. It returns ErrCorrupt if v was altered, moved or is malformed.
func openEnvelope(aead cipher.AEAD, context string, v []byte) ([]byte, error) {
	if _, err := envelopeTerm(v); err != nil {
		return nil, err
	}
	ad := additionalData(v[:headerSize], context)
	pt, err := aead.Open(nil, v[headerSize:headerSize+nonceSize], v[headerSize+nonceSize:], ad)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrCorrupt)
	}
	return pt, nil
}

func additionalData(header []byte, context string) []byte {
	ad := make([]byte, 0, len(header)+len(context))
	ad = append(ad, header...)
	return append(ad, context...)
}
