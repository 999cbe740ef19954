package transit

import (
	"crypto"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/big"
	"strconv"
	"strings"

	"github.com/coffer-dev/coffer/internal/logical"
)

// The messages of Vault's user errors that clients and tests match on.
const (
	msgTooOld          = "ciphertext or signature version is disallowed by policy (too old)"
	msgMissingContext  = "missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key"
	msgNonceNotAllowed = "nonce provided when not allowed"
	msgBadLength       = "invalid ciphertext length"
	msgAuthFailed      = "cipher: message authentication failed"
)

func userError(format string, args ...any) *logical.Error {
	return logical.Errorf(logical.Invalid, format, args...)
}

// envelope formats "vault:v<ver>:<body>".
func envelope(ver int, body string) string {
	return "vault:v" + strconv.Itoa(ver) + ":" + body
}

// parseEnvelope splits "vault:v<ver>:<body>" as Vault does; what names the
// kind of value ("ciphertext", "signature") in error messages. A version of
// 0 is read as 1, as Vault does for its earliest ciphertexts.
func parseEnvelope(s, what string) (int, string, error) {
	rest, ok := strings.CutPrefix(s, "vault:v")
	if !ok {
		return 0, "", userError("invalid %s: no prefix", what)
	}
	vs, body, ok := strings.Cut(rest, ":")
	if !ok {
		return 0, "", userError("invalid %s: wrong number of fields", what)
	}
	ver, err := strconv.Atoi(vs)
	if err != nil {
		return 0, "", userError("invalid %s: version number could not be decoded", what)
	}
	if ver == 0 {
		ver = 1
	}
	return ver, body, nil
}

// checkReadVersion checks that ver may be used to decrypt or verify.
func (p *policy) checkReadVersion(ver int, what string) (*version, error) {
	if ver > p.latestVersion {
		return nil, userError("invalid %s: version is too new", what)
	}
	if ver < p.minDecryptionVersion || ver < p.minAvailableVersion {
		return nil, userError(msgTooOld)
	}
	v, ok := p.versions[ver]
	if !ok {
		return nil, userError(msgTooOld)
	}
	return v, nil
}

// writeVersion resolves the version to encrypt or sign with (0: latest).
func (p *policy) writeVersion(ver int, op string) (int, *version, error) {
	switch {
	case ver == 0:
		ver = p.latestVersion
	case ver < 0:
		return 0, nil, userError("requested version for %s is negative", op)
	case ver > p.latestVersion:
		return 0, nil, userError("requested version for %s is higher than the latest key version", op)
	case p.minEncryptionVersion > 0 && ver < p.minEncryptionVersion:
		return 0, nil, userError("requested version for %s is less than the minimum encryption key version", op)
	}
	v, ok := p.versions[ver]
	if !ok || ver < p.minDecryptionVersion {
		return 0, nil, userError("requested version for %s is less than the minimum encryption key version", op)
	}
	return ver, v, nil
}

// symmetricKeys returns the AEAD of v for context and, for a convergent
// key, the HMAC key that derives nonces.
func (p *policy) symmetricKeys(v *version, context []byte) (aead cipher.AEAD, nonceKey []byte, err error) {
	if !p.derived {
		return v.aead, nil, nil
	}
	if len(context) == 0 {
		return nil, nil, userError(msgMissingContext)
	}
	n := 32
	if p.convergent {
		n = 64
	}
	k, err := deriveBytes(v.material, context, n)
	if err != nil {
		return nil, nil, fmt.Errorf("transit: derive key: %w", err)
	}
	a, err := newAEAD(p.typ, k[:32])
	if err != nil {
		return nil, nil, fmt.Errorf("transit: derive key: %w", err)
	}
	if p.convergent {
		nonceKey = k[32:]
	}
	return a, nonceKey, nil
}

