package transit

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

func TestEncryptDecryptRoundTrip(t *testing.T) {
	e := newEnv(t)
	for _, typ := range []string{"aes256-gcm96", "chacha20-poly1305", "rsa-2048"} {
		t.Run(typ, func(t *testing.T) {
			e.write("keys/"+typ, map[string]any{"type": typ})
			for _, pt := range []string{"", "x", "hello world", strings.Repeat("z", 150)} {
				ct := e.encrypt(typ, pt, nil)
				if !strings.HasPrefix(ct, "vault:v1:") {
					t.Fatalf("ciphertext %q lacks the vault:v1: prefix", ct)
				}
				if got := e.decrypt(typ, ct, nil); got != pt {
					t.Errorf("decrypt(encrypt(%q)) = %q", pt, got)
				}
			}
			if a, b := e.encrypt(typ, "same", nil), e.encrypt(typ, "same", nil); a == b {
				t.Errorf("two encryptions of one plaintext are equal: %q", a)
			}
		})
	}
}

func TestCiphertextLayout(t *testing.T) {
	e := newEnv(t)
	e.write("keys/k", nil)
	ct := e.encrypt("k", "hello world", nil)
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(ct, "vault:v1:"))
	if err != nil {
		t.Fatal(err)
	}
	// nonce(12) | ciphertext(11) | tag(16), as Vault.
	if got, want := len(raw), 12+11+16; got != want {
		t.Errorf("raw ciphertext is %d bytes, want %d", got, want)
	}
}

// TestTamperedCiphertext flips every bit of a ciphertext, truncates it and
// moves it between keys and versions: none of it may decrypt.
func TestTamperedCiphertext(t *testing.T) {
	e := newEnv(t)
	for _, typ := range []string{"aes256-gcm96", "chacha20-poly1305"} {
		t.Run(typ, func(t *testing.T) {
			e.write("keys/"+typ, map[string]any{"type": typ})
			e.write("keys/other-"+typ, map[string]any{"type": typ})
			ct := e.encrypt(typ, "attack at dawn", nil)
			raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(ct, "vault:v1:"))
			for i := 0; i < len(raw)*8; i++ {
				bad := append([]byte(nil), raw...)
				bad[i/8] ^= 1 << (i % 8)
				e.fail(logical.UpdateOperation, "decrypt/"+typ, map[string]any{"ciphertext": "vault:v1:" + base64.StdEncoding.EncodeToString(bad)}, logical.Invalid, msgAuthFailed)
			}
			for _, n := range []int{0, 11, 12, 27, len(raw) - 1} {
				bad := "vault:v1:" + base64.StdEncoding.EncodeToString(raw[:n])
				_, err := call(e.b, logical.UpdateOperation, "decrypt/"+typ, map[string]any{"ciphertext": bad})
				if err == nil || logical.CodeOf(err) != logical.Invalid {
					t.Errorf("truncated to %d bytes: got %v, want an Invalid error", n, err)
				}
			}
			e.fail(logical.UpdateOperation, "decrypt/other-"+typ, map[string]any{"ciphertext": ct}, logical.Invalid, msgAuthFailed)
			e.fail(logical.UpdateOperation, "decrypt/"+typ, map[string]any{"ciphertext": ct, "associated_data": b64("ad")}, logical.Invalid, msgAuthFailed)
		})
	}
}

func TestDecryptBadInput(t *testing.T) {
	e := newEnv(t)
	e.write("keys/k", nil)
	for name, tc := range map[string]struct{ body, msg string }{
		"no prefix":           {`{"ciphertext":"v1:abcd"}`, "invalid ciphertext: no prefix"},
		"no version field":    {`{"ciphertext":"vault:v1"}`, "invalid ciphertext: wrong number of fields"},
		"version not numeric": {`{"ciphertext":"vault:vX:abcd"}`, "invalid ciphertext: version number could not be decoded"},
		"version too new":     {`{"ciphertext":"vault:v9:abcd"}`, "invalid ciphertext: version is too new"},
		"bad base64":          {`{"ciphertext":"vault:v1:***"}`, "invalid ciphertext: could not decode base64"},
		"too short":           {`{"ciphertext":"vault:v1:AAAA"}`, msgBadLength},
		"missing ciphertext":  {`{}`, "missing ciphertext to decrypt"},
		"malformed JSON":      {`{"ciphertext":`, ""},
		"wrong JSON type":     {`{"ciphertext":5}`, ""},
		"nonce not allowed":   {`{"ciphertext":"vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","nonce":"AAAA"}`, msgNonceNotAllowed},
	} {
		t.Run(name, func(t *testing.T) {
			e.fail(logical.UpdateOperation, "decrypt/k", tc.body, logical.Invalid, tc.msg)
		})
	}
	e.fail(logical.UpdateOperation, "decrypt/missing", `{"ciphertext":"vault:v1:AAAA"}`, logical.Invalid, "encryption key not found")
	e.fail(logical.UpdateOperation, "encrypt/k", `{"plaintext":"%%%"}`, logical.Invalid, "failed to base64-decode plaintext")
	e.fail(logical.UpdateOperation, "encrypt/k", `{}`, logical.Invalid, "missing plaintext to encrypt")
	e.fail(logical.UpdateOperation, "encrypt/k", `{"plaintext":"","key_version":2}`, logical.Invalid, "requested version for encryption is higher than the latest key version")
}

