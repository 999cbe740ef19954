package compat

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// The auth methods end to end (issue 5): enabled through sys/auth with the
// Vault Go client, logged in to, and the token they mint used against its
// policies.

func enableAuth(t *testing.T, c *vault.Client, path, typ string, opts map[string]string) {
	t.Helper()
	if err := c.Sys().EnableAuthWithOptions(path, &vault.EnableAuthOptions{Type: typ, Options: opts}); err != nil {
		t.Fatalf("enable auth %s: %v", typ, err)
	}
}

func respCode(err error) int {
	var re *vault.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// checkPolicyScope writes secret/data/allowed and secret/data/denied as
// root, and checks that token reads the first and not the second.
func checkPolicyScope(t *testing.T, p *proc, root *vault.Client, token string) {
	t.Helper()
	cx := ctx(t)
	for _, k := range []string{"allowed", "denied"} {
		if _, err := root.KVv2("secret").Put(cx, k, map[string]any{"v": k}); err != nil {
			t.Fatal(err)
		}
	}
	c := p.client(t, token)
	if s, err := c.KVv2("secret").Get(cx, "allowed"); err != nil || s.Data["v"] != "allowed" {
		t.Fatalf("read allowed = %v, %v", s, err)
	}
	if _, err := c.KVv2("secret").Get(cx, "denied"); respCode(err) != 403 {
		t.Fatalf("read denied = %v, want 403", err)
	}
}

func putReader(t *testing.T, root *vault.Client) {
	t.Helper()
	if err := root.Sys().PutPolicy("reader", `path "secret/data/allowed" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
}

func TestAuthAppRole(t *testing.T) {
	p, root := startDev(t)
	putReader(t, root)
	enableAuth(t, root, "approle", "approle", nil)
	auths, err := root.Sys().ListAuth()
	if err != nil || auths["approle/"] == nil || auths["approle/"].Type != "approle" {
		t.Fatalf("sys/auth = %v, %v", auths, err)
	}
	if _, err := root.Logical().Write("auth/approle/role/app", map[string]any{"token_policies": "reader", "secret_id_num_uses": 2, "token_ttl": "1h"}); err != nil {
		t.Fatal(err)
	}
	rid, err := root.Logical().Read("auth/approle/role/app/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid, err := root.Logical().Write("auth/approle/role/app/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	anon := p.client(t, "")
	login := func() (*vault.Secret, error) {
		return anon.Logical().Write("auth/approle/login", map[string]any{"role_id": rid.Data["role_id"], "secret_id": sid.Data["secret_id"]})
	}
	s, err := login()
	if err != nil {
		t.Fatal(err)
	}
	if s.Auth == nil || s.Auth.ClientToken == "" || !s.Auth.Renewable || s.Auth.LeaseDuration != 3600 {
		t.Fatalf("login auth = %+v", s.Auth)
	}
	if !slices.Contains(s.Auth.Policies, "reader") || s.Auth.Metadata["role_name"] != "app" {
		t.Errorf("policies %v metadata %v", s.Auth.Policies, s.Auth.Metadata)
	}
	checkPolicyScope(t, p, root, s.Auth.ClientToken)
	if _, err := login(); err != nil {
		t.Fatalf("second use: %v", err)
	}
	if _, err := login(); respCode(err) != 400 || !strings.Contains(err.Error(), "invalid role or secret ID") {
		t.Fatalf("used-up secret ID = %v, want 400 invalid role or secret ID", err)
	}
	if err := root.Sys().DisableAuth("approle"); err != nil {
		t.Fatal(err)
	}
	if _, err := login(); err == nil {
		t.Fatal("login after disable succeeded")
	}
}

func TestAuthUserpassRateLimit(t *testing.T) {
	p, root := startDev(t)
	putReader(t, root)
	enableAuth(t, root, "userpass", "userpass", map[string]string{"lockout_threshold": "2", "lockout_duration": "2s"})
	if _, err := root.Logical().Write("auth/userpass/users/alice", map[string]any{"password": "correct horse", "token_policies": "reader"}); err != nil {
		t.Fatal(err)
	}
	anon := p.client(t, "")
	s, err := anon.Logical().Write("auth/userpass/login/alice", map[string]any{"password": "correct horse"})
	if err != nil {
		t.Fatal(err)
	}
	checkPolicyScope(t, p, root, s.Auth.ClientToken)
	for range 2 {
		if _, err := anon.Logical().Write("auth/userpass/login/alice", map[string]any{"password": "wrong"}); respCode(err) != 400 {
			t.Fatalf("wrong password = %v, want 400", err)
		}
	}
	resp, err := http.Post(p.addr+"/v1/auth/userpass/login/alice", "application/json", strings.NewReader(`{"password":"correct horse"}`))
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("locked login = %d Retry-After %q %s, want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body.String())
	}
	if strings.Contains(body.String(), "correct horse") {
		t.Error("the 429 body holds the password")
	}
	time.Sleep(2100 * time.Millisecond)
	if _, err := anon.Logical().Write("auth/userpass/login/alice", map[string]any{"password": "correct horse"}); err != nil {
		t.Fatalf("login after the lockout: %v", err)
	}
}

func TestAuthJWT(t *testing.T) {
	p, root := startDev(t)
	putReader(t, root)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	enableAuth(t, root, "jwt", "jwt", nil)
	if _, err := root.Logical().Write("auth/jwt/config", map[string]any{
		"jwt_validation_pubkeys": []string{string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))},
		"bound_issuer":           "https://ci.example",
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("auth/jwt/role/ci", map[string]any{
		"role_type": "jwt", "user_claim": "sub", "bound_audiences": []string{"coffer"},
		"bound_claims": map[string]any{"branch": "main"}, "claim_mappings": map[string]any{"repo": "repo"},
		"token_policies": []string{"reader"},
	}); err != nil {
		t.Fatal(err)
	}
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"iss": "https://ci.example", "sub": "repo:org/app", "aud": "coffer", "branch": "main", "repo": "org/app",
			"iat": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	anon := p.client(t, "")
	login := func(tok string) (*vault.Secret, error) {
		return anon.Logical().Write("auth/jwt/login", map[string]any{"role": "ci", "jwt": tok})
	}
	s, err := login(es256(t, key, claims(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if s.Auth.Metadata["repo"] != "org/app" || s.Auth.Metadata["role"] != "ci" {
		t.Errorf("metadata = %v", s.Auth.Metadata)
	}
	checkPolicyScope(t, p, root, s.Auth.ClientToken)
	for name, tok := range map[string]string{
		"a wrong issuer":    es256(t, key, claims(func(c map[string]any) { c["iss"] = "https://evil" })),
		"a wrong audience":  es256(t, key, claims(func(c map[string]any) { c["aud"] = "vault" })),
		"an expired token":  es256(t, key, claims(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() })),
		"an unsigned token": b64json(t, map[string]any{"alg": "none"}) + "." + b64json(t, claims(nil)) + ".",
		"another branch":    es256(t, key, claims(func(c map[string]any) { c["branch"] = "dev" })),
	} {
		if _, err := login(tok); respCode(err) != 400 {
			t.Errorf("%s: login = %v, want 400", name, err)
		}
	}
}

func b64json(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(raw)
}

func es256(t *testing.T, key *ecdsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	in := b64json(t, map[string]any{"alg": "ES256", "typ": "JWT"}) + "." + b64json(t, claims)
	d := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}
