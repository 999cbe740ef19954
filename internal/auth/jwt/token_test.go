package jwt

import (
	"crypto"
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func claimsAt(now time.Time) map[string]any {
	return map[string]any{"iss": "https://issuer.example", "sub": "user-1", "aud": []string{"coffer"},
		"exp": now.Add(time.Hour).Unix(), "nbf": now.Add(-time.Minute).Unix(), "iat": now.Unix()}
}

func TestVerifyAlgorithms(t *testing.T) {
	k := testKeys
	all := []Key{{Public: k.rsa.Public()}, {Public: k.ec.Public()}, {Public: k.ed.Public()}}
	for name, tc := range map[string]struct {
		tok  string
		keys []Key
		want error
	}{
		"RS256 verifies":                        {sign(t, "RS256", "", k.rsa, claimsAt(t0)), all, nil},
		"PS256 verifies":                        {sign(t, "PS256", "", k.rsa, claimsAt(t0)), all, nil},
		"ES256 verifies":                        {sign(t, "ES256", "", k.ec, claimsAt(t0)), all, nil},
		"EdDSA verifies":                        {sign(t, "EdDSA", "", k.ed, claimsAt(t0)), all, nil},
		"alg none is refused":                   {unsigned(t, claimsAt(t0)), all, ErrAlgorithm},
		"HS256 with the public key is refused":  {hmacWithKey(t, pubPEM(t, k.rsa.Public()), claimsAt(t0)), all, ErrAlgorithm},
		"a key of another type does not verify": {sign(t, "ES256", "", k.ec, claimsAt(t0)), []Key{{Public: k.rsa.Public()}}, ErrSignature},
		"a kid that matches no key":             {sign(t, "RS256", "other", k.rsa, claimsAt(t0)), []Key{{ID: "mine", Public: k.rsa.Public()}}, ErrSignature},
		"no keys":                               {sign(t, "RS256", "", k.rsa, claimsAt(t0)), nil, ErrSignature},
	} {
		t.Run(name, func(t *testing.T) {
			tok, err := Parse(tc.tok)
			if err != nil {
				t.Fatal(err)
			}
			if err := tok.Verify(tc.keys, nil); !errors.Is(err, tc.want) {
				t.Errorf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("a tampered payload does not verify", func(t *testing.T) {
		s := sign(t, "RS256", "", k.rsa, claimsAt(t0))
		parts := strings.Split(s, ".")
		c := claimsAt(t0)
		c["sub"] = "admin"
		parts[1] = enc.EncodeToString(mustJSON(t, c))
		tok, err := Parse(strings.Join(parts, "."))
		if err != nil {
			t.Fatal(err)
		}
		if err := tok.Verify(all, nil); !errors.Is(err, ErrSignature) {
			t.Errorf("Verify = %v, want ErrSignature", err)
		}
	})
	t.Run("an algorithm outside jwt_supported_algs is refused", func(t *testing.T) {
		tok, _ := Parse(sign(t, "RS256", "", k.rsa, claimsAt(t0)))
		if err := tok.Verify(all, []string{"ES256"}); !errors.Is(err, ErrAlgorithm) {
			t.Errorf("Verify = %v, want ErrAlgorithm", err)
		}
	})
}

func TestValidateClaims(t *testing.T) {
	base := Expected{Issuer: "https://issuer.example", Audiences: []string{"coffer"}, Now: t0, ExpirationLeeway: 150 * time.Second, NotBeforeLeeway: 150 * time.Second, ClockSkew: time.Minute}
	with := func(f func(map[string]any)) map[string]any { c := claimsAt(t0); f(c); return c }
	for name, tc := range map[string]struct {
		claims map[string]any
		exp    func(*Expected)
		want   error
	}{
		"valid claims pass":          {claimsAt(t0), nil, nil},
		"expired beyond the leeway":  {with(func(c map[string]any) { c["exp"] = t0.Add(-3 * time.Minute).Unix() }), nil, ErrExpired},
		"expired within the leeway":  {with(func(c map[string]any) { c["exp"] = t0.Add(-time.Minute).Unix() }), nil, nil},
		"not yet valid":              {with(func(c map[string]any) { c["nbf"] = t0.Add(10 * time.Minute).Unix() }), nil, ErrNotYetValid},
		"issued in the future":       {with(func(c map[string]any) { c["iat"] = t0.Add(5 * time.Minute).Unix() }), nil, ErrNotYetValid},
		"wrong issuer":               {with(func(c map[string]any) { c["iss"] = "https://evil.example" }), nil, ErrIssuer},
		"wrong audience":             {with(func(c map[string]any) { c["aud"] = "other" }), nil, ErrAudience},
		"audience as a string":       {with(func(c map[string]any) { c["aud"] = "coffer" }), nil, nil},
		"an audience but none bound": {claimsAt(t0), func(e *Expected) { e.Audiences = nil }, ErrAudience},
		"exp that is not a number":   {with(func(c map[string]any) { c["exp"] = "tomorrow" }), nil, ErrMalformed},
		"aud that holds a number":    {with(func(c map[string]any) { c["aud"] = []any{1} }), nil, ErrMalformed},
		"no exp when required":       {with(func(c map[string]any) { delete(c, "exp") }), func(e *Expected) { e.RequireExp = true }, ErrExpired},
	} {
		t.Run(name, func(t *testing.T) {
			tok, err := Parse(sign(t, "EdDSA", "", testKeys.ed, tc.claims))
			if err != nil {
				t.Fatal(err)
			}
			e := base
			if tc.exp != nil {
				tc.exp(&e)
			}
			if err := tok.Validate(e); !errors.Is(err, tc.want) {
				t.Errorf("Validate = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseMalformed(t *testing.T) {
	good := sign(t, "RS256", "", testKeys.rsa, claimsAt(t0))
	parts := strings.Split(good, ".")
	for name, s := range map[string]string{
		"empty":             "",
		"two parts":         parts[0] + "." + parts[1],
		"four parts":        good + ".x",
		"header not base64": "!!." + parts[1] + "." + parts[2],
		"header not JSON":   enc.EncodeToString([]byte("nope")) + "." + parts[1] + "." + parts[2],
		"claims an array":   parts[0] + "." + enc.EncodeToString([]byte("[1]")) + "." + parts[2],
		"claims null":       parts[0] + "." + enc.EncodeToString([]byte("null")) + "." + parts[2],
		"padded base64":     parts[0] + "=." + parts[1] + "." + parts[2],
		"crit header":       enc.EncodeToString([]byte(`{"alg":"RS256","crit":["x"]}`)) + "." + parts[1] + "." + parts[2],
		"oversized":         strings.Repeat("a", maxTokenSize+1),
		"garbage":           "this-is-not-a-jwt",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(s); !errors.Is(err, ErrMalformed) {
				t.Errorf("Parse = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	ks, err := ParseJWKS(jwks(t, "k1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ks) != 3 {
		t.Fatalf("ParseJWKS kept %d keys, want 3 (RSA, EC, OKP; not enc or oct)", len(ks))
	}
	for _, s := range []string{"", "{}", `{"keys":[]}`, `{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`, `{"keys":[{"kty":"RSA","n":"AQAB","e":"AA"}]}`} {
		if _, err := ParseJWKS([]byte(s)); !errors.Is(err, ErrKey) {
			t.Errorf("ParseJWKS(%q) = %v, want ErrKey", s, err)
		}
	}
	for _, pub := range []crypto.PublicKey{testKeys.rsa.Public(), testKeys.ec.Public(), testKeys.ed.Public()} {
		if _, err := ParsePublicKeyPEM(pubPEM(t, pub)); err != nil {
			t.Errorf("ParsePublicKeyPEM(%T): %v", pub, err)
		}
	}
	for _, s := range []string{"", "not pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"} {
		if _, err := ParsePublicKeyPEM(s); !errors.Is(err, ErrKey) {
			t.Errorf("ParsePublicKeyPEM(%q) = %v, want ErrKey", s, err)
		}
	}
}

// FuzzParse: Parse never panics, and whatever it accepts verifies with no
// key only as ErrAlgorithm or ErrSignature, and validates or fails with
// one of the documented errors.
func FuzzParse(f *testing.F) {
	f.Add(sign(f, "RS256", "k", testKeys.rsa, claimsAt(t0)))
	f.Add(sign(f, "ES256", "", testKeys.ec, claimsAt(t0)))
	f.Add(unsigned(f, claimsAt(t0)))
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJIUzI1NiJ9.e30.")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error %v is not ErrMalformed", err)
			}
			return
		}
		if err := tok.Verify([]Key{{Public: testKeys.ed.Public()}}, nil); err == nil {
			t.Fatal("a fuzzed token verified")
		} else if !errors.Is(err, ErrAlgorithm) && !errors.Is(err, ErrSignature) {
			t.Fatalf("Verify = %v", err)
		}
		err = tok.Validate(Expected{Issuer: "x", Audiences: []string{"y"}, Now: t0})
		for _, e := range []error{nil, ErrMalformed, ErrExpired, ErrNotYetValid, ErrIssuer, ErrAudience} {
			if errors.Is(err, e) {
				return
			}
		}
		t.Fatalf("Validate = %v, not a documented error", err)
	})
}