func TestKeyLifecycle(t *testing.T) {
	e := newEnv(t)
	if d, err := call(e.b, logical.ReadOperation, "keys/nope", nil); err != nil || d != nil {
		t.Fatalf("read of a missing key = %v, %v; want nil, nil (404)", d, err)
	}
	if d, err := call(e.b, logical.ListOperation, "keys", nil); err != nil || d != nil {
		t.Fatalf("list of no keys = %v, %v; want nil, nil (404)", d, err)
	}
	d := e.write("keys/a", map[string]any{"exportable": "true", "auto_rotate_period": "24h"})
	if d["exportable"] != true || d["auto_rotate_period"] != float64(86400) || d["type"] != "aes256-gcm96" {
		t.Errorf("create returned %v", d)
	}
	again, err := e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "keys/a", Body: []byte(`{"type":"ed25519"}`)})
	if err != nil || len(again.Warnings) != 1 || again.Data.(*keyData).Type != "aes256-gcm96" {
		t.Errorf("re-create: got %+v, %v; want the existing key with a warning", again, err)
	}
	e.write("keys/b", map[string]any{"type": "ed25519"})
	if got := e.do(logical.ListOperation, "keys/", nil)["keys"]; fmt.Sprint(got) != "[a b]" {
		t.Errorf("list = %v, want [a b]", got)
	}
	e.fail(logical.DeleteOperation, "keys/a", nil, logical.Invalid, "deletion is not allowed for this key")
	e.write("keys/a/config", map[string]any{"deletion_allowed": true})
	e.do(logical.DeleteOperation, "keys/a", nil)
	if d, _ := call(e.b, logical.ReadOperation, "keys/a", nil); d != nil {
		t.Errorf("key still readable after delete: %v", d)
	}
	if d, _ := call(e.reopen(), logical.ReadOperation, "keys/a", nil); d != nil {
		t.Errorf("key still in storage after delete: %v", d)
	}
	e.fail(logical.DeleteOperation, "keys/a", nil, logical.Invalid, "could not delete key; not found")
}

func TestCreateKeyBadInput(t *testing.T) {
	e := newEnv(t)
	for name, tc := range map[string]struct {
		path string
		body any
		msg  string
	}{
		"unknown type":              {"keys/k", map[string]any{"type": "des"}, `unknown key type "des"`},
		"convergent without derive": {"keys/k", map[string]any{"convergent_encryption": true}, "convergent encryption requires derivation to be enabled"},
		"derived ecdsa":             {"keys/k", map[string]any{"type": "ecdsa-p256", "derived": true}, "key derivation not supported for keys of type ecdsa-p256"},
		"convergent ed25519":        {"keys/k", map[string]any{"type": "ed25519", "derived": true, "convergent_encryption": true}, "convergent encryption not supported for keys of type ed25519"},
		"short auto rotate":         {"keys/k", map[string]any{"auto_rotate_period": "10m"}, "auto rotate period must be 0 to disable or at least an hour"},
		"bad boolean":               {"keys/k", map[string]any{"derived": "maybe"}, ""},
		"bad name":                  {"keys/a%20b", nil, "invalid key name"},
		"name with a dot at end":    {"keys/ab.", nil, "invalid key name"},
	} {
		t.Run(name, func(t *testing.T) {
			e.fail(logical.UpdateOperation, tc.path, tc.body, logical.Invalid, tc.msg)
		})
	}
	if d, _ := call(e.b, logical.ReadOperation, "keys/k", nil); d != nil {
		t.Errorf("a failed create left a key: %v", d)
	}
}

