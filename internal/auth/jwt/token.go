package jwt

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"slices"
	"strings"
	"time"
)

// The errors of Parse, Verify and Validate. Their messages never contain
// the token or a claim's value.
var (
	// ErrMalformed: not three base64url parts of JSON objects.
	ErrMalformed = errors.New("jwt: malformed token")
	// ErrAlgorithm: alg is none, symmetric (HS*), unknown or not allowed.
	ErrAlgorithm = errors.New("jwt: signing algorithm not allowed")
	// ErrSignature: no configured key verifies the signature.
	ErrSignature = errors.New("jwt: signature does not verify")
	// ErrExpired: exp is in the past (beyond the leeway).
	ErrExpired = errors.New("jwt: token is expired")
	// ErrNotYetValid: nbf or iat is in the future (beyond the leeway).
	ErrNotYetValid = errors.New("jwt: token is not yet valid")
	// ErrIssuer: iss is not the one required.
	ErrIssuer = errors.New("jwt: issuer does not match")
	// ErrAudience: aud does not contain an allowed audience.
	ErrAudience = errors.New("jwt: audience does not match")
)

// maxTokenSize bounds what Parse reads; real tokens are a few KiB.
const maxTokenSize = 64 << 10

// Token is a parsed, not yet verified, JWS compact serialization.
type Token struct {
	Alg    string
	KeyID  string
	Claims map[string]any

	signingInput []byte
	signature    []byte
}

// Parse splits and decodes a compact JWS with a JSON claims set. It checks
// only the form: call Verify and Validate before trusting any claim.
// Numbers in Claims are json.Number.
func Parse(s string) (*Token, error) {
	if len(s) > maxTokenSize {
		return nil, fmt.Errorf("%w: over %d bytes", ErrMalformed, maxTokenSize)
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: want 3 dot-separated parts, got %d", ErrMalformed, len(parts))
	}
	hb, err := base64.RawURLEncoding.Strict().DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: header is not base64url", ErrMalformed)
	}
	var h struct {
		Alg  string          `json:"alg"`
		Kid  string          `json:"kid"`
		Crit json.RawMessage `json:"crit"`
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, fmt.Errorf("%w: header is not a JSON object", ErrMalformed)
	}
	if h.Crit != nil {
		return nil, fmt.Errorf("%w: critical header extensions are not supported", ErrMalformed)
	}
	cb, err := base64.RawURLEncoding.Strict().DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: claims are not base64url", ErrMalformed)
	}
	claims := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(cb))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil || dec.More() || claims == nil {
		return nil, fmt.Errorf("%w: claims are not a JSON object", ErrMalformed)
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("%w: signature is not base64url", ErrMalformed)
	}
	return &Token{
		Alg:          h.Alg,
		KeyID:        h.Kid,
		Claims:       claims,
		signingInput: []byte(parts[0] + "." + parts[1]),
		signature:    sig,
	}, nil
}

// SupportedAlgs are the asymmetric algorithms Verify knows. "none" and the
// HMAC algorithms are never accepted: a public key must not double as an
// HMAC secret.
var SupportedAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

func hashFor(alg string) (crypto.Hash, func() hash.Hash) {
	switch alg[len(alg)-3:] {
	case "256":
		return crypto.SHA256, sha256.New
	case "384":
		return crypto.SHA384, sha512.New384
	default:
		return crypto.SHA512, sha512.New
	}
}

// Verify checks the signature with the first of keys that fits the
// algorithm and verifies. allowed limits the algorithms (nil:
// SupportedAlgs). A key whose ID differs from the token's kid is skipped
// when both are set. It returns ErrAlgorithm or ErrSignature.
func (t *Token) Verify(keys []Key, allowed []string) error {
	if allowed == nil {
		allowed = SupportedAlgs
	}
	if !slices.Contains(SupportedAlgs, t.Alg) || !slices.Contains(allowed, t.Alg) {
		return ErrAlgorithm
	}
	for _, k := range keys {
		if t.KeyID != "" && k.ID != "" && k.ID != t.KeyID {
			continue
		}
		if verifyWith(t.Alg, k.Public, t.signingInput, t.signature) {
			return nil
		}
	}
	return ErrSignature
}

