package transit

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"strconv"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// keyType is the algorithm of a named key, by Vault's names.
type keyType string

const (
	typeAES256GCM96      keyType = "aes256-gcm96"
	typeChaCha20Poly1305 keyType = "chacha20-poly1305"
	typeEd25519          keyType = "ed25519"
	typeECDSAP256        keyType = "ecdsa-p256"
	typeRSA2048          keyType = "rsa-2048"
	typeRSA4096          keyType = "rsa-4096"
)

func parseKeyType(s string) (keyType, bool) {
	switch t := keyType(s); t {
	case typeAES256GCM96, typeChaCha20Poly1305, typeEd25519, typeECDSAP256, typeRSA2048, typeRSA4096:
		return t, true
	case "":
		return typeAES256GCM96, true
	}
	return "", false
}

func (t keyType) symmetric() bool { return t == typeAES256GCM96 || t == typeChaCha20Poly1305 }
func (t keyType) rsa() bool       { return t == typeRSA2048 || t == typeRSA4096 }

func (t keyType) supportsEncryption() bool { return t.symmetric() || t.rsa() }
func (t keyType) supportsSigning() bool    { return !t.symmetric() }
func (t keyType) supportsDerivation() bool { return t.symmetric() || t == typeEd25519 }

// convergentVersion is the only convergent scheme this engine implements
// (see the package doc); it is reported in key reads as Vault does.
const convergentVersion = 3

// version is one immutable key version: its material and, for keys that
// are not derived, the parsed cipher or signer built from it.
type version struct {
	created time.Time
	// material: the 32-byte symmetric key, or the 32-byte HKDF input of a
	// derived ed25519 key, or the 64-byte ed25519 private key, or the
	// PKCS#8 DER of an ECDSA or RSA private key.
	material []byte
	hmacKey  []byte

	aead   cipher.AEAD   // symmetric, not derived
	signer crypto.Signer // asymmetric, not derived
}

// policy is a named key with all its versions. A *policy that has been
// published in the cache is never modified: writers change a clone.
type policy struct {
	// id is a random UUID given at creation: stable across rotations,
	// never reused by a key recreated under the same name (the KMS plugin's
	// key_id is built on it). Coffer-only.
	id                   string
	name                 string
	typ                  keyType
	derived              bool
	convergent           bool
	exportable           bool
	allowPlaintextBackup bool
	deletionAllowed      bool
	autoRotatePeriod     time.Duration
	latestVersion        int
	minDecryptionVersion int
	minEncryptionVersion int
	minAvailableVersion  int
	versions             map[int]*version
}

// clone returns a copy whose fields and version map may be changed; the
// versions themselves are shared, being immutable.
func (p *policy) clone() *policy {
	c := *p
	c.versions = make(map[int]*version, len(p.versions))
	for n, v := range p.versions {
		c.versions[n] = v
	}
	return &c
}

// newVersion generates the material of a new version of a key of type t.
func newVersion(t keyType, derived bool, rand io.Reader, now time.Time) (*version, error) {
	v := &version{created: now.UTC(), hmacKey: make([]byte, 32)}
	if _, err := io.ReadFull(rand, v.hmacKey); err != nil {
		return nil, fmt.Errorf("transit: generate hmac key: %w", err)
	}
	switch {
	case t.symmetric() || (t == typeEd25519 && derived):
		v.material = make([]byte, 32)
		if _, err := io.ReadFull(rand, v.material); err != nil {
			return nil, fmt.Errorf("transit: generate key: %w", err)
		}
	case t == typeEd25519:
		_, priv, err := ed25519.GenerateKey(rand)
		if err != nil {
			return nil, fmt.Errorf("transit: generate ed25519 key: %w", err)
		}
		v.material = priv
	case t == typeECDSAP256:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand)
		if err != nil {
			return nil, fmt.Errorf("transit: generate ecdsa key: %w", err)
		}
		if v.material, err = x509.MarshalPKCS8PrivateKey(priv); err != nil {
			return nil, fmt.Errorf("transit: marshal ecdsa key: %w", err)
		}
	case t.rsa():
		bits := 2048
		if t == typeRSA4096 {
			bits = 4096
		}
		priv, err := rsa.GenerateKey(rand, bits)
		if err != nil {
			return nil, fmt.Errorf("transit: generate rsa key: %w", err)
		}
		if v.material, err = x509.MarshalPKCS8PrivateKey(priv); err != nil {
			return nil, fmt.Errorf("transit: marshal rsa key: %w", err)
		}
	default:
		return nil, fmt.Errorf("transit: unknown key type %q", t)
	}
	if err := v.parse(t, derived); err != nil {
		return nil, err
	}
	return v, nil
}