// encrypt encrypts plaintext with version ver (0: latest) and returns the
// ciphertext envelope and the version used.
func (p *policy) encrypt(rand io.Reader, ver int, context, nonce, plaintext, ad []byte) (string, int, error) {
	if !p.typ.supportsEncryption() {
		return "", 0, userError("message encryption not supported for key type %s", p.typ)
	}
	ver, v, err := p.writeVersion(ver, "encryption")
	if err != nil {
		return "", 0, err
	}
	if len(nonce) > 0 {
		return "", 0, userError(msgNonceNotAllowed)
	}
	var out []byte
	if p.typ.rsa() {
		if len(ad) > 0 {
			return "", 0, userError("associated_data is not supported for key type %s", p.typ)
		}
		pub := v.signer.Public().(*rsa.PublicKey)
		if out, err = rsa.EncryptOAEP(sha256.New(), rand, pub, plaintext, nil); err != nil {
			return "", 0, userError("failed to RSA encrypt the plaintext: %s", errorKind(err))
		}
		return envelope(ver, base64.StdEncoding.EncodeToString(out)), ver, nil
	}
	aead, nonceKey, err := p.symmetricKeys(v, context)
	if err != nil {
		return "", 0, err
	}
	ns := aead.NonceSize()
	out = make([]byte, ns, ns+len(plaintext)+aead.Overhead())
	if nonceKey != nil {
		m := hmac.New(sha256.New, nonceKey)
		m.Write(plaintext)
		copy(out, m.Sum(nil))
	} else if _, err := io.ReadFull(rand, out); err != nil {
		return "", 0, fmt.Errorf("transit: read nonce: %w", err)
	}
	out = aead.Seal(out, out[:ns], plaintext, ad)
	return envelope(ver, base64.StdEncoding.EncodeToString(out)), ver, nil
}

// decrypt opens a ciphertext envelope and returns the plaintext and the
// version it was made with.
func (p *policy) decrypt(ct string, context, nonce, ad []byte) ([]byte, int, error) {
	if !p.typ.supportsEncryption() {
		return nil, 0, userError("message decryption not supported for key type %s", p.typ)
	}
	ver, body, err := parseEnvelope(ct, "ciphertext")
	if err != nil {
		return nil, 0, err
	}
	v, err := p.checkReadVersion(ver, "ciphertext")
	if err != nil {
		return nil, 0, err
	}
	raw, err := base64.StdEncoding.DecodeString(body)
	if err != nil {
		return nil, 0, userError("invalid ciphertext: could not decode base64")
	}
	if len(nonce) > 0 {
		return nil, 0, userError(msgNonceNotAllowed)
	}
	if p.typ.rsa() {
		pt, err := rsa.DecryptOAEP(sha256.New(), nil, v.signer.(*rsa.PrivateKey), raw, nil)
		if err != nil {
			return nil, 0, userError("failed to RSA decrypt the ciphertext: %s", errorKind(err))
		}
		return pt, ver, nil
	}
	aead, _, err := p.symmetricKeys(v, context)
	if err != nil {
		return nil, 0, err
	}
	ns := aead.NonceSize()
	if len(raw) < ns {
		return nil, 0, userError(msgBadLength)
	}
	pt, err := aead.Open(nil, raw[:ns], raw[ns:], ad)
	if err != nil {
		return nil, 0, userError(msgAuthFailed)
	}
	if pt == nil {
		pt = []byte{}
	}
	return pt, ver, nil
}

// errorKind describes a crypto error without any data in it.
func errorKind(err error) string {
	if errors.Is(err, rsa.ErrMessageTooLong) {
		return "message too long for RSA key size"
	}
	if errors.Is(err, rsa.ErrDecryption) {
		return "decryption error"
	}
	return "operation failed"
}

// hashAlgo is a hash by Vault's name.
type hashAlgo struct {
	id  crypto.Hash
	new func() hash.Hash
}

var hashAlgos = map[string]hashAlgo{
	"sha1":     {crypto.SHA1, sha1.New},
	"sha2-224": {crypto.SHA224, sha256.New224},
	"sha2-256": {crypto.SHA256, sha256.New},
	"sha2-384": {crypto.SHA384, sha512.New384},
	"sha2-512": {crypto.SHA512, sha512.New},
	"sha3-224": {crypto.SHA3_224, func() hash.Hash { return sha3.New224() }},
	"sha3-256": {crypto.SHA3_256, func() hash.Hash { return sha3.New256() }},
	"sha3-384": {crypto.SHA3_384, func() hash.Hash { return sha3.New384() }},
	"sha3-512": {crypto.SHA3_512, func() hash.Hash { return sha3.New512() }},
}

