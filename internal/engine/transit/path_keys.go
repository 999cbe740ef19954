package transit

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// keyData is the "data" of a key read, in Vault's shape.
type keyData struct {
	AllowPlaintextBackup bool   `json:"allow_plaintext_backup"`
	AutoRotatePeriod     int64  `json:"auto_rotate_period"`
	DeletionAllowed      bool   `json:"deletion_allowed"`
	Derived              bool   `json:"derived"`
	Exportable           bool   `json:"exportable"`
	ImportedKey          bool   `json:"imported_key"`
	Keys                 any    `json:"keys"`
	LatestVersion        int    `json:"latest_version"`
	MinAvailableVersion  int    `json:"min_available_version"`
	MinDecryptionVersion int    `json:"min_decryption_version"`
	MinEncryptionVersion int    `json:"min_encryption_version"`
	Name                 string `json:"name"`
	SoftDeleted          bool   `json:"soft_deleted"`
	SupportsDecryption   bool   `json:"supports_decryption"`
	SupportsDerivation   bool   `json:"supports_derivation"`
	SupportsEncryption   bool   `json:"supports_encryption"`
	SupportsSigning      bool   `json:"supports_signing"`
	Type                 string `json:"type"`
	// ID is Coffer's stable key identifier (see policy.id).
	ID string `json:"id,omitempty"`
	// Only for derived keys.
	KDF                         string `json:"kdf,omitempty"`
	ConvergentEncryption        *bool  `json:"convergent_encryption,omitempty"`
	ConvergentEncryptionVersion int    `json:"convergent_encryption_version,omitempty"`
}

// asymKey is one version of an asymmetric key in a key read.
type asymKey struct {
	CreationTime time.Time `json:"creation_time"`
	Name         string    `json:"name"`
	PublicKey    string    `json:"public_key"`
}

func (p *policy) data() (*keyData, error) {
	d := &keyData{
		AllowPlaintextBackup: p.allowPlaintextBackup,
		AutoRotatePeriod:     int64(p.autoRotatePeriod / time.Second),
		DeletionAllowed:      p.deletionAllowed,
		Derived:              p.derived,
		Exportable:           p.exportable,
		LatestVersion:        p.latestVersion,
		MinAvailableVersion:  p.minAvailableVersion,
		MinDecryptionVersion: p.minDecryptionVersion,
		MinEncryptionVersion: p.minEncryptionVersion,
		Name:                 p.name,
		ID:                   p.id,
		SupportsDecryption:   p.typ.supportsEncryption(),
		SupportsDerivation:   p.typ.supportsDerivation(),
		SupportsEncryption:   p.typ.supportsEncryption(),
		SupportsSigning:      p.typ.supportsSigning(),
		Type:                 string(p.typ),
	}
	if p.derived {
		conv := p.convergent
		d.KDF = "hkdf_sha256"
		d.ConvergentEncryption = &conv
		if conv {
			d.ConvergentEncryptionVersion = convergentVersion
		}
	}
	if p.typ.symmetric() {
		keys := make(map[string]int64, len(p.versions))
		for n, v := range p.versions {
			keys[strconv.Itoa(n)] = v.created.Unix()
		}
		d.Keys = keys
		return d, nil
	}
	keys := make(map[string]asymKey, len(p.versions))
	for n, v := range p.versions {
		k := asymKey{CreationTime: v.created, Name: asymName(p.typ)}
		if !p.derived { // a derived key's public key depends on a context
			pub, err := p.publicKey(v, nil)
			if err != nil {
				return nil, err
			}
			if k.PublicKey, err = formatPublicKey(pub); err != nil {
				return nil, err
			}
		}
		keys[strconv.Itoa(n)] = k
	}
	d.Keys = keys
	return d, nil
}

func asymName(t keyType) string {
	if t == typeECDSAP256 {
		return "P-256"
	}
	return string(t)
}

func keyResponse(p *policy, warnings ...string) (*logical.Response, error) {
	d, err := p.data()
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: d, Warnings: warnings}, nil
}

func (b *Backend) listKeys(ctx context.Context) (*logical.Response, error) {
	names, err := b.storage.List(ctx, storagePrefix)
	if err != nil {
		return nil, fmt.Errorf("transit: list keys: %w", err)
	}
	if len(names) == 0 {
		return nil, nil
	}
	sort.Strings(names)
	return &logical.Response{Data: map[string]any{"keys": names}}, nil
}