// parse builds the cipher or signer of a version that is not derived.
func (v *version) parse(t keyType, derived bool) error {
	if derived {
		return nil
	}
	var err error
	switch {
	case t.symmetric():
		v.aead, err = newAEAD(t, v.material)
	case t == typeEd25519:
		if len(v.material) != ed25519.PrivateKeySize {
			return fmt.Errorf("transit: stored ed25519 key has %d bytes", len(v.material))
		}
		v.signer = ed25519.PrivateKey(v.material)
	default:
		var k any
		if k, err = x509.ParsePKCS8PrivateKey(v.material); err != nil {
			return fmt.Errorf("transit: parse stored key: %w", err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return fmt.Errorf("transit: stored key is a %T", k)
		}
		v.signer = s
	}
	return err
}

func newAEAD(t keyType, key []byte) (cipher.AEAD, error) {
	if t == typeChaCha20Poly1305 {
		return chacha20poly1305.New(key)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// deriveBytes reads n bytes of HKDF-SHA256(material, info=context), Vault's
// hkdf_sha256 KDF.
func deriveBytes(material, context []byte, n int) ([]byte, error) {
	return hkdf.Key(sha256.New, material, nil, string(context), n)
}

// publicKey returns the public half of an asymmetric version, or nil.
func (p *policy) publicKey(v *version, context []byte) (crypto.PublicKey, error) {
	if p.typ.symmetric() {
		return nil, nil
	}
	s, err := p.signerFor(v, context)
	if err != nil {
		return nil, err
	}
	return s.Public(), nil
}

// formatPublicKey renders a public key as Vault does: raw base64 for
// ed25519, PEM "PUBLIC KEY" (PKIX) for the others.
func formatPublicKey(pub crypto.PublicKey) (string, error) {
	if k, ok := pub.(ed25519.PublicKey); ok {
		return base64.StdEncoding.EncodeToString(k), nil
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("transit: marshal public key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// The stored form of a policy. Byte slices are base64 in JSON.
type storedPolicy struct {
	ID                   string                   `json:"id,omitempty"`
	Name                 string                   `json:"name"`
	Type                 keyType                  `json:"type"`
	Derived              bool                     `json:"derived"`
	KDF                  string                   `json:"kdf,omitempty"`
	Convergent           bool                     `json:"convergent_encryption"`
	ConvergentVersion    int                      `json:"convergent_version,omitempty"`
	Exportable           bool                     `json:"exportable"`
	AllowPlaintextBackup bool                     `json:"allow_plaintext_backup"`
	DeletionAllowed      bool                     `json:"deletion_allowed"`
	AutoRotatePeriod     int64                    `json:"auto_rotate_period_ns"`
	LatestVersion        int                      `json:"latest_version"`
	MinDecryptionVersion int                      `json:"min_decryption_version"`
	MinEncryptionVersion int                      `json:"min_encryption_version"`
	MinAvailableVersion  int                      `json:"min_available_version"`
	Versions             map[string]storedVersion `json:"versions"`
}

type storedVersion struct {
	Key     []byte    `json:"key"`
	HMACKey []byte    `json:"hmac_key"`
	Created time.Time `json:"created"`
}

func (p *policy) marshal() ([]byte, error) {
	s := storedPolicy{
		ID: p.id, Name: p.name, Type: p.typ, Derived: p.derived, Convergent: p.convergent,
		Exportable: p.exportable, AllowPlaintextBackup: p.allowPlaintextBackup,
		DeletionAllowed: p.deletionAllowed, AutoRotatePeriod: int64(p.autoRotatePeriod),
		LatestVersion: p.latestVersion, MinDecryptionVersion: p.minDecryptionVersion,
		MinEncryptionVersion: p.minEncryptionVersion, MinAvailableVersion: p.minAvailableVersion,
		Versions: make(map[string]storedVersion, len(p.versions)),
	}
	if p.derived {
		s.KDF = "hkdf_sha256"
	}
	if p.convergent {
		s.ConvergentVersion = convergentVersion
	}
	for n, v := range p.versions {
		s.Versions[strconv.Itoa(n)] = storedVersion{Key: v.material, HMACKey: v.hmacKey, Created: v.created}
	}
	return json.Marshal(s)
}

func unmarshalPolicy(b []byte) (*policy, error) {
	var s storedPolicy
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("transit: decode stored key: %w", err)
	}
	if _, ok := parseKeyType(string(s.Type)); !ok || s.Type == "" {
		return nil, fmt.Errorf("transit: stored key has unknown type %q", s.Type)
	}
	if s.Derived && s.KDF != "hkdf_sha256" {
		return nil, fmt.Errorf("transit: stored key has unknown kdf %q", s.KDF)
	}
	if s.Convergent && s.ConvergentVersion != convergentVersion {
		return nil, fmt.Errorf("transit: stored key has convergent version %d", s.ConvergentVersion)
	}
	p := &policy{
		id: s.ID, name: s.Name, typ: s.Type, derived: s.Derived, convergent: s.Convergent,
		exportable: s.Exportable, allowPlaintextBackup: s.AllowPlaintextBackup,
		deletionAllowed: s.DeletionAllowed, autoRotatePeriod: time.Duration(s.AutoRotatePeriod),
		latestVersion: s.LatestVersion, minDecryptionVersion: s.MinDecryptionVersion,
		minEncryptionVersion: s.MinEncryptionVersion, minAvailableVersion: s.MinAvailableVersion,
		versions: make(map[int]*version, len(s.Versions)),
	}
	for ns, sv := range s.Versions {
		n, err := strconv.Atoi(ns)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("transit: stored key has bad version %q", ns)
		}
		v := &version{created: sv.Created, material: sv.Key, hmacKey: sv.HMACKey}
		if err := v.parse(p.typ, p.derived); err != nil {
			return nil, err
		}
		p.versions[n] = v
	}
	if _, ok := p.versions[p.latestVersion]; !ok {
		return nil, fmt.Errorf("transit: stored key lacks its latest version %d", p.latestVersion)
	}
	return p, nil
}
