package kms

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	kmsapi "k8s.io/kms/apis/v2"
)

// keyIDPattern is the transit key's stable id (a UUID, which the transit
// engine now reports) and its version.
var keyIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:v[0-9]+$`)

func seed(t testing.TB) []byte {
	t.Helper()
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

func TestStatusHealthyWithKeyID(t *testing.T) {
	s := startDev(t)
	c, _ := serve(t, Config{Client: s.client(t), Token: s.token(t, kmsPolicy, nil)})
	st, err := c.Status(tctx(t), &kmsapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != "v2" || st.Healthz != "ok" {
		t.Errorf("Status = version %q healthz %q, want v2 ok", st.Version, st.Healthz)
	}
	if !keyIDPattern.MatchString(st.KeyId) || !strings.HasSuffix(st.KeyId, ":v1") {
		t.Errorf("key_id = %q, want <transit key uuid>:v1", st.KeyId)
	}
	// Stable across calls and across plugin processes.
	c2, _ := serve(t, Config{Client: s.client(t), Token: "root"})
	st2, err := c2.Status(tctx(t), &kmsapi.StatusRequest{})
	if err != nil || st2.KeyId != st.KeyId {
		t.Errorf("second plugin: key_id %q, %v; want %q", st2.GetKeyId(), err, st.KeyId)
	}
}

func TestEncryptDecryptRoundTrip(t *testing.T) {
	s := startDev(t)
	c, _ := serve(t, Config{Client: s.client(t), Token: s.token(t, kmsPolicy, nil)})
	ctx := tctx(t)
	st, err := c.Status(ctx, &kmsapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pt := seed(t)
	enc, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: pt, Uid: "uid-1"})
	if err != nil {
		t.Fatal(err)
	}
	if enc.KeyId != st.KeyId {
		t.Errorf("Encrypt key_id %q, Status key_id %q: must be equal", enc.KeyId, st.KeyId)
	}
	if bytes.Contains(enc.Ciphertext, pt) || !bytes.HasPrefix(enc.Ciphertext, []byte("vault:v1:")) {
		t.Errorf("ciphertext %q: want a vault:v1: transit ciphertext", enc.Ciphertext)
	}
	if got := string(enc.Annotations[FormatAnnotation]); got != "transit-v1" {
		t.Errorf("annotation %s = %q, want transit-v1", FormatAnnotation, got)
	}
	enc2, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: pt, Uid: "uid-2"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(enc.Ciphertext, enc2.Ciphertext) {
		t.Error("two encryptions of one seed gave the same ciphertext")
	}
	dec, err := c.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Annotations: enc.Annotations, Uid: "uid-3"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dec.Plaintext, pt) {
		t.Error("Decrypt returned a different seed")
	}
	// The API server may send no annotations back (older objects): still fine.
	if dec, err := c.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: enc2.Ciphertext, KeyId: enc2.KeyId}); err != nil || !bytes.Equal(dec.Plaintext, pt) {
		t.Errorf("Decrypt without annotations: %v", err)
	}
}

func TestEncryptRefusesBadPlaintext(t *testing.T) {
	s := startDev(t)
	c, _ := serve(t, Config{Client: s.client(t), Token: "root"})
	for name, pt := range map[string][]byte{"empty seed": nil, "oversized seed": make([]byte, maxSeed+1)} {
		t.Run(name, func(t *testing.T) {
			_, err := c.Encrypt(tctx(t), &kmsapi.EncryptRequest{Plaintext: pt})
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("Encrypt = %v, want InvalidArgument", err)
			}
		})
	}
}

func TestRotationChangesKeyIDAndOldCiphertextsDecrypt(t *testing.T) {
	s := startDev(t)
	c, _ := serve(t, Config{Client: s.client(t), Token: s.token(t, kmsPolicy, nil)})
	ctx := tctx(t)
	st1, err := c.Status(ctx, &kmsapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pt := seed(t)
	old, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: pt})
	if err != nil {
		t.Fatal(err)
	}
	s.write(t, "transit/keys/k8s-etcd/rotate", map[string]any{})
	st2, err := c.Status(ctx, &kmsapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st2.Healthz != "ok" || st2.KeyId == st1.KeyId || !strings.HasSuffix(st2.KeyId, ":v2") {
		t.Fatalf("after rotate: Status %q key_id %q (before %q), want ok and a new :v2 key_id", st2.Healthz, st2.KeyId, st1.KeyId)
	}
	if strings.Split(st2.KeyId, ":")[0] != strings.Split(st1.KeyId, ":")[0] {
		t.Errorf("the key's id changed on rotation: %q → %q", st1.KeyId, st2.KeyId)
	}
	enc, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: pt})
	if err != nil || enc.KeyId != st2.KeyId || !bytes.HasPrefix(enc.Ciphertext, []byte("vault:v2:")) {
		t.Fatalf("Encrypt after rotate: key_id %q ct %.9q, %v; want %q under v2", enc.GetKeyId(), enc.GetCiphertext(), err, st2.KeyId)
	}
	dec, err := c.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: old.Ciphertext, KeyId: old.KeyId, Annotations: old.Annotations})
	if err != nil || !bytes.Equal(dec.GetPlaintext(), pt) {
		t.Fatalf("old ciphertext after rotate: %v", err)
	}
}

func TestRecreatedKeyGetsNewID(t *testing.T) {
	s := startDev(t)
	c, _ := serve(t, Config{Client: s.client(t), Token: "root"})
	ctx := tctx(t)
	enc, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: seed(t)})
	if err != nil {
		t.Fatal(err)
	}
	s.write(t, "transit/keys/k8s-etcd/config", map[string]any{"deletion_allowed": true})
	if _, err := s.root.Delete(ctx, "transit/keys/k8s-etcd"); err != nil {
		t.Fatal(err)
	}
	// The derived id has one-second resolution (DeriveKeyID's documented
	// weakness): recreate in a later second.
	waitNextSecond()
	s.write(t, "transit/keys/k8s-etcd", map[string]any{})
	st, err := c.Status(ctx, &kmsapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Healthz != "ok" || st.KeyId == enc.KeyId {
		t.Fatalf("recreated key: Status %q key_id %q; want ok and not the old %q", st.Healthz, st.KeyId, enc.KeyId)
	}
	_, err = c.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "unknown key_id") {
		t.Errorf("Decrypt under the deleted key's key_id = %v, want InvalidArgument unknown key_id", err)
	}
}

func TestDecryptRefusesWhatItDidNotIssue(t *testing.T) {
	s := startDev(t)
	c, _ := serve(t, Config{Client: s.client(t), Token: "root"})
	ctx := tctx(t)
	pt := seed(t)
	enc, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: pt})
	if err != nil {
		t.Fatal(err)
	}
	// A ciphertext made by another client of the same key, without the
	// plugin's associated data.
	r := s.write(t, "transit/encrypt/k8s-etcd", map[string]any{"plaintext": base64.StdEncoding.EncodeToString(pt)})
	foreign := []byte(r.Data["ciphertext"].(string))
	id := strings.Split(enc.KeyId, ":")[0]
	tampered := bytes.Clone(enc.Ciphertext)
	tampered[len(tampered)-2] ^= 1
	for name, tc := range map[string]struct {
		req  *kmsapi.DecryptRequest
		want string
	}{
		"another key's id":             {&kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: strings.Repeat("0", 32) + ":v1"}, "unknown key_id"},
		"a key_id without version":     {&kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: id}, "unknown key_id"},
		"an empty key_id":              {&kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext}, "unknown key_id"},
		"a version not the ciphertext": {&kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: id + ":v2"}, "does not match"},
		"a non-transit ciphertext":     {&kmsapi.DecryptRequest{Ciphertext: []byte("garbage"), KeyId: enc.KeyId}, "does not match"},
		"an unknown format":            {&kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Annotations: map[string][]byte{FormatAnnotation: []byte("v9")}}, "unknown format"},
		"a foreign transit ciphertext": {&kmsapi.DecryptRequest{Ciphertext: foreign, KeyId: enc.KeyId}, "decrypt"},
		"a tampered ciphertext":        {&kmsapi.DecryptRequest{Ciphertext: tampered, KeyId: enc.KeyId}, "decrypt"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.Decrypt(ctx, tc.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Decrypt = %v, want InvalidArgument mentioning %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(pt)) {
				t.Error("the error carries the seed")
			}
		})
	}
}

func TestSealedCofferIsUnhealthyAndFailsClearly(t *testing.T) {
	s := startDev(t)
	ctx := tctx(t)
	tok := s.token(t, kmsPolicy, nil)
	cached, _ := serve(t, Config{Client: s.client(t), Token: tok})
	uncached, _ := serve(t, Config{Client: s.client(t), Token: tok, CacheSize: -1})
	pt := seed(t)
	seen, err := cached.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: pt})
	if err != nil {
		t.Fatal(err)
	}
	unseen, err := uncached.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: pt})
	if err != nil {
		t.Fatal(err)
	}
	s.write(t, "sys/seal", map[string]any{})

	for name, c := range map[string]kmsapi.KeyManagementServiceClient{"cached": cached, "uncached": uncached} {
		st, err := c.Status(ctx, &kmsapi.StatusRequest{})
		if err != nil {
			t.Fatalf("%s: Status: %v", name, err)
		}
		if st.Healthz != "coffer is sealed" || st.Version != "v2" {
			t.Errorf("%s: sealed Status = %q %q, want v2 \"coffer is sealed\"", name, st.Version, st.Healthz)
		}
		_, err = c.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: pt})
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "coffer is sealed") {
			t.Errorf("%s: sealed Encrypt = %v, want Unavailable coffer is sealed", name, err)
		}
	}
	_, err = uncached.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: unseen.Ciphertext, KeyId: unseen.KeyId})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "coffer is sealed") {
		t.Errorf("sealed Decrypt without cache = %v, want Unavailable coffer is sealed", err)
	}
	_, err = cached.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: unseen.Ciphertext, KeyId: unseen.KeyId})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("sealed Decrypt of a ciphertext the plugin never saw = %v, want Unavailable", err)
	}
	dec, err := cached.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: seen.Ciphertext, KeyId: seen.KeyId})
	if err != nil || !bytes.Equal(dec.Plaintext, pt) {
		t.Errorf("sealed Decrypt of a recently wrapped seed: %v; want it from the in-memory cache", err)
	}

	if s.unseal == "" {
		t.Fatal("no unseal key in the dev server's output")
	}
	if _, err := s.root.Unseal(ctx, s.unseal, false); err != nil {
		t.Fatal(err)
	}
	if st, err := uncached.Status(ctx, &kmsapi.StatusRequest{}); err != nil || st.Healthz != "ok" || st.KeyId != seen.KeyId {
		t.Errorf("after unseal: Status %v, %v; want ok %s", st, err, seen.KeyId)
	}
}

func TestStatusReasons(t *testing.T) {
	s := startDev(t)
	ctx := tctx(t)
	// A port where nothing listens.
	dead := startDevAddrClosed(t)
	for name, tc := range map[string]struct {
		cfg  Config
		want string
	}{
		"unreachable coffer":   {Config{Client: dead, Token: "root"}, "coffer unreachable: "},
		"refused token":        {Config{Client: s.client(t), Token: "not-a-token"}, "coffer refused the token: permission denied"},
		"token without access": {Config{Client: s.client(t), Token: s.token(t, `path "secret/*" { capabilities = ["read"] }`, nil)}, "coffer refused the token"},
		"missing key":          {Config{Client: s.client(t), Token: "root", KeyPath: "transit/keys/nope"}, "transit key transit/keys/nope not found"},
		"missing mount":        {Config{Client: s.client(t), Token: "root", KeyPath: "other/keys/k8s-etcd"}, "other/keys/k8s-etcd"},
	} {
		t.Run(name, func(t *testing.T) {
			c, _ := serve(t, tc.cfg)
			st, err := c.Status(ctx, &kmsapi.StatusRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if st.Version != "v2" || !strings.Contains(st.Healthz, tc.want) {
				t.Errorf("Status healthz = %q, want it to contain %q", st.Healthz, tc.want)
			}
			if _, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: []byte("x")}); err == nil {
				t.Error("Encrypt succeeded")
			}
		})
	}
}

func TestKeyOfWrongTypeIsUnhealthy(t *testing.T) {
	s := startDev(t)
	s.write(t, "transit/keys/signing", map[string]any{"type": "ed25519"})
	c, _ := serve(t, Config{Client: s.client(t), Token: "root", KeyPath: "transit/keys/signing"})
	st, err := c.Status(tctx(t), &kmsapi.StatusRequest{})
	if err != nil || !strings.Contains(st.Healthz, `type "ed25519"`) {
		t.Errorf("Status = %v, %v; want a reason naming the type", st, err)
	}
}

func TestTokenFileIsReReadWhenRefused(t *testing.T) {
	s := startDev(t)
	ctx := tctx(t)
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(s.token(t, `path "secret/*" { capabilities = ["read"] }`, nil)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := serve(t, Config{Client: s.client(t), TokenFile: file})
	if st, _ := c.Status(ctx, &kmsapi.StatusRequest{}); st.GetHealthz() == "ok" {
		t.Fatal("healthy with a token that may not read the key")
	}
	if err := os.WriteFile(file, []byte(s.token(t, kmsPolicy, nil)), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, err := c.Status(ctx, &kmsapi.StatusRequest{}); err != nil || st.Healthz != "ok" {
		t.Fatalf("after rewriting the token file: %v, %v", st, err)
	}
}

func TestRenewExtendsTheToken(t *testing.T) {
	s := startDev(t)
	ctx := tctx(t)
	tok := s.token(t, kmsPolicy+`path "auth/token/renew-self" { capabilities = ["update"] }
path "auth/token/lookup-self" { capabilities = ["read"] }`, map[string]any{"ttl": "1h", "explicit_max_ttl": "10h", "renewable": true})
	p, err := New(Config{Client: s.client(t), Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.tokens.get(ctx); err != nil {
		t.Fatal(err)
	}
	if p.tokens.ttl <= 0 || !p.tokens.renewable {
		t.Fatalf("after lookup: ttl %v renewable %v", p.tokens.ttl, p.tokens.renewable)
	}
	at1, _ := p.tokens.renewAt()
	if err := p.tokens.renew(ctx); err != nil {
		t.Fatal(err)
	}
	at2, ok := p.tokens.renewAt()
	if !ok || !at2.After(at1) {
		t.Errorf("renewAt after renew = %v, before %v", at2, at1)
	}
	r, err := s.root.Do(ctx, http.MethodPut, "auth/token/lookup", map[string]any{"token": tok})
	if err != nil {
		t.Fatal(err)
	}
	if ttl, _ := jsonInt(r.Data["ttl"]); ttl < 3500 {
		t.Errorf("server-side ttl after renew = %d", ttl)
	}
}