func TestRotationAndMinVersions(t *testing.T) {
	e := newEnv(t)
	e.write("keys/k", nil)
	v1 := e.encrypt("k", "one", nil)
	d := e.write("keys/k/rotate", nil)
	if d["latest_version"] != float64(2) {
		t.Fatalf("latest_version after rotate = %v", d["latest_version"])
	}
	v2 := e.encrypt("k", "two", nil)
	if !strings.HasPrefix(v2, "vault:v2:") {
		t.Errorf("encrypt after rotate gave %q, want version 2", v2)
	}
	if got := e.decrypt("k", v1, nil); got != "one" {
		t.Errorf("old ciphertext decrypts to %q", got)
	}
	if ct := e.encrypt("k", "old", map[string]any{"key_version": 1}); !strings.HasPrefix(ct, "vault:v1:") {
		t.Errorf("encrypt with key_version 1 gave %q", ct)
	}
	rw := e.write("rewrap/k", map[string]any{"ciphertext": v1})
	if rw["key_version"] != float64(2) || e.decrypt("k", rw["ciphertext"].(string), nil) != "one" {
		t.Errorf("rewrap gave %v", rw)
	}
	e.write("keys/k/rotate", nil)

	e.fail(logical.UpdateOperation, "keys/k/config", map[string]any{"min_decryption_version": 4}, logical.Invalid, "cannot set min decryption version of 4, latest key version is 3")
	e.fail(logical.UpdateOperation, "keys/k/config", map[string]any{"min_decryption_version": -1}, logical.Invalid, "min decryption version cannot be negative")
	e.fail(logical.UpdateOperation, "keys/k/config", map[string]any{"min_decryption_version": 3, "min_encryption_version": 2}, logical.Invalid, "")
	d = e.write("keys/k/config", map[string]any{"min_decryption_version": "2", "min_encryption_version": 3})
	if d["min_decryption_version"] != float64(2) || d["min_encryption_version"] != float64(3) {
		t.Fatalf("config gave %v", d)
	}
	e.fail(logical.UpdateOperation, "decrypt/k", map[string]any{"ciphertext": v1}, logical.Invalid, msgTooOld)
	if got := e.decrypt("k", v2, nil); got != "two" {
		t.Errorf("v2 ciphertext decrypts to %q", got)
	}
	e.fail(logical.UpdateOperation, "encrypt/k", map[string]any{"plaintext": b64("x"), "key_version": 2}, logical.Invalid, "requested version for encryption is less than the minimum encryption key version")

	// Trim drops versions below min_available_version for good.
	e.fail(logical.UpdateOperation, "keys/k/trim", map[string]any{"min_available_version": 3}, logical.Invalid, "minimum available version should not be greater than minimum decryption version")
	d = e.write("keys/k/trim", map[string]any{"min_available_version": 2})
	if keys := d["keys"].(map[string]any); len(keys) != 2 || keys["1"] != nil || d["min_available_version"] != float64(2) {
		t.Errorf("trim left %v", d)
	}
	e.fail(logical.UpdateOperation, "keys/k/config", map[string]any{"min_decryption_version": 1}, logical.Invalid, "")
	// The state survives a restart.
	e.b = e.reopen()
	e.fail(logical.UpdateOperation, "decrypt/k", map[string]any{"ciphertext": v1}, logical.Invalid, msgTooOld)
	if got := e.decrypt("k", v2, nil); got != "two" {
		t.Errorf("after restart, v2 ciphertext decrypts to %q", got)
	}
	e.fail(logical.UpdateOperation, "keys/missing/rotate", nil, logical.Invalid, "key not found")
}

func TestBatchWithOneBadItem(t *testing.T) {
	e := newEnv(t)
	d := e.write("encrypt/k", map[string]any{"batch_input": []map[string]any{
		{"plaintext": b64("a"), "reference": "r1"},
		{"plaintext": "not base64!", "reference": "r2"},
		{"plaintext": b64("c")},
	}})
	res := d["batch_results"].([]any)
	if len(res) != 3 {
		t.Fatalf("got %d results", len(res))
	}
	bad := res[1].(map[string]any)
	if bad["error"] != "failed to base64-decode plaintext" || bad["reference"] != "r2" || bad["ciphertext"] != nil {
		t.Errorf("bad item: %v", bad)
	}
	var in []map[string]any
	for _, i := range []int{0, 2} {
		r := res[i].(map[string]any)
		if r["error"] != nil || r["key_version"] != float64(1) {
			t.Errorf("item %d: %v", i, r)
		}
		in = append(in, map[string]any{"ciphertext": r["ciphertext"], "reference": r["reference"]})
	}
	in = append(in, map[string]any{"ciphertext": "vault:v1:AAAA"})
	dec := e.write("decrypt/k", map[string]any{"batch_input": in})["batch_results"].([]any)
	if dec[0].(map[string]any)["plaintext"] != b64("a") || dec[0].(map[string]any)["reference"] != "r1" || dec[1].(map[string]any)["plaintext"] != b64("c") {
		t.Errorf("batch decrypt: %v", dec)
	}
	if dec[2].(map[string]any)["error"] != msgBadLength {
		t.Errorf("bad decrypt item: %v", dec[2])
	}
	e.fail(logical.UpdateOperation, "encrypt/k", map[string]any{"batch_input": []any{}}, logical.Invalid, "missing batch input to process")
}

