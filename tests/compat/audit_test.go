package compat

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

func enableFileAudit(t *testing.T, c *vault.Client, name, path string, opts map[string]string) {
	t.Helper()
	o := map[string]string{"file_path": path}
	for k, v := range opts {
		o[k] = v
	}
	if err := c.Sys().EnableAuditWithOptions(name, &vault.EnableAuditOptions{Type: "file", Options: o}); err != nil {
		t.Fatalf("enable audit %s: %v", name, err)
	}
}

// TestAuditTrail records requests through a file device: HMACs instead of
// values and tokens, audit-hash matching the log, the denied read recorded,
// and an offline verify that catches an edit.
func TestAuditTrail(t *testing.T) {
	p, root := startDev(t)
	cx := ctx(t)
	logPath := filepath.Join(t.TempDir(), "audit.log")
	enableFileAudit(t, root, "file", logPath, nil)

	const canary = "AuditCanary-0b7e51"
	if _, err := root.KVv2("secret").Put(cx, "audited", map[string]any{"pw": canary}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.KVv2("secret").Get(cx, "audited"); err != nil {
		t.Fatal(err)
	}
	if err := root.Sys().PutPolicyWithContext(cx, "none", `path "nothing/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	sec, err := root.Auth().Token().CreateWithContext(cx, &vault.TokenCreateRequest{Policies: []string{"none"}, DisplayName: "snoop"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.client(t, sec.Auth.ClientToken).KVv2("secret").Get(cx, "audited"); err == nil {
		t.Fatal("the denied read was allowed")
	}

	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for name, needle := range map[string]string{"value": canary, "root token": `"client_token":"root"`, "child token": sec.Auth.ClientToken} {
		if bytes.Contains(raw, []byte(needle)) {
			t.Errorf("the audit log contains the %s", name)
		}
	}
	hash, err := root.Sys().AuditHash("file", canary)
	if err != nil {
		t.Fatalf("audit-hash: %v", err)
	}
	if !strings.HasPrefix(hash, "hmac-sha256:") || !bytes.Contains(raw, []byte(hash)) {
		t.Errorf("audit-hash %q not found in the log", hash)
	}
	denied := false
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, "permission denied") && strings.Contains(l, "secret/data/audited") && strings.Contains(l, "token-snoop") {
			denied = true
		}
	}
	if !denied {
		t.Errorf("the denied read is not in the log:\n%s", raw)
	}

	// Offline verification: untouched passes, an edited line fails.
	p.stop() // the shutdown checkpoint seals the end of the chain
	if out, err := exec.Command(cofferBin, "audit", "verify", logPath).CombinedOutput(); err != nil {
		t.Fatalf("verify of an untouched log failed: %v\n%s", err, out)
	}
	edited := bytes.Replace(raw, []byte(`"operation":"read"`), []byte(`"operation":"list"`), 1)
	if bytes.Equal(edited, raw) {
		t.Fatal("found nothing to edit")
	}
	final, _ := os.ReadFile(logPath)
	edited = append(edited, final[len(raw):]...)
	bad := filepath.Join(t.TempDir(), "edited.log")
	os.WriteFile(bad, edited, 0o600)
	out, err := exec.Command(cofferBin, "audit", "verify", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "line") {
		t.Errorf("verify of an edited log: err=%v out=%s", err, out)
	}
	lines := bytes.SplitAfter(final, []byte("\n"))
	removed := bytes.Join(append(append([][]byte{}, lines[:3]...), lines[4:]...), nil)
	os.WriteFile(bad, removed, 0o600)
	if out, err := exec.Command(cofferBin, "audit", "verify", bad).CombinedOutput(); err == nil {
		t.Errorf("verify of a log with a line removed passed: %s", out)
	}
}

// TestAuditNeverHangs puts a FIFO nobody reads beside a file device:
// writes still complete; with only the FIFO left, they fail closed.
func TestAuditNeverHangs(t *testing.T) {
	p, root := startDev(t)
	cx := ctx(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "stuck.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// A reader that opens the FIFO and then never reads, so the device's
	// writes block once the pipe buffer is full.
	rd, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	enableFileAudit(t, root, "stuck", fifo, map[string]string{"timeout": "500ms", "queue_size": "64"})
	enableFileAudit(t, root, "file", filepath.Join(dir, "audit.log"), nil)

	big := strings.Repeat("x", 4096)
	var slowest time.Duration
	for i := 0; i < 200; i++ {
		start := time.Now()
		if _, err := root.KVv2("secret").Put(cx, "k", map[string]any{"v": big}); err != nil {
			t.Fatalf("write %d with a working file device: %v", i, err)
		}
		slowest = max(slowest, time.Since(start))
	}
	if slowest > 5*time.Second {
		t.Errorf("slowest write took %v with a blocked device beside a working one", slowest)
	}
	t.Logf("slowest of 200 writes with a blocked FIFO device beside a file device: %v", slowest)

	if err := root.Sys().DisableAudit("file"); err != nil {
		t.Fatal(err)
	}
	if _, err := root.KVv2("secret").Put(cx, "k", map[string]any{"v": "x"}); err == nil {
		t.Error("a write succeeded with no working audit device")
	}
	_ = p
}
