package compat

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"
)

// mountTransit enables the transit engine at "transit" on c.
func mountTransit(t *testing.T, c *vault.Client) {
	t.Helper()
	if err := c.Sys().Mount("transit", &vault.MountInput{Type: "transit"}); err != nil {
		t.Fatalf("mount transit: %v", err)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// write is a logical write that must succeed.
func write(t *testing.T, c *vault.Client, path string, data map[string]any) *vault.Secret {
	t.Helper()
	s, err := c.Logical().Write(path, data)
	if err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	if s == nil {
		t.Fatalf("write %s: empty response", path)
	}
	return s
}

// wantStatus checks that err is a Vault ResponseError with status code.
func wantStatus(t *testing.T, what string, err error, code int) {
	t.Helper()
	var re *vault.ResponseError
	if !errors.As(err, &re) || re.StatusCode != code {
		t.Errorf("%s: err = %v, want HTTP %d", what, err, code)
	}
}

func decryptTo(t *testing.T, c *vault.Client, key, ct string) string {
	t.Helper()
	s := write(t, c, "transit/decrypt/"+key, map[string]any{"ciphertext": ct})
	raw, err := base64.StdEncoding.DecodeString(s.Data["plaintext"].(string))
	if err != nil {
		t.Fatalf("decrypt %s: plaintext is not base64: %v", key, err)
	}
	return string(raw)
}

// TestTransitEndToEnd drives the transit engine of a real server with the
// Vault Go client: the calls sops, KMS plugins and applications make.
func TestTransitEndToEnd(t *testing.T) {
	_, c := startDev(t)
	mountTransit(t, c)
	write(t, c, "transit/keys/app", map[string]any{})

	ct1 := write(t, c, "transit/encrypt/app", map[string]any{"plaintext": b64("hello transit")}).Data["ciphertext"].(string)
	if !strings.HasPrefix(ct1, "vault:v1:") {
		t.Fatalf("ciphertext = %q, want prefix vault:v1:", ct1)
	}
	if strings.Contains(ct1, "hello") {
		t.Fatal("ciphertext contains the plaintext")
	}
	if got := decryptTo(t, c, "app", ct1); got != "hello transit" {
		t.Errorf("decrypt = %q, want %q", got, "hello transit")
	}

	t.Run("rotation keeps old ciphertext readable and rewrap moves it", func(t *testing.T) {
		write(t, c, "transit/keys/app/rotate", nil)
		ct2 := write(t, c, "transit/encrypt/app", map[string]any{"plaintext": b64("after rotate")}).Data["ciphertext"].(string)
		if !strings.HasPrefix(ct2, "vault:v2:") {
			t.Errorf("ciphertext after rotate = %q, want prefix vault:v2:", ct2)
		}
		if got := decryptTo(t, c, "app", ct1); got != "hello transit" {
			t.Errorf("v1 ciphertext after rotate = %q", got)
		}
		re := write(t, c, "transit/rewrap/app", map[string]any{"ciphertext": ct1}).Data["ciphertext"].(string)
		if !strings.HasPrefix(re, "vault:v2:") {
			t.Errorf("rewrapped = %q, want prefix vault:v2:", re)
		}
		if got := decryptTo(t, c, "app", re); got != "hello transit" {
			t.Errorf("rewrapped decrypts to %q", got)
		}
		key, err := c.Logical().Read("transit/keys/app")
		if err != nil || key == nil {
			t.Fatalf("read key: %v", err)
		}
		if got := fmt.Sprint(key.Data["latest_version"]); got != "2" {
			t.Errorf("latest_version = %v, want 2", got)
		}
		if _, ok := key.Data["keys"]; !ok {
			t.Error("key read has no keys (version map)")
		}
	})

	t.Run("min_decryption_version refuses older ciphertext with 400", func(t *testing.T) {
		write(t, c, "transit/keys/app/config", map[string]any{"min_decryption_version": 2})
		_, err := c.Logical().Write("transit/decrypt/app", map[string]any{"ciphertext": ct1})
		wantStatus(t, "decrypt v1 below min_decryption_version", err, http.StatusBadRequest)
		write(t, c, "transit/keys/app/config", map[string]any{"min_decryption_version": 1})
		if got := decryptTo(t, c, "app", ct1); got != "hello transit" {
			t.Errorf("after lowering min version: %q", got)
		}
	})

	t.Run("tampered ciphertext is refused", func(t *testing.T) {
		body := strings.TrimPrefix(ct1, "vault:v1:")
		raw, _ := base64.StdEncoding.DecodeString(body)
		raw[len(raw)-1] ^= 1
		for name, ct := range map[string]string{
			"flipped tag bit": "vault:v1:" + base64.StdEncoding.EncodeToString(raw),
			"unknown version": "vault:v9:" + body,
			"missing prefix":  body,
			"not base64":      "vault:v1:***",
			"truncated":       "vault:v1:" + base64.StdEncoding.EncodeToString(raw[:8]),
			"tag cut short":   "vault:v1:" + base64.StdEncoding.EncodeToString(raw[:len(raw)-4]),
		} {
			_, err := c.Logical().Write("transit/decrypt/app", map[string]any{"ciphertext": ct})
			wantStatus(t, name, err, http.StatusBadRequest)
		}
	})

	t.Run("batch results keep order and report errors per item", func(t *testing.T) {
		s := write(t, c, "transit/encrypt/app", map[string]any{"batch_input": []map[string]any{
			{"plaintext": b64("one")}, {"plaintext": b64("two")}, {"plaintext": "%%not base64%%"},
		}})
		res := s.Data["batch_results"].([]any)
		if len(res) != 3 {
			t.Fatalf("batch_results has %d items, want 3", len(res))
		}
		var in []map[string]any
		for i := range 2 {
			item := res[i].(map[string]any)
			ct, _ := item["ciphertext"].(string)
			if !strings.HasPrefix(ct, "vault:v2:") {
				t.Errorf("item %d ciphertext = %q", i, ct)
			}
			in = append(in, map[string]any{"ciphertext": ct})
		}
		if e, _ := res[2].(map[string]any)["error"].(string); e == "" {
			t.Errorf("item 2 (bad base64) has no error: %v", res[2])
		}
		d := write(t, c, "transit/decrypt/app", map[string]any{"batch_input": in})
		out := d.Data["batch_results"].([]any)
		for i, want := range []string{"one", "two"} {
			pt, _ := base64.StdEncoding.DecodeString(out[i].(map[string]any)["plaintext"].(string))
			if string(pt) != want {
				t.Errorf("batch decrypt %d = %q, want %q", i, pt, want)
			}
		}
	})

	t.Run("data keys decrypt to their plaintext", func(t *testing.T) {
		s := write(t, c, "transit/datakey/plaintext/app", map[string]any{"bits": 256})
		pt, ct := s.Data["plaintext"].(string), s.Data["ciphertext"].(string)
		raw, _ := base64.StdEncoding.DecodeString(pt)
		if len(raw) != 32 {
			t.Errorf("data key is %d bytes, want 32", len(raw))
		}
		if got := write(t, c, "transit/decrypt/app", map[string]any{"ciphertext": ct}).Data["plaintext"]; got != pt {
			t.Error("wrapped data key does not decrypt to its plaintext")
		}
		w := write(t, c, "transit/datakey/wrapped/app", nil)
		if _, ok := w.Data["plaintext"]; ok {
			t.Error("datakey/wrapped returned the plaintext")
		}
		if got := write(t, c, "transit/decrypt/app", map[string]any{"ciphertext": w.Data["ciphertext"]}).Data["plaintext"].(string); len(got) == 0 {
			t.Error("wrapped data key does not decrypt")
		}
	})

	t.Run("signatures verify only for the signed input", func(t *testing.T) {
		for _, typ := range []string{"ed25519", "ecdsa-p256", "rsa-2048"} {
			name := "sig-" + typ
			write(t, c, "transit/keys/"+name, map[string]any{"type": typ})
			sig := write(t, c, "transit/sign/"+name, map[string]any{"input": b64("signed message")}).Data["signature"].(string)
			if !strings.HasPrefix(sig, "vault:v1:") {
				t.Errorf("%s signature = %q", typ, sig)
			}
			for input, want := range map[string]bool{"signed message": true, "another message": false} {
				v := write(t, c, "transit/verify/"+name, map[string]any{"input": b64(input), "signature": sig})
				if v.Data["valid"] != want {
					t.Errorf("%s verify(%q) = %v, want %v", typ, input, v.Data["valid"], want)
				}
			}
		}
		// An encryption key cannot sign.
		_, err := c.Logical().Write("transit/sign/app", map[string]any{"input": b64("x")})
		wantStatus(t, "sign with aes key", err, http.StatusBadRequest)
	})

	t.Run("hmac verifies only for the same input", func(t *testing.T) {
		h := write(t, c, "transit/hmac/app", map[string]any{"input": b64("mac me")}).Data["hmac"].(string)
		if !strings.HasPrefix(h, "vault:v2:") {
			t.Errorf("hmac = %q, want prefix vault:v2:", h)
		}
		for input, want := range map[string]bool{"mac me": true, "mac you": false} {
			v := write(t, c, "transit/verify/app", map[string]any{"input": b64(input), "hmac": h})
			if v.Data["valid"] != want {
				t.Errorf("hmac verify(%q) = %v, want %v", input, v.Data["valid"], want)
			}
		}
	})

	t.Run("missing key and bad input", func(t *testing.T) {
		_, err := c.Logical().Write("transit/decrypt/nokey", map[string]any{"ciphertext": ct1})
		if err == nil {
			t.Error("decrypt with a missing key succeeded")
		}
		_, err = c.Logical().Write("transit/encrypt/app", map[string]any{"plaintext": "%%%"})
		wantStatus(t, "encrypt non-base64 plaintext", err, http.StatusBadRequest)
		_, err = c.Logical().Delete("transit/keys/app")
		wantStatus(t, "delete without deletion_allowed", err, http.StatusBadRequest)
	})
}
