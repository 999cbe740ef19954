package transit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"

	"github.com/coffer-dev/coffer/internal/logical"
)

func FuzzParseEnvelope(f *testing.F) {
	for _, s := range []string{"vault:v1:abc", "vault:v0:", "vault:v12:a:b", "vault:v", "vault:v-1:x", "vault:v+1:x", "v1:x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ver, body, err := parseEnvelope(s, "ciphertext")
		if err != nil {
			if logical.CodeOf(err) != logical.Invalid {
				t.Fatalf("parse error %v is not Invalid", err)
			}
			return
		}
		ver2, body2, err := parseEnvelope(envelope(ver, body), "ciphertext")
		if err != nil || ver2 != ver || body2 != body {
			t.Fatalf("round trip of %q: (%d, %q, %v), want (%d, %q)", s, ver2, body2, err, ver, body)
		}
	})
}

// FuzzDecrypt feeds arbitrary ciphertexts to a convergent key. Whatever it
// gets, decrypt must fail with an Invalid error, or succeed only on a
// ciphertext the key made, which re-encrypting the plaintext reproduces.
func FuzzDecrypt(f *testing.F) {
	v, err := newVersion(typeAES256GCM96, true, rand.Reader, fixedTime)
	if err != nil {
		f.Fatal(err)
	}
	p := &policy{name: "f", typ: typeAES256GCM96, derived: true, convergent: true, latestVersion: 1, minDecryptionVersion: 1, versions: map[int]*version{1: v}}
	kctx := []byte("ctx")
	good, _, err := p.encrypt(nil, 0, kctx, nil, []byte("hello world"), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-2])
	f.Add("vault:v1:AAAA")
	f.Add("vault:v2:" + good[9:])
	f.Fuzz(func(t *testing.T, ct string) {
		pt, ver, err := p.decrypt(ct, kctx, nil, nil)
		if err != nil {
			if logical.CodeOf(err) != logical.Invalid {
				t.Fatalf("decrypt error %v is not Invalid", err)
			}
			return
		}
		again, ver2, err := p.encrypt(nil, ver, kctx, nil, pt, nil)
		if err != nil || ver2 != ver {
			t.Fatal(err)
		}
		_, b1, _ := parseEnvelope(ct, "ciphertext")
		_, b2, _ := parseEnvelope(again, "ciphertext")
		r1, _ := base64.StdEncoding.DecodeString(b1)
		r2, _ := base64.StdEncoding.DecodeString(b2)
		if !bytes.Equal(r1, r2) {
			t.Fatalf("accepted ciphertext %q that the key did not make", ct)
		}
	})
}

// FuzzRequestBody sends arbitrary bodies to every write endpoint: no panic,
// and every failure is an API error, never an internal one.
func FuzzRequestBody(f *testing.F) {
	e := newEnv(f)
	e.write("keys/aes", map[string]any{"exportable": true})
	e.write("keys/ed", map[string]any{"type": "ed25519"})
	for _, s := range []string{`{}`, `{"plaintext":"aGk="}`, `{"batch_input":[{"plaintext":"aGk="},{}]}`, `{"ciphertext":"vault:v1:AAAA"}`, `{"input":"aGk=","signature":"vault:v1:AAAA"}`, `{"bits":"x"}`, `[]`, `null`} {
		f.Add(s)
	}
	paths := []string{"encrypt/aes", "decrypt/aes", "rewrap/aes", "datakey/plaintext/aes", "sign/ed", "verify/ed", "hmac/aes", "verify/aes", "random", "hash", "keys/aes/config", "keys/aes/trim"}
	f.Fuzz(func(t *testing.T, body string) {
		for _, path := range paths {
			resp, err := e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: path, Body: []byte(body)})
			var le *logical.Error
			if err != nil && !errors.As(err, &le) {
				t.Fatalf("%s with %q: internal error %v", path, body, err)
			}
			if resp != nil {
				if _, err := json.Marshal(resp.Data); err != nil {
					t.Fatalf("%s: response does not marshal: %v", path, err)
				}
			}
		}
	})
}
