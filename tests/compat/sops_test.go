package compat

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	sopsOnce sync.Once
	sopsPath string
	sopsErr  string
)

// sopsBinary returns the real sops binary: $COFFER_SOPS, or the one
// hack/sops.sh builds from the Go module proxy (cached by version under
// ~/.cache/coffer/sops). It fails the test, never skips, when neither works.
func sopsBinary(t *testing.T) string {
	t.Helper()
	sopsOnce.Do(func() {
		if p := os.Getenv("COFFER_SOPS"); p != "" {
			sopsPath = p
			return
		}
		start := time.Now()
		cmd := exec.Command("bash", filepath.Join("..", "..", "hack", "sops.sh"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			sopsErr = "building sops with hack/sops.sh failed (it needs the Go module proxy; or set COFFER_SOPS=/path/to/sops): " + err.Error() + "\n" + stderr.String()
			return
		}
		sopsPath = strings.TrimSpace(string(out))
		if d := time.Since(start); d > 5*time.Second {
			t.Logf("built sops in %s", d.Round(time.Second))
		}
	})
	if sopsPath == "" {
		t.Fatal(sopsErr)
	}
	if _, err := os.Stat(sopsPath); err != nil {
		t.Fatalf("sops binary %s: %v (unset COFFER_SOPS to build it with hack/sops.sh)", sopsPath, err)
	}
	return sopsPath
}

// sops runs the sops binary in dir with only the environment given (plus
// PATH), so no developer's ~/.vault-token or VAULT_* leaks in.
func runSops(t *testing.T, bin, dir string, env []string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, &sopsError{err: err, stderr: stderr.String()}
	}
	return out, nil
}

type sopsError struct {
	err    error
	stderr string
}

func (e *sopsError) Error() string { return e.err.Error() + ": " + e.stderr }

const sopsPlain = `database:
    user: app
    password: correct-horse-battery-staple
api_key: sk-live-0123456789abcdef
`

// TestSopsRoundTrip drives the real sops binary against a real coffer
// process's transit engine: encrypt, decrypt, key rotation, sops rotate,
// .sops.yaml creation rules and the ~/.vault-token fallback.
func TestSopsRoundTrip(t *testing.T) {
	bin := sopsBinary(t)
	p, c := startDev(t)
	mountTransit(t, c)
	write(t, c, "transit/keys/sops", map[string]any{})
	uri := p.addr + "/v1/transit/keys/sops"
	dir := t.TempDir()
	env := []string{"VAULT_TOKEN=root"}
	if err := os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte(sopsPlain), 0o600); err != nil {
		t.Fatal(err)
	}

	enc, err := runSops(t, bin, dir, env, "--encrypt", "--hc-vault-transit", uri, "secrets.yaml")
	if err != nil {
		t.Fatalf("sops --encrypt: %v", err)
	}
	for _, want := range []string{"ENC[AES256_GCM", "hc_vault", "vault:v1:", "vault_address: " + p.addr, "key_name: sops"} {
		if !bytes.Contains(enc, []byte(want)) {
			t.Errorf("encrypted file lacks %q:\n%s", want, enc)
		}
	}
	for _, secret := range []string{"correct-horse-battery-staple", "sk-live-0123456789abcdef"} {
		if bytes.Contains(enc, []byte(secret)) {
			t.Fatalf("encrypted file holds the plaintext %q", secret)
		}
	}
	encPath := filepath.Join(dir, "secrets.enc.yaml")
	if err := os.WriteFile(encPath, enc, 0o600); err != nil {
		t.Fatal(err)
	}
	decrypt := func(t *testing.T, env []string) {
		t.Helper()
		dec, err := runSops(t, bin, dir, env, "--decrypt", "secrets.enc.yaml")
		if err != nil {
			t.Fatalf("sops --decrypt: %v", err)
		}
		if string(dec) != sopsPlain {
			t.Errorf("decrypted =\n%s\nwant\n%s", dec, sopsPlain)
		}
	}
	decrypt(t, env)

	t.Run("a bad token fails without leaking", func(t *testing.T) {
		out, err := runSops(t, bin, dir, []string{"VAULT_TOKEN=not-a-token"}, "--decrypt", "secrets.enc.yaml")
		if err == nil {
			t.Fatal("sops decrypted with a bad token")
		}
		if bytes.Contains(out, []byte("correct-horse")) || strings.Contains(err.Error(), "correct-horse") {
			t.Error("failed decrypt printed the plaintext")
		}
	})

	t.Run("the token can come from ~/.vault-token", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(dir, ".vault-token"), []byte("root\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(filepath.Join(dir, ".vault-token"))
		decrypt(t, nil) // HOME=dir, no VAULT_TOKEN
	})

	t.Run("old files decrypt after a key rotation, and sops rotate moves them", func(t *testing.T) {
		write(t, c, "transit/keys/sops/rotate", nil)
		decrypt(t, env)
		if _, err := runSops(t, bin, dir, env, "rotate", "--in-place", "secrets.enc.yaml"); err != nil {
			t.Fatalf("sops rotate: %v", err)
		}
		rotated, _ := os.ReadFile(encPath)
		if !bytes.Contains(rotated, []byte("vault:v2:")) {
			t.Errorf("after sops rotate the data key is not wrapped by key version 2:\n%s", rotated)
		}
		if bytes.Equal(rotated, enc) {
			t.Error("sops rotate did not change the file")
		}
		decrypt(t, env)
	})

	t.Run("creation rules in .sops.yaml", func(t *testing.T) {
		rules := "creation_rules:\n  - path_regex: \\.yaml$\n    hc_vault_transit_uri: \"" + uri + "\"\n"
		if err := os.WriteFile(filepath.Join(dir, ".sops.yaml"), []byte(rules), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := runSops(t, bin, dir, env, "--encrypt", "secrets.yaml")
		if err != nil {
			t.Fatalf("sops --encrypt with .sops.yaml: %v", err)
		}
		if !regexp.MustCompile(`vault:v2:`).Match(out) || bytes.Contains(out, []byte("correct-horse")) {
			t.Errorf("encrypted with creation rules:\n%s", out)
		}
		if _, err := runSops(t, bin, dir, env, "updatekeys", "--yes", "secrets.enc.yaml"); err != nil {
			t.Errorf("sops updatekeys: %v", err)
		}
		decrypt(t, env)
	})
}