// lookupHash returns the hash named name ("" is sha2-256). "none" is only
// valid where allowNone says so (RSA PKCS#1 v1.5 over prehashed input).
func lookupHash(name string, allowNone bool) (hashAlgo, error) {
	if name == "" {
		name = "sha2-256"
	}
	if name == "none" && allowNone {
		return hashAlgo{}, nil
	}
	h, ok := hashAlgos[name]
	if !ok {
		return hashAlgo{}, userError("unsupported hash algorithm %s", name)
	}
	return h, nil
}

// signOpts are the per-request options of sign and verify.
type signOpts struct {
	hash       string // Vault name; "" is sha2-256
	prehashed  bool
	sigAlgo    string // rsa: "pss" (default) or "pkcs1v15"
	marshaling string // "asn1" (default) or "jws"
	saltLength string // rsa pss: "auto" (default), "hash" or a number
}

func (o *signOpts) validate(t keyType) error {
	switch o.marshaling {
	case "", "asn1", "jws":
	default:
		return userError("invalid marshaling type %q", o.marshaling)
	}
	if t.rsa() {
		switch o.sigAlgo {
		case "", "pss", "pkcs1v15":
		default:
			return userError("unsupported rsa signature algorithm %s", o.sigAlgo)
		}
	}
	return nil
}

func (o *signOpts) encoding() *base64.Encoding {
	if o.marshaling == "jws" {
		return base64.RawURLEncoding
	}
	return base64.StdEncoding
}

func (o *signOpts) pssSaltLength(h crypto.Hash) (int, error) {
	switch o.saltLength {
	case "", "auto":
		return rsa.PSSSaltLengthAuto, nil
	case "hash":
		return rsa.PSSSaltLengthEqualsHash, nil
	}
	n, err := strconv.Atoi(o.saltLength)
	if err != nil || n < 0 {
		return 0, userError("salt length must be \"auto\", \"hash\" or a non-negative integer")
	}
	return n, nil
}

// signerFor returns the signer of v, deriving it from context for a
// derived ed25519 key.
func (p *policy) signerFor(v *version, context []byte) (crypto.Signer, error) {
	if !p.derived {
		return v.signer, nil
	}
	if len(context) == 0 {
		return nil, userError(msgMissingContext)
	}
	seed, err := deriveBytes(v.material, context, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("transit: derive key: %w", err)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// digest hashes input for signing, unless it is prehashed or the key is
// ed25519 (which signs the message itself).
func (p *policy) digest(input []byte, o *signOpts) ([]byte, crypto.Hash, error) {
	if p.typ == typeEd25519 {
		return input, 0, nil
	}
	h, err := lookupHash(o.hash, p.typ.rsa() && o.sigAlgo == "pkcs1v15" && o.prehashed)
	if err != nil {
		return nil, 0, err
	}
	if o.prehashed || h.new == nil {
		return input, h.id, nil
	}
	d := h.new()
	d.Write(input)
	return d.Sum(nil), h.id, nil
}

type ecdsaSignature struct{ R, S *big.Int }

// sign signs input with version ver (0: latest).
func (p *policy) sign(rand io.Reader, ver int, context, input []byte, o *signOpts) (string, int, error) {
	if !p.typ.supportsSigning() {
		return "", 0, userError("key type %s does not support signing", p.typ)
	}
	if err := o.validate(p.typ); err != nil {
		return "", 0, err
	}
	ver, v, err := p.writeVersion(ver, "signing")
	if err != nil {
		return "", 0, err
	}
	s, err := p.signerFor(v, context)
	if err != nil {
		return "", 0, err
	}
	d, h, err := p.digest(input, o)
	if err != nil {
		return "", 0, err
	}
	var sig []byte
	switch k := s.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, d)
	case *ecdsa.PrivateKey:
		if sig, err = ecdsa.SignASN1(rand, k, d); err != nil {
			return "", 0, fmt.Errorf("transit: ecdsa sign: %w", err)
		}
		if o.marshaling == "jws" {
			var es ecdsaSignature
			if _, err := asn1.Unmarshal(sig, &es); err != nil {
				return "", 0, fmt.Errorf("transit: ecdsa sign: %w", err)
			}
			sig = make([]byte, 64)
			es.R.FillBytes(sig[:32])
			es.S.FillBytes(sig[32:])
		}
	case *rsa.PrivateKey:
		if o.sigAlgo == "pkcs1v15" {
			sig, err = rsa.SignPKCS1v15(rand, k, h, d)
		} else {
			var salt int
			if salt, err = o.pssSaltLength(h); err != nil {
				return "", 0, err
			}
			sig, err = rsa.SignPSS(rand, k, h, d, &rsa.PSSOptions{SaltLength: salt, Hash: h})
		}
		if err != nil {
			return "", 0, userError("failed to sign: %s", errorKind(err))
		}
	default:
		return "", 0, fmt.Errorf("transit: unexpected signer %T", s)
	}
	return envelope(ver, o.encoding().EncodeToString(sig)), ver, nil
}