func (b *Backend) readKey(ctx context.Context, name string) (*logical.Response, error) {
	p, err := b.get(ctx, name)
	if err != nil || p == nil {
		return nil, err
	}
	return keyResponse(p)
}

type createKeyRequest struct {
	Type                 string           `json:"type"`
	Derived              logical.Bool     `json:"derived"`
	ConvergentEncryption logical.Bool     `json:"convergent_encryption"`
	Exportable           logical.Bool     `json:"exportable"`
	AllowPlaintextBackup logical.Bool     `json:"allow_plaintext_backup"`
	AutoRotatePeriod     logical.Duration `json:"auto_rotate_period"`
}

func (b *Backend) createKey(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	var in createKeyRequest
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	t, ok := parseKeyType(in.Type)
	if !ok {
		return nil, userError("unknown key type %q", in.Type)
	}
	p, created, err := b.getOrCreate(ctx, name, createParams{
		typ: t, derived: bool(in.Derived), convergent: bool(in.ConvergentEncryption),
		exportable: bool(in.Exportable), allowPlaintextBackup: bool(in.AllowPlaintextBackup),
		autoRotatePeriod: time.Duration(in.AutoRotatePeriod),
	})
	if err != nil {
		return nil, err
	}
	if !created {
		return keyResponse(p, fmt.Sprintf("key %s already existed", name))
	}
	return keyResponse(p)
}

func (b *Backend) deleteKey(ctx context.Context, name string) (*logical.Response, error) {
	l := b.keyLock(name)
	l.Lock()
	defer l.Unlock()
	p, err := b.loadLocked(ctx, name)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, userError("could not delete key; not found")
	}
	if !p.deletionAllowed {
		return nil, userError("deletion is not allowed for this key")
	}
	if err := b.storage.Delete(ctx, storagePrefix+name); err != nil {
		return nil, fmt.Errorf("transit: delete key %q: %w", name, err)
	}
	b.publish(name, nil)
	b.log.InfoContext(ctx, "transit key deleted", "name", name)
	return nil, nil
}

type configKeyRequest struct {
	MinDecryptionVersion *logical.Int      `json:"min_decryption_version"`
	MinEncryptionVersion *logical.Int      `json:"min_encryption_version"`
	DeletionAllowed      *logical.Bool     `json:"deletion_allowed"`
	Exportable           *logical.Bool     `json:"exportable"`
	AllowPlaintextBackup *logical.Bool     `json:"allow_plaintext_backup"`
	AutoRotatePeriod     *logical.Duration `json:"auto_rotate_period"`
}

