package jwt

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
)

// ErrKey is returned for a public key or key set that cannot be used.
var ErrKey = errors.New("jwt: unusable key")

// ParsePublicKeyPEM reads a PEM "PUBLIC KEY" (PKIX), "RSA PUBLIC KEY"
// (PKCS #1) or "CERTIFICATE" block: an RSA, ECDSA or Ed25519 key.
func ParsePublicKeyPEM(s string) (crypto.PublicKey, error) {
	blk, _ := pem.Decode([]byte(s))
	if blk == nil {
		return nil, fmt.Errorf("%w: not PEM", ErrKey)
	}
	var pub any
	var err error
	switch blk.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(blk.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(blk.Bytes)
	case "CERTIFICATE":
		var c *x509.Certificate
		if c, err = x509.ParseCertificate(blk.Bytes); err == nil {
			pub = c.PublicKey
		}
	default:
		return nil, fmt.Errorf("%w: PEM block %q is not a public key", ErrKey, blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	switch pub.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return pub, nil
	}
	return nil, fmt.Errorf("%w: unsupported key type %T", ErrKey, pub)
}

// jwk is one JSON Web Key (RFC 7517) of a public kind.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// ParseJWKS reads a JSON Web Key Set and returns its signature keys.
// Keys of unknown types or meant for encryption are skipped; a set with
// no usable key is an error.
func ParseJWKS(raw []byte) ([]Key, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("%w: key set is not JSON", ErrKey)
	}
	var out []Key
	for _, r := range set.Keys {
		var k jwk
		if json.Unmarshal(r, &k) != nil || (k.Use != "" && k.Use != "sig") {
			continue
		}
		pub, err := k.public()
		if err != nil {
			continue
		}
		out = append(out, Key{ID: k.Kid, Public: pub})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: the key set has no usable signature key", ErrKey)
	}
	return out, nil
}

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func (k *jwk) public() (crypto.PublicKey, error) {
	switch k.Kty {
	case "RSA":
		n, err1 := b64(k.N)
		e, err2 := b64(k.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
			return nil, ErrKey
		}
		ev := int(new(big.Int).SetBytes(e).Int64())
		if ev < 3 || ev%2 == 0 {
			return nil, ErrKey
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: ev}, nil
	case "EC":
		var c elliptic.Curve
		var ec ecdh.Curve
		switch k.Crv {
		case "P-256":
			c, ec = elliptic.P256(), ecdh.P256()
		case "P-384":
			c, ec = elliptic.P384(), ecdh.P384()
		case "P-521":
			c, ec = elliptic.P521(), ecdh.P521()
		default:
			return nil, ErrKey
		}
		x, err1 := b64(k.X)
		y, err2 := b64(k.Y)
		size := (c.Params().BitSize + 7) / 8
		if err1 != nil || err2 != nil || len(x) != size || len(y) != size {
			return nil, ErrKey
		}
		// Check that the point is on the curve before using it.
		point := append(append([]byte{4}, x...), y...)
		if _, err := ec.NewPublicKey(point); err != nil {
			return nil, ErrKey
		}
		return &ecdsa.PublicKey{Curve: c, X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}, nil
	case "OKP":
		x, err := b64(k.X)
		if k.Crv != "Ed25519" || err != nil || len(x) != ed25519.PublicKeySize {
			return nil, ErrKey
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, ErrKey
}