func TestDerivedAndConvergent(t *testing.T) {
	e := newEnv(t)
	e.write("keys/derived", map[string]any{"derived": true})
	e.write("keys/conv", map[string]any{"derived": true, "convergent_encryption": true})
	c1, c2 := b64("tenant-1"), b64("tenant-2")

	d := e.do(logical.ReadOperation, "keys/conv", nil)
	if d["kdf"] != "hkdf_sha256" || d["convergent_encryption"] != true || d["convergent_encryption_version"] != float64(3) {
		t.Errorf("convergent key read: %v", d)
	}
	e.fail(logical.UpdateOperation, "encrypt/derived", map[string]any{"plaintext": b64("x")}, logical.Invalid, msgMissingContext)

	for _, key := range []string{"derived", "conv"} {
		a := e.encrypt(key, "secret", map[string]any{"context": c1})
		b := e.encrypt(key, "secret", map[string]any{"context": c1})
		other := e.encrypt(key, "secret", map[string]any{"context": c2})
		if got := (a == b); got != (key == "conv") {
			t.Errorf("%s: same plaintext and context give equal ciphertexts = %v", key, got)
		}
		if a == other {
			t.Errorf("%s: different contexts give the same ciphertext", key)
		}
		if got := e.decrypt(key, a, map[string]any{"context": c1}); got != "secret" {
			t.Errorf("%s: decrypt = %q", key, got)
		}
		e.fail(logical.UpdateOperation, "decrypt/"+key, map[string]any{"ciphertext": a, "context": c2}, logical.Invalid, msgAuthFailed)
	}
	if a, b := e.encrypt("conv", "p1", map[string]any{"context": c1}), e.encrypt("conv", "p2", map[string]any{"context": c1}); a == b {
		t.Error("convergent: different plaintexts give the same ciphertext")
	}
	e.fail(logical.UpdateOperation, "encrypt/conv", map[string]any{"plaintext": b64("x"), "context": c1, "nonce": b64("123456789012")}, logical.Invalid, msgNonceNotAllowed)

	// A first encrypt with a context creates a derived key, as in Vault.
	e.encrypt("auto-derived", "x", map[string]any{"context": c1})
	e.fail(logical.UpdateOperation, "encrypt/auto-ed", map[string]any{"plaintext": b64("x"), "type": "ed25519"}, logical.Invalid, "key type ed25519 does not support encryption")
	if d, _ := call(e.b, logical.ReadOperation, "keys/auto-ed", nil); d != nil {
		t.Errorf("a refused encrypt created a key: %v", d)
	}
	if d := e.do(logical.ReadOperation, "keys/auto-derived", nil); d["derived"] != true {
		t.Errorf("auto-created key with a context is not derived: %v", d)
	}
}