func (b *Backend) configKey(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	var in configKeyRequest
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	var warnings []string
	p, err := b.update(ctx, name, func(p *policy) error {
		if in.MinDecryptionVersion != nil {
			v := int(*in.MinDecryptionVersion)
			switch {
			case v < 0:
				return userError("min decryption version cannot be negative")
			case v == 0:
				v = 1
				warnings = append(warnings, "since Vault 0.3, transit key numbering starts at 1; forcing minimum to 1")
			case v > p.latestVersion:
				return userError("cannot set min decryption version of %d, latest key version is %d", v, p.latestVersion)
			case v < p.minAvailableVersion:
				return userError("cannot set min decryption version of %d, minimum available version is %d", v, p.minAvailableVersion)
			}
			p.minDecryptionVersion = v
		}
		if in.MinEncryptionVersion != nil {
			v := int(*in.MinEncryptionVersion)
			switch {
			case v < 0:
				return userError("min encryption version cannot be negative")
			case v > p.latestVersion:
				return userError("cannot set min encryption version of %d, latest key version is %d", v, p.latestVersion)
			}
			p.minEncryptionVersion = v
		}
		if p.minEncryptionVersion > 0 && p.minEncryptionVersion < p.minDecryptionVersion {
			return userError("cannot set min encryption/decryption values; min encryption version of %d must be greater than or equal to min decryption version of %d", p.minEncryptionVersion, p.minDecryptionVersion)
		}
		if in.DeletionAllowed != nil {
			p.deletionAllowed = bool(*in.DeletionAllowed)
		}
		// Like Vault, exportable and allow_plaintext_backup can be set but
		// never unset: a false is ignored.
		if in.Exportable != nil && bool(*in.Exportable) {
			p.exportable = true
		}
		if in.AllowPlaintextBackup != nil && bool(*in.AllowPlaintextBackup) {
			p.allowPlaintextBackup = true
		}
		if in.AutoRotatePeriod != nil {
			d := time.Duration(*in.AutoRotatePeriod)
			if err := validateAutoRotate(d); err != nil {
				return err
			}
			p.autoRotatePeriod = d
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, userError("no existing key named %s could be found", name)
	}
	return keyResponse(p, warnings...)
}

func (b *Backend) rotateKey(ctx context.Context, name string) (*logical.Response, error) {
	p, err := b.update(ctx, name, b.rotate)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, userError("key not found")
	}
	b.log.InfoContext(ctx, "transit key rotated", "name", name, "version", p.latestVersion)
	return keyResponse(p)
}

type trimKeyRequest struct {
	MinAvailableVersion *logical.Int `json:"min_available_version"`
}

func (b *Backend) trimKey(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	var in trimKeyRequest
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	if in.MinAvailableVersion == nil {
		return nil, userError("missing min_available_version")
	}
	v := int(*in.MinAvailableVersion)
	p, err := b.update(ctx, name, func(p *policy) error {
		switch {
		case v <= 0:
			return userError("minimum available version should be positive")
		case v > p.minDecryptionVersion:
			return userError("minimum available version should not be greater than minimum decryption version")
		case p.minEncryptionVersion > 0 && v > p.minEncryptionVersion:
			return userError("minimum available version should not be greater than minimum encryption version")
		case v < p.minAvailableVersion:
			return userError("minimum available version should not be less than the current minimum available version")
		}
		for n := range p.versions {
			if n < v {
				delete(p.versions, n)
			}
		}
		p.minAvailableVersion = v
		return nil
	})
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, userError("invalid key name")
	}
	return keyResponse(p)
}

// exportKey serves export/<type>/<name>[/<version>].
func (b *Backend) exportKey(ctx context.Context, exportType, name, ver string) (*logical.Response, error) {
	switch exportType {
	case "encryption-key", "signing-key", "hmac-key", "public-key":
	default:
		return nil, userError("invalid export type: %s", exportType)
	}
	p, err := b.get(ctx, name)
	if err != nil || p == nil {
		return nil, err
	}
	if !p.exportable && exportType != "public-key" {
		return nil, userError("private key material is not exportable")
	}
	switch exportType {
	case "encryption-key":
		if !p.typ.supportsEncryption() {
			return nil, userError("encryption not supported for the key")
		}
	case "signing-key", "public-key":
		if !p.typ.supportsSigning() {
			return nil, userError("signing not supported for the key")
		}
		if p.derived {
			return nil, userError("export of a derived signing key is not supported")
		}
	}
	versions := map[int]*version{}
	switch ver {
	case "":
		versions = p.versions
	case "latest":
		versions[p.latestVersion] = p.versions[p.latestVersion]
	default:
		n, err := strconv.Atoi(ver)
		if err != nil || p.versions[n] == nil {
			return nil, userError("version does not exist or cannot be found")
		}
		versions[n] = p.versions[n]
	}
	keys := make(map[string]string, len(versions))
	for n, v := range versions {
		s, err := exportVersion(p, v, exportType)
		if err != nil {
			return nil, err
		}
		keys[strconv.Itoa(n)] = s
	}
	return &logical.Response{Data: map[string]any{"name": p.name, "type": string(p.typ), "keys": keys}}, nil
}

func exportVersion(p *policy, v *version, exportType string) (string, error) {
	switch exportType {
	case "hmac-key":
		return base64.StdEncoding.EncodeToString(v.hmacKey), nil
	case "public-key":
		return formatPublicKey(v.signer.Public())
	}
	if p.typ.symmetric() {
		return base64.StdEncoding.EncodeToString(v.material), nil
	}
	switch k := v.signer.(type) {
	case ed25519.PrivateKey:
		return base64.StdEncoding.EncodeToString(k), nil
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return "", fmt.Errorf("transit: marshal ecdsa key: %w", err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})), nil
	case *rsa.PrivateKey:
		return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})), nil
	}
	return "", fmt.Errorf("transit: cannot export key type %s", p.typ)
}
