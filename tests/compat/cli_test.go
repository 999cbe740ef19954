package compat

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"
)

// coffer runs the CLI binary against p with token tok and a private home.
func coffer(t *testing.T, p *proc, tok, home string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(cofferBin, args...)
	cmd.Env = append(os.Environ(), "COFFER_ADDR="+p.addr, "COFFER_TOKEN="+tok, "VAULT_ADDR=", "VAULT_TOKEN=", "HOME="+home)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestCLI drives the coffer binary's client commands against a real
// server: kv, Vault's single-dash flags, plain-word errors and exit codes,
// login with an auth method, and an online backup restored after a change.
func TestCLI(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir, "")
	keys, root := initUnseal(t, p)
	home := t.TempDir()
	run := func(tok string, args ...string) string {
		t.Helper()
		out, err := coffer(t, p, tok, home, args...)
		if err != nil {
			t.Fatalf("coffer %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	run(root, "secrets", "enable", "--path=secret", "--version=2", "kv")
	run(root, "kv", "put", "secret/app", "user=admin", "password=before-backup")
	if out := run(root, "kv", "get", "-field=password", "secret/app"); strings.TrimSpace(out) != "before-backup" {
		t.Errorf("kv get -field=password = %q", out)
	}
	if out := run(root, "kv", "get", "--format=json", "secret/app"); !strings.Contains(out, `"password": "before-backup"`) {
		t.Errorf("kv get --format=json:\n%s", out)
	}

	// Errors in plain words, with Vault's exit codes.
	out, err := coffer(t, p, "hvs.bogus", home, "kv", "get", "secret/app")
	if code := exitCode(err); code != 2 && code != 1 || !strings.Contains(out, "permission denied") {
		t.Errorf("bad token: exit %d, %q", exitCode(err), out)
	}
	if _, err := coffer(t, p, root, home, "kv", "get", "--no-such-flag", "secret/app"); exitCode(err) != 2 {
		t.Errorf("unknown flag: exit %d, want 2", exitCode(err))
	}

	// Login with userpass through the CLI; the token lands in ~/.coffer-token.
	run(root, "auth", "enable", "userpass")
	run(root, "write", "auth/userpass/users/alice", "password=correct-horse", "token_policies=default")
	run("", "login", "--method=userpass", "username=alice", "password=correct-horse")
	b, err := os.ReadFile(filepath.Join(home, ".coffer-token"))
	if err != nil || !strings.HasPrefix(string(b), "hvs.") {
		t.Fatalf("token file after login: %q, %v", b, err)
	}
	if out := run("", "token", "lookup"); !strings.Contains(out, "userpass-alice") {
		t.Errorf("token lookup after login:\n%s", out)
	}

	// Online backup, a change, restore: the change is gone and the server
	// asks for its unseal keys again.
	backup := filepath.Join(t.TempDir(), "coffer.backup")
	run(root, "operator", "backup", backup)
	run(root, "kv", "put", "secret/app", "user=admin", "password=after-backup")
	run(root, "operator", "restore", backup)
	if st, _ := p.client(t, "").Sys().SealStatus(); !st.Sealed {
		t.Fatal("server not sealed after restore")
	}
	unseal(t, p, keys)
	if out := run(root, "kv", "get", "-field=password", "secret/app"); strings.TrimSpace(out) != "before-backup" {
		t.Errorf("after restore, password = %q, want before-backup", out)
	}
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestGenerateRootAndRekey mints a root token from a quorum of unseal key
// holders, then replaces the unseal keys (3-of-5 → 2-of-3).
func TestGenerateRootAndRekey(t *testing.T) {
	p := startServer(t, t.TempDir(), "")
	keys, _ := initUnseal(t, p)
	c := p.client(t, "")
	st, err := c.Sys().GenerateRootInit("", "")
	if err != nil {
		t.Fatal(err)
	}
	otp := st.OTP
	for _, k := range keys[:3] {
		if st, err = c.Sys().GenerateRootUpdate(k, st.Nonce); err != nil {
			t.Fatal(err)
		}
	}
	if !st.Complete || st.EncodedToken == "" {
		t.Fatalf("generate-root not complete: %+v", st)
	}
	raw, err := base64.RawStdEncoding.DecodeString(st.EncodedToken)
	if err != nil || len(raw) != len(otp) {
		t.Fatalf("encoded token %q: %v", st.EncodedToken, err)
	}
	tok := make([]byte, len(raw))
	for i := range raw {
		tok[i] = raw[i] ^ otp[i]
	}
	if self, err := p.client(t, string(tok)).Auth().Token().LookupSelf(); err != nil || self.Data["policies"].([]any)[0] != "root" {
		t.Fatalf("the new root token: %v %v", self, err)
	}

	rk, err := c.Sys().RekeyInit(&vault.RekeyInitRequest{SecretShares: 3, SecretThreshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	var res *vault.RekeyUpdateResponse
	for _, k := range keys[:3] {
		if res, err = c.Sys().RekeyUpdate(k, rk.Nonce); err != nil {
			t.Fatal(err)
		}
	}
	if !res.Complete || len(res.KeysB64) != 3 {
		t.Fatalf("rekey result: %+v", res)
	}
	if err := p.client(t, string(tok)).Sys().Seal(); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys[:3] {
		c.Sys().Unseal(k)
	}
	if st, _ := c.Sys().SealStatus(); !st.Sealed {
		t.Fatal("old keys still unseal after a rekey")
	}
	c.Sys().UnsealWithOptions(&vault.UnsealOpts{Reset: true})
	for _, k := range res.KeysB64[:2] {
		if _, err := c.Sys().Unseal(k); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := c.Sys().SealStatus(); st.Sealed || st.T != 2 || st.N != 3 {
		t.Fatalf("new keys: %+v", st)
	}
}