// TestConvergentVector freezes the convergent envelope: a fixed key
// version and context must always give this ciphertext.
func TestConvergentVector(t *testing.T) {
	v := &version{material: make([]byte, 32), hmacKey: make([]byte, 32)}
	for i := range v.material {
		v.material[i] = byte(i)
	}
	p := &policy{name: "v", typ: typeAES256GCM96, derived: true, convergent: true, latestVersion: 1, minDecryptionVersion: 1, versions: map[int]*version{1: v}}
	ct, _, err := p.encrypt(nil, 0, []byte("context"), nil, []byte("hello world"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Independently: key = HKDF-SHA256(material, info=context)[0:32],
	// nonce = HMAC-SHA256(HKDF[32:64], plaintext)[0:12].
	const want = "vault:v1:"
	if !strings.HasPrefix(ct, want) {
		t.Fatalf("got %q", ct)
	}
	raw, _ := base64.StdEncoding.DecodeString(ct[len(want):])
	k, _ := deriveBytes(v.material, []byte("context"), 64)
	mac := hmacSHA256(k[32:], []byte("hello world"))
	if hex.EncodeToString(raw[:12]) != hex.EncodeToString(mac[:12]) {
		t.Errorf("nonce %x, want HMAC prefix %x", raw[:12], mac[:12])
	}
	if got, want := ct, frozenConvergent; got != want {
		t.Errorf("convergent ciphertext changed:\n got  %s\n want %s", got, want)
	}
}

// frozenConvergent was computed independently of this package, with
// Python's cryptography library: HKDF(SHA256, length=64, salt=None,
// info=b"context") over bytes(range(32)), nonce = HMAC-SHA256(k[32:],
// b"hello world")[:12], AESGCM(k[:32]).
const frozenConvergent = "vault:v1:mUSgvs8NHOxjFsEpcbBYFN6u3WlafyzWla3LQJqk1yUQg8wN7iJ9"

func TestSignVerify(t *testing.T) {
	e := newEnv(t)
	input := b64("the message")
	cases := []struct {
		typ  string
		opts map[string]any
	}{
		{"ed25519", nil},
		{"ecdsa-p256", nil},
		{"ecdsa-p256", map[string]any{"marshaling_algorithm": "jws"}},
		{"ecdsa-p256", map[string]any{"hash_algorithm": "sha2-512"}},
		{"rsa-2048", nil},
		{"rsa-2048", map[string]any{"signature_algorithm": "pkcs1v15", "hash_algorithm": "sha3-256"}},
		{"rsa-2048", map[string]any{"signature_algorithm": "pss", "salt_length": "hash"}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.typ, tc.opts), func(t *testing.T) {
			e.write("keys/"+tc.typ, map[string]any{"type": tc.typ})
			body := map[string]any{"input": input}
			for k, v := range tc.opts {
				body[k] = v
			}
			sig := e.write("sign/"+tc.typ, body)["signature"].(string)
			if !strings.HasPrefix(sig, "vault:v1:") {
				t.Fatalf("signature %q", sig)
			}
			body["signature"] = sig
			if got := e.write("verify/"+tc.typ, body)["valid"]; got != true {
				t.Errorf("verify of a good signature = %v", got)
			}
			body["input"] = b64("the messagE")
			if got := e.write("verify/"+tc.typ, body)["valid"]; got != false {
				t.Errorf("verify of another message = %v", got)
			}
			body["input"] = input
			raw := sig[len("vault:v1:"):]
			enc := base64.StdEncoding
			if tc.opts["marshaling_algorithm"] == "jws" {
				enc = base64.RawURLEncoding
			}
			sb, err := enc.DecodeString(raw)
			if err != nil {
				t.Fatal(err)
			}
			sb[len(sb)/2] ^= 0x10
			body["signature"] = "vault:v1:" + enc.EncodeToString(sb)
			if got := e.write("verify/"+tc.typ, body)["valid"]; got != false {
				t.Errorf("verify of a tampered signature = %v", got)
			}
		})
	}
	// The signature verifies with the public key a read shows, outside Coffer.
	pub := e.do(logical.ReadOperation, "keys/ecdsa-p256", nil)["keys"].(map[string]any)["1"].(map[string]any)
	if pub["name"] != "P-256" {
		t.Errorf("ecdsa key name %v", pub["name"])
	}
	blk, _ := pem.Decode([]byte(pub["public_key"].(string)))
	pk, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sig := e.write("sign/ecdsa-p256/sha2-256", map[string]any{"input": input})["signature"].(string)
	sb, _ := base64.StdEncoding.DecodeString(sig[len("vault:v1:"):])
	sum := sha256.Sum256([]byte("the message"))
	if !ecdsa.VerifyASN1(pk.(*ecdsa.PublicKey), sum[:], sb) {
		t.Error("signature does not verify with the published public key")
	}
	edPub := e.do(logical.ReadOperation, "keys/ed25519", nil)["keys"].(map[string]any)["1"].(map[string]any)["public_key"].(string)
	edKey, _ := base64.StdEncoding.DecodeString(edPub)
	sig = e.write("sign/ed25519", map[string]any{"input": input})["signature"].(string)
	sb, _ = base64.StdEncoding.DecodeString(sig[len("vault:v1:"):])
	if !ed25519.Verify(edKey, []byte("the message"), sb) {
		t.Error("ed25519 signature does not verify with the published public key")
	}

	e.fail(logical.UpdateOperation, "sign/aes", map[string]any{"input": input}, logical.Invalid, "signing key not found")
	e.write("keys/aes", nil)
	e.fail(logical.UpdateOperation, "sign/aes", map[string]any{"input": input}, logical.Invalid, "key type aes256-gcm96 does not support signing")
	e.fail(logical.UpdateOperation, "encrypt/ed25519", map[string]any{"plaintext": input}, logical.Invalid, "message encryption not supported for key type ed25519")
	e.fail(logical.UpdateOperation, "sign/ecdsa-p256/md5", map[string]any{"input": input}, logical.Invalid, "unsupported hash algorithm md5")
	e.fail(logical.UpdateOperation, "verify/ed25519", map[string]any{"input": input, "signature": "sig"}, logical.Invalid, "invalid signature: no prefix")

	// Rotation and min_decryption_version apply to signatures too.
	old := e.write("sign/ed25519", map[string]any{"input": input})["signature"].(string)
	e.write("keys/ed25519/rotate", nil)
	if s := e.write("sign/ed25519", map[string]any{"input": input})["signature"].(string); !strings.HasPrefix(s, "vault:v2:") {
		t.Errorf("signature after rotate %q", s)
	}
	if got := e.write("verify/ed25519", map[string]any{"input": input, "signature": old})["valid"]; got != true {
		t.Errorf("old signature after rotate: valid = %v", got)
	}
	e.write("keys/ed25519/config", map[string]any{"min_decryption_version": 2})
	e.fail(logical.UpdateOperation, "verify/ed25519", map[string]any{"input": input, "signature": old}, logical.Invalid, msgTooOld)
}

func TestDerivedEd25519(t *testing.T) {
	e := newEnv(t)
	e.write("keys/d", map[string]any{"type": "ed25519", "derived": true})
	input := b64("m")
	e.fail(logical.UpdateOperation, "sign/d", map[string]any{"input": input}, logical.Invalid, msgMissingContext)
	sig := e.write("sign/d", map[string]any{"input": input, "context": b64("c1")})["signature"]
	if got := e.write("verify/d", map[string]any{"input": input, "context": b64("c1"), "signature": sig})["valid"]; got != true {
		t.Errorf("valid = %v with the same context", got)
	}
	if got := e.write("verify/d", map[string]any{"input": input, "context": b64("c2"), "signature": sig})["valid"]; got != false {
		t.Errorf("valid = %v with another context", got)
	}
}

func TestRSA4096(t *testing.T) {
	if testing.Short() {
		t.Skip("rsa-4096 key generation is slow")
	}
	e := newEnv(t)
	e.write("keys/big", map[string]any{"type": "rsa-4096"})
	if got := e.decrypt("big", e.encrypt("big", "x", nil), nil); got != "x" {
		t.Errorf("round trip = %q", got)
	}
	sig := e.write("sign/big", map[string]any{"input": b64("m")})["signature"]
	if e.write("verify/big", map[string]any{"input": b64("m"), "signature": sig})["valid"] != true {
		t.Error("rsa-4096 signature does not verify")
	}
}

func TestHMAC(t *testing.T) {
	e := newEnv(t)
	e.write("keys/k", nil)
	input := b64("data")
	mac := e.write("hmac/k", map[string]any{"input": input})["hmac"].(string)
	if mac2 := e.write("hmac/k/sha2-256", map[string]any{"input": input})["hmac"]; mac2 != mac {
		t.Errorf("hmac is not deterministic: %v vs %v", mac, mac2)
	}
	if m512 := e.write("hmac/k", map[string]any{"input": input, "algorithm": "sha2-512"})["hmac"].(string); len(m512) <= len(mac) {
		t.Errorf("sha2-512 hmac %q is not longer than sha2-256's", m512)
	}
	if got := e.write("verify/k", map[string]any{"input": input, "hmac": mac})["valid"]; got != true {
		t.Errorf("verify hmac = %v", got)
	}
	if got := e.write("verify/k", map[string]any{"input": b64("datA"), "hmac": mac})["valid"]; got != false {
		t.Errorf("verify hmac of other data = %v", got)
	}
	e.write("keys/k/rotate", nil)
	if m := e.write("hmac/k", map[string]any{"input": input})["hmac"].(string); !strings.HasPrefix(m, "vault:v2:") || m[9:] == mac[9:] {
		t.Errorf("hmac after rotate %q", m)
	}
	if got := e.write("verify/k", map[string]any{"input": input, "hmac": mac})["valid"]; got != true {
		t.Errorf("verify v1 hmac after rotate = %v", got)
	}
	batch := e.write("hmac/k", map[string]any{"batch_input": []map[string]any{{"input": input}, {"input": "!"}}})["batch_results"].([]any)
	if batch[0].(map[string]any)["hmac"] == nil || batch[1].(map[string]any)["error"] == nil {
		t.Errorf("batch hmac: %v", batch)
	}
	e.fail(logical.UpdateOperation, "hmac/none", map[string]any{"input": input}, logical.Invalid, "encryption key not found")
}

func TestDatakey(t *testing.T) {
	e := newEnv(t)
	e.write("keys/k", nil)
	for _, bits := range []int{128, 256, 512} {
		d := e.write("datakey/plaintext/k", map[string]any{"bits": bits})
		pt, _ := base64.StdEncoding.DecodeString(d["plaintext"].(string))
		if len(pt)*8 != bits {
			t.Errorf("bits %d: got a %d-byte key", bits, len(pt))
		}
		if got := e.write("decrypt/k", map[string]any{"ciphertext": d["ciphertext"]})["plaintext"]; got != d["plaintext"] {
			t.Errorf("bits %d: the wrapped key decrypts to another key", bits)
		}
	}
	if d := e.write("datakey/wrapped/k", nil); d["plaintext"] != nil || d["ciphertext"] == nil || d["key_version"] != float64(1) {
		t.Errorf("wrapped datakey: %v", d)
	}
	e.fail(logical.UpdateOperation, "datakey/plaintext/k", map[string]any{"bits": 64}, logical.Invalid, "invalid bits; must be 128, 256, or 512")
	e.fail(logical.UpdateOperation, "datakey/other/k", nil, logical.Invalid, "Invalid path, must be 'plaintext' or 'wrapped'")
	e.fail(logical.UpdateOperation, "datakey/wrapped/none", nil, logical.Invalid, "encryption key not found")
}

func TestExport(t *testing.T) {
	e := newEnv(t)
	e.write("keys/private", nil)
	e.fail(logical.ReadOperation, "export/encryption-key/private", nil, logical.Invalid, "private key material is not exportable")
	if d, err := call(e.b, logical.ReadOperation, "export/encryption-key/none", nil); d != nil || err != nil {
		t.Errorf("export of a missing key = %v, %v; want 404", d, err)
	}
	e.write("keys/aes", map[string]any{"exportable": true})
	e.write("keys/aes/rotate", nil)
	d := e.do(logical.ReadOperation, "export/encryption-key/aes", nil)
	keys := d["keys"].(map[string]any)
	if len(keys) != 2 || d["name"] != "aes" || d["type"] != "aes256-gcm96" {
		t.Fatalf("export: %v", d)
	}
	if d := e.do(logical.ReadOperation, "export/hmac-key/aes/latest", nil); len(d["keys"].(map[string]any)) != 1 || d["keys"].(map[string]any)["2"] == nil {
		t.Errorf("export latest hmac key: %v", d)
	}
	e.fail(logical.ReadOperation, "export/encryption-key/aes/7", nil, logical.Invalid, "version does not exist or cannot be found")
	e.fail(logical.ReadOperation, "export/signing-key/aes", nil, logical.Invalid, "signing not supported for the key")
	e.fail(logical.ReadOperation, "export/bogus/aes", nil, logical.Invalid, "invalid export type: bogus")

	// The exported AES key really is the key: decrypt a ciphertext with it.
	ct := e.encrypt("aes", "hi", nil)
	k1, _ := base64.StdEncoding.DecodeString(keys["2"].(string))
	aead, _ := newAEAD(typeAES256GCM96, k1)
	raw, _ := base64.StdEncoding.DecodeString(ct[len("vault:v2:"):])
	if pt, err := aead.Open(nil, raw[:12], raw[12:], nil); err != nil || string(pt) != "hi" {
		t.Errorf("exported key does not open a ciphertext: %v", err)
	}

	for _, typ := range []string{"ed25519", "ecdsa-p256", "rsa-2048"} {
		e.write("keys/x"+typ, map[string]any{"type": typ, "exportable": true})
		sk := e.do(logical.ReadOperation, "export/signing-key/x"+typ+"/1", nil)["keys"].(map[string]any)["1"].(string)
		pk := e.do(logical.ReadOperation, "export/public-key/x"+typ, nil)["keys"].(map[string]any)["1"].(string)
		switch typ {
		case "ed25519":
			b, _ := base64.StdEncoding.DecodeString(sk)
			p, _ := base64.StdEncoding.DecodeString(pk)
			if !ed25519.PrivateKey(b).Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(p)) {
				t.Error("ed25519 exported private and public keys do not match")
			}
		case "ecdsa-p256":
			blk, _ := pem.Decode([]byte(sk))
			if _, err := x509.ParseECPrivateKey(blk.Bytes); err != nil {
				t.Errorf("ecdsa export: %v", err)
			}
		case "rsa-2048":
			blk, _ := pem.Decode([]byte(sk))
			k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
			if err != nil || k.N.BitLen() != 2048 {
				t.Errorf("rsa export: %v", err)
			}
		}
	}
	// public-key needs no exportable flag.
	e.write("keys/pubonly", map[string]any{"type": "ed25519"})
	e.do(logical.ReadOperation, "export/public-key/pubonly", nil)
}