// verify checks a signature envelope over input. A well-formed signature
// that does not match is (false, nil).
func (p *policy) verify(signature string, context, input []byte, o *signOpts) (bool, error) {
	if !p.typ.supportsSigning() {
		return false, userError("key type %s does not support verification", p.typ)
	}
	if err := o.validate(p.typ); err != nil {
		return false, err
	}
	ver, body, err := parseEnvelope(signature, "signature")
	if err != nil {
		return false, err
	}
	v, err := p.checkReadVersion(ver, "signature")
	if err != nil {
		return false, err
	}
	sig, err := o.encoding().DecodeString(body)
	if err != nil {
		return false, userError("invalid signature: could not decode base64")
	}
	s, err := p.signerFor(v, context)
	if err != nil {
		return false, err
	}
	d, h, err := p.digest(input, o)
	if err != nil {
		return false, err
	}
	switch k := s.Public().(type) {
	case ed25519.PublicKey:
		return ed25519.Verify(k, d, sig), nil
	case *ecdsa.PublicKey:
		if o.marshaling == "jws" {
			if len(sig) != 64 {
				return false, nil
			}
			r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
			return ecdsa.Verify(k, d, r, s), nil
		}
		return ecdsa.VerifyASN1(k, d, sig), nil
	case *rsa.PublicKey:
		if o.sigAlgo == "pkcs1v15" {
			return rsa.VerifyPKCS1v15(k, h, d, sig) == nil, nil
		}
		salt, err := o.pssSaltLength(h)
		if err != nil {
			return false, err
		}
		return rsa.VerifyPSS(k, h, d, sig, &rsa.PSSOptions{SaltLength: salt, Hash: h}) == nil, nil
	}
	return false, fmt.Errorf("transit: unexpected public key %T", s.Public())
}

// hmacKey returns the HMAC key of version ver (0: latest).
func (p *policy) hmacKey(ver int) (int, []byte, error) {
	switch {
	case ver == 0:
		ver = p.latestVersion
	case ver < 0:
		return 0, nil, userError("invalid key version")
	case ver > p.latestVersion:
		return 0, nil, userError("cannot use key version greater than latest")
	case p.minEncryptionVersion > 0 && ver < p.minEncryptionVersion:
		return 0, nil, userError("cannot generate HMAC: version is too old (disallowed by policy)")
	}
	v, ok := p.versions[ver]
	if !ok || ver < p.minDecryptionVersion {
		return 0, nil, userError("key version disallowed by policy (minimum is %d)", p.minDecryptionVersion)
	}
	return ver, v.hmacKey, nil
}

// computeHMAC returns the HMAC envelope of input.
func (p *policy) computeHMAC(ver int, algo string, input []byte) (string, error) {
	h, err := lookupHash(algo, false)
	if err != nil {
		return "", err
	}
	ver, key, err := p.hmacKey(ver)
	if err != nil {
		return "", err
	}
	m := hmac.New(h.new, key)
	m.Write(input)
	return envelope(ver, base64.StdEncoding.EncodeToString(m.Sum(nil))), nil
}

// verifyHMAC checks an HMAC envelope over input in constant time.
func (p *policy) verifyHMAC(mac, algo string, input []byte) (bool, error) {
	h, err := lookupHash(algo, false)
	if err != nil {
		return false, err
	}
	ver, body, err := parseEnvelope(mac, "hmac")
	if err != nil {
		return false, err
	}
	v, err := p.checkReadVersion(ver, "hmac")
	if err != nil {
		return false, err
	}
	got, err := base64.StdEncoding.DecodeString(body)
	if err != nil {
		return false, userError("invalid hmac: could not decode base64")
	}
	m := hmac.New(h.new, v.hmacKey)
	m.Write(input)
	return hmac.Equal(got, m.Sum(nil)), nil
}
