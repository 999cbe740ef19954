package jwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"testing"
)

// Test fixtures: keys made for the test, and a signer written from RFC
// 7515/7518 independently of the verifier.

var enc = base64.RawURLEncoding

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sign(t testing.TB, alg, kid string, key crypto.Signer, claims map[string]any) string {
	t.Helper()
	h := map[string]any{"alg": alg, "typ": "JWT"}
	if kid != "" {
		h["kid"] = kid
	}
	in := enc.EncodeToString(mustJSON(t, h)) + "." + enc.EncodeToString(mustJSON(t, claims))
	var sig []byte
	var err error
	switch alg {
	case "RS256":
		d := sha256.Sum256([]byte(in))
		sig, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, d[:])
	case "PS256":
		d := sha256.Sum256([]byte(in))
		sig, err = rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "ES256":
		d := sha256.Sum256([]byte(in))
		var r, s *big.Int
		r, s, err = ecdsa.Sign(rand.Reader, key.(*ecdsa.PrivateKey), d[:])
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	case "EdDSA":
		sig = ed25519.Sign(key.(ed25519.PrivateKey), []byte(in))
	default:
		t.Fatalf("sign: unknown alg %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + enc.EncodeToString(sig)
}

// unsigned returns a token with alg "none" and an empty signature.
func unsigned(t testing.TB, claims map[string]any) string {
	return enc.EncodeToString(mustJSON(t, map[string]any{"alg": "none"})) + "." + enc.EncodeToString(mustJSON(t, claims)) + "."
}

// hmacWithKey signs with HS256 using the public key's PEM as the secret:
// the classic algorithm-confusion attack.
func hmacWithKey(t testing.TB, pemKey string, claims map[string]any) string {
	in := enc.EncodeToString(mustJSON(t, map[string]any{"alg": "HS256"})) + "." + enc.EncodeToString(mustJSON(t, claims))
	m := hmac.New(sha256.New, []byte(pemKey))
	m.Write([]byte(in))
	return in + "." + enc.EncodeToString(m.Sum(nil))
}

type keys struct {
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
	ed  ed25519.PrivateKey
}

var testKeys = func() keys {
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	e, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	_, d, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return keys{r, e, d}
}()

func pubPEM(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func jwks(t testing.TB, kid string) []byte {
	t.Helper()
	k := testKeys
	b := func(x *big.Int, n int) string {
		buf := make([]byte, n)
		x.FillBytes(buf)
		return enc.EncodeToString(buf)
	}
	set := map[string]any{"keys": []map[string]any{
		{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": enc.EncodeToString(k.rsa.N.Bytes()), "e": enc.EncodeToString(big.NewInt(int64(k.rsa.E)).Bytes())},
		{"kty": "EC", "kid": kid + "-ec", "crv": "P-256", "x": b(k.ec.X, 32), "y": b(k.ec.Y, 32)},
		{"kty": "OKP", "kid": kid + "-ed", "crv": "Ed25519", "x": enc.EncodeToString(k.ed.Public().(ed25519.PublicKey))},
		{"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
		{"kty": "oct", "k": "c2VjcmV0"},
	}}
	return mustJSON(t, set)
}