func TestRandomAndHash(t *testing.T) {
	e := newEnv(t)
	r := e.write("random", nil)["random_bytes"].(string)
	if b, _ := base64.StdEncoding.DecodeString(r); len(b) != 32 {
		t.Errorf("random default is %d bytes", len(b))
	}
	if h := e.write("random/platform/16", map[string]any{"format": "hex"})["random_bytes"].(string); len(h) != 32 {
		t.Errorf("random/platform/16 hex = %q", h)
	}
	if h := e.write("random", map[string]any{"bytes": 5, "format": "hex"})["random_bytes"].(string); len(h) != 10 {
		t.Errorf("random bytes=5 hex = %q", h)
	}
	e.fail(logical.UpdateOperation, "random/0", nil, logical.Invalid, `"bytes" cannot be less than 1`)
	e.fail(logical.UpdateOperation, "random/999999", nil, logical.Invalid, "")
	e.fail(logical.UpdateOperation, "random", map[string]any{"format": "b32"}, logical.Invalid, "")
	e.fail(logical.UpdateOperation, "random/dice", nil, logical.Invalid, "")

	for name, tc := range map[string]struct {
		path string
		body map[string]any
		want string
	}{
		"sha2-256 hex by default": {"hash", map[string]any{"input": b64("abc")}, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		"algorithm in the path":   {"hash/sha2-224", map[string]any{"input": b64("abc")}, "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"},
		"sha3-256":                {"hash", map[string]any{"input": b64("abc"), "algorithm": "sha3-256"}, "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532"},
		"base64 format":           {"hash/sha2-256", map[string]any{"input": b64("abc"), "format": "base64"}, "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="},
	} {
		t.Run(name, func(t *testing.T) {
			if got := e.write(tc.path, tc.body)["sum"]; got != tc.want {
				t.Errorf("sum = %v, want %v", got, tc.want)
			}
		})
	}
	e.fail(logical.UpdateOperation, "hash/md5", map[string]any{"input": b64("abc")}, logical.Invalid, "unsupported hash algorithm md5")
	e.fail(logical.UpdateOperation, "hash", nil, logical.Invalid, "missing input to hash")
}

func TestRouting(t *testing.T) {
	e := newEnv(t)
	e.write("keys/k", nil)
	for name, tc := range map[string]struct {
		op   logical.Operation
		path string
		code logical.Code
	}{
		"unknown path":           {logical.ReadOperation, "nope/k", logical.NotFound},
		"unknown key subpath":    {logical.UpdateOperation, "keys/k/explode", logical.NotFound},
		"read of encrypt":        {logical.ReadOperation, "encrypt/k", logical.Unsupported},
		"delete of rotate":       {logical.DeleteOperation, "keys/k/rotate", logical.Unsupported},
		"write of export":        {logical.UpdateOperation, "export/encryption-key/k", logical.Unsupported},
		"read of keys list path": {logical.ReadOperation, "keys", logical.Unsupported},
		"too deep":               {logical.UpdateOperation, "encrypt/k/extra", logical.NotFound},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := call(e.b, tc.op, tc.path, nil)
			if logical.CodeOf(err) != tc.code || err == nil {
				t.Errorf("got %v (code %d), want code %d", err, logical.CodeOf(err), tc.code)
			}
		})
	}
}