// Key is a public key with its optional key ID.
type Key struct {
	ID     string
	Public crypto.PublicKey
}

func verifyWith(alg string, pub crypto.PublicKey, input, sig []byte) bool {
	if alg == "EdDSA" {
		k, ok := pub.(ed25519.PublicKey)
		return ok && ed25519.Verify(k, input, sig)
	}
	ch, newHash := hashFor(alg)
	h := newHash()
	h.Write(input)
	digest := h.Sum(nil)
	switch alg[:2] {
	case "RS":
		k, ok := pub.(*rsa.PublicKey)
		return ok && k.N.BitLen() >= 2048 && rsa.VerifyPKCS1v15(k, ch, digest, sig) == nil
	case "PS":
		k, ok := pub.(*rsa.PublicKey)
		return ok && k.N.BitLen() >= 2048 && rsa.VerifyPSS(k, ch, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	case "ES":
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return false
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		want := map[string]int{"ES256": 32, "ES384": 48, "ES512": 66}[alg]
		if size != want || len(sig) != 2*size {
			return false
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(k, digest, r, s)
	}
	return false
}

// Expected is what Validate checks beyond the signature.
type Expected struct {
	// Issuer, when set, must equal iss.
	Issuer string
	// Audiences, when set, must share one value with aud (a string or a
	// list). When empty, a token that has an aud is refused, as Vault does
	// (a token meant for another service must not be accepted here);
	// AnyAudience lifts that.
	Audiences   []string
	AnyAudience bool
	// Now is the time to check against.
	Now time.Time
	// ExpirationLeeway, NotBeforeLeeway and ClockSkew widen exp, nbf and
	// iat respectively.
	ExpirationLeeway, NotBeforeLeeway, ClockSkew time.Duration
	// RequireExp refuses a token without exp.
	RequireExp bool
}

// NumericDate returns a claim holding a JSON number of seconds as a time.
func (t *Token) NumericDate(name string) (time.Time, bool, error) {
	v, ok := t.Claims[name]
	if !ok {
		return time.Time{}, false, nil
	}
	n, isNum := v.(json.Number)
	if !isNum {
		return time.Time{}, false, fmt.Errorf("%w: %s is not a number", ErrMalformed, name)
	}
	f, err := n.Float64()
	if err != nil || f < 0 || f > 1<<40 {
		return time.Time{}, false, fmt.Errorf("%w: %s is out of range", ErrMalformed, name)
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true, nil
}

// Audiences returns aud as a list.
func (t *Token) Audiences() ([]string, error) {
	switch v := t.Claims["aud"].(type) {
	case nil:
		return nil, nil
	case string:
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("%w: aud holds a non-string", ErrMalformed)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: aud is neither a string nor a list", ErrMalformed)
}

// Validate checks the registered claims exp, nbf, iat, iss and aud.
func (t *Token) Validate(e Expected) error {
	exp, ok, err := t.NumericDate("exp")
	if err != nil {
		return err
	}
	if !ok && e.RequireExp {
		return fmt.Errorf("%w: no exp claim", ErrExpired)
	}
	if ok && !e.Now.Before(exp.Add(e.ExpirationLeeway)) {
		return ErrExpired
	}
	nbf, ok, err := t.NumericDate("nbf")
	if err != nil {
		return err
	}
	if ok && e.Now.Add(e.NotBeforeLeeway).Before(nbf) {
		return ErrNotYetValid
	}
	iat, ok, err := t.NumericDate("iat")
	if err != nil {
		return err
	}
	if ok && e.Now.Add(e.ClockSkew).Before(iat) {
		return fmt.Errorf("%w: issued in the future", ErrNotYetValid)
	}
	if e.Issuer != "" {
		if iss, _ := t.Claims["iss"].(string); iss != e.Issuer {
			return ErrIssuer
		}
	}
	auds, err := t.Audiences()
	if err != nil {
		return err
	}
	switch {
	case len(e.Audiences) > 0:
		for _, a := range auds {
			if slices.Contains(e.Audiences, a) {
				return nil
			}
		}
		return ErrAudience
	case len(auds) > 0 && !e.AnyAudience:
		return fmt.Errorf("%w: the token has an audience but none is bound", ErrAudience)
	}
	return nil
}