func TestExists(t *testing.T) {
	e := newEnv(t)
	e.write("keys/k", nil)
	for path, want := range map[string][2]bool{
		"keys/k":        {true, true},
		"keys/none":     {true, false},
		"encrypt/k":     {true, true},
		"encrypt/none":  {true, false},
		"decrypt/k":     {false, false},
		"keys/k/rotate": {false, false},
	} {
		ok, exists, err := e.b.Exists(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: path})
		if err != nil || [2]bool{ok, exists} != want {
			t.Errorf("Exists(%s) = %v, %v, %v; want %v", path, ok, exists, err, want)
		}
	}
}

func TestAutoRotation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.write("keys/auto", map[string]any{"auto_rotate_period": "1h"})
	e.write("keys/manual", nil)
	e.write("keys/daily", nil)
	e.write("keys/daily/config", map[string]any{"auto_rotate_period": "24h"})
	latest := func(name string) float64 {
		return e.do(logical.ReadOperation, "keys/"+name, nil)["latest_version"].(float64)
	}
	if err := e.b.Periodic(ctx); err != nil {
		t.Fatal(err)
	}
	if latest("auto") != 1 {
		t.Fatal("rotated before its period")
	}
	e.clock.Add(59 * time.Minute)
	e.b.Periodic(ctx)
	if latest("auto") != 1 {
		t.Fatal("rotated before its period")
	}
	e.clock.Add(time.Minute)
	if err := e.b.Periodic(ctx); err != nil {
		t.Fatal(err)
	}
	if latest("auto") != 2 || latest("manual") != 1 || latest("daily") != 1 {
		t.Fatalf("after 1h: auto=%v manual=%v daily=%v", latest("auto"), latest("manual"), latest("daily"))
	}
	e.b.Periodic(ctx)
	if latest("auto") != 2 {
		t.Fatal("rotated twice in one period")
	}
	e.clock.Add(23 * time.Hour)
	e.reopen().Periodic(ctx) // a restarted node rotates from storage
	e.b = e.reopen()
	if latest("auto") != 3 || latest("daily") != 2 || latest("manual") != 1 {
		t.Fatalf("after 24h: auto=%v manual=%v daily=%v", latest("auto"), latest("manual"), latest("daily"))
	}
	e.write("keys/auto/config", map[string]any{"auto_rotate_period": 0})
	e.clock.Add(48 * time.Hour)
	e.b.Periodic(ctx)
	if latest("auto") != 3 {
		t.Fatal("rotated with auto-rotation disabled")
	}
}

// TestConcurrentEncryptDuringRotate runs encrypts and decrypts while the
// key rotates; every ciphertext must decrypt. Run with -race.
func TestConcurrentEncryptDuringRotate(t *testing.T) {
	e := newEnv(t)
	e.write("keys/k", nil)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				pt := b64(fmt.Sprint("msg", g, i))
				d, err := call(e.b, logical.UpdateOperation, "encrypt/k", map[string]any{"plaintext": pt})
				if err != nil {
					errs <- err
					return
				}
				got, err := call(e.b, logical.UpdateOperation, "decrypt/k", map[string]any{"ciphertext": d["ciphertext"]})
				if err != nil || got["plaintext"] != pt {
					errs <- fmt.Errorf("decrypt: %v %v", got, err)
					return
				}
			}
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 20; i++ {
			if _, err := call(e.b, logical.UpdateOperation, "keys/k/rotate", nil); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 20; i++ {
			// Concurrent first use of a new key creates it once.
			if _, err := call(e.b, logical.UpdateOperation, "encrypt/fresh", map[string]any{"plaintext": ""}); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := e.do(logical.ReadOperation, "keys/k", nil)["latest_version"]; got != float64(21) {
		t.Errorf("latest_version = %v, want 21", got)
	}
}

// TestNoSecretsInErrors checks that failing requests never echo plaintext
// or key material.
func TestNoSecretsInErrors(t *testing.T) {
	e := newEnv(t)
	e.write("keys/k", map[string]any{"derived": true})
	secret := "c2VjcmV0LXZhbHVl" // base64 of "secret-value"
	for _, body := range []string{
		`{"plaintext":"` + secret + `"}`,
		`{"plaintext":"` + secret + `!"}`,
		`{"plaintext":` + secret + `}`,
		`{"batch_input":[{"plaintext":"` + secret + `"}]}`,
	} {
		_, err := call(e.b, logical.UpdateOperation, "encrypt/k", body)
		d, _ := call(e.b, logical.UpdateOperation, "encrypt/k", body)
		for _, s := range []string{fmt.Sprint(err), fmt.Sprint(d)} {
			if strings.Contains(s, secret) || strings.Contains(s, "secret-value") {
				t.Errorf("response to %s leaks the plaintext: %s", body, s)
			}
		}
	}
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}
