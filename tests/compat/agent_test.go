package compat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/coffer-dev/coffer/internal/agent"
)

const agentPolicy = `
path "secret/data/app" { capabilities = ["read"] }
path "sys/events/subscribe/*" { capabilities = ["subscribe"] }
`

// agentToken writes a KV v2 secret and returns a token that may read it.
func agentToken(t *testing.T, root *vault.Client, data map[string]any) string {
	t.Helper()
	cx := ctx(t)
	if _, err := root.KVv2("secret").Put(cx, "app", data); err != nil {
		t.Fatalf("put secret: %v", err)
	}
	if err := root.Sys().PutPolicyWithContext(cx, "agent-app", agentPolicy); err != nil {
		t.Fatalf("put policy: %v", err)
	}
	sec, err := root.Auth().Token().CreateWithContext(cx, &vault.TokenCreateRequest{Policies: []string{"agent-app"}, TTL: "1h"})
	if err != nil {
		t.Fatalf("create token: %v", err)
	}
	return sec.Auth.ClientToken
}

// logBuffer collects the agent's logs for assertions.
func agentLogger(buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func waitFile(t *testing.T, path, want string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		b, err := os.ReadFile(path)
		if err == nil && string(b) == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s = %q (err %v) after %v, want %q", path, b, err, within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eventsAvailable reports whether the server answers the event stream's
// path; until it does, the agent's poll fallback carries the test.
func eventsAvailable(p *proc) bool {
	req, _ := http.NewRequest("GET", p.addr+"/v1/sys/events/subscribe/*?json=true", nil)
	req.Header.Set("X-Vault-Token", "root")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed
}

// TestAgentTokenFileTemplate runs the agent against a real server with
// token_file auth: the template renders with the right content and mode,
// the sink gets the token, health turns ready, a change to the secret
// re-renders the file and runs the command and signals the app.
func TestAgentTokenFileTemplate(t *testing.T) {
	p, root := startDev(t)
	tok := agentToken(t, root, map[string]any{"user": "app", "password": "first-pass"})
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte(tok+"\n"), 0o600)
	out := filepath.Join(dir, "secrets", "app.env")
	cmdLog := filepath.Join(dir, "cmd.log")

	push := eventsAvailable(p)
	interval := "2s" // poll fallback until the server streams events
	if push {
		interval = "1h"
	}
	cfg := fmt.Sprintf(`
coffer { address = %q }
auto_auth {
  method "token_file" { config = { token_file_path = %q } }
  sink "file" { config = { path = %q, mode = 0600 } }
}
template {
  contents    = "{{ with secret \"secret/data/app\" }}USER={{ .Data.data.user }}\nPASSWORD={{ .Data.data.password }}\n{{ end }}"
  destination = %q
  perms       = "0640"
  command     = "echo rendered >> %s"
  error_on_missing_key = true
}
template_config { static_secret_render_interval = %q }
`, p.addr, tokenFile, filepath.Join(dir, "sink"), out, cmdLog, interval)
	os.WriteFile(filepath.Join(dir, "agent.hcl"), []byte(cfg), 0o600)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	pidFile := filepath.Join(dir, "app.pid")
	os.WriteFile(pidFile, []byte(fmt.Sprint(os.Getpid())), 0o600)

	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(cx, agent.Options{
			ConfigPath: filepath.Join(dir, "agent.hcl"), SignalPIDFile: pidFile, Signal: syscall.SIGUSR1,
			Logger: agentLogger(logs), HealthListener: hl, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second,
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v after cancel", err)
		}
		if t.Failed() {
			t.Logf("agent logs:\n%s", logs.String())
		}
		if strings.Contains(logs.String(), tok) || strings.Contains(logs.String(), "first-pass") {
			t.Errorf("the logs contain the token or a secret value")
		}
	}()

	waitFile(t, out, "USER=app\nPASSWORD=first-pass\n", 30*time.Second)
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode of %s = %v (%v), want 0640", out, fi.Mode().Perm(), err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "sink")); err != nil || string(b) != tok {
		t.Errorf("sink holds %d bytes (%v), want the token", len(b), err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "sink")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("sink mode = %v, want 0600", fi.Mode().Perm())
	}
	// Health turns ready once every template is written and its command ran.
	for start := time.Now(); ; {
		resp, err := http.Get("http://" + hl.Addr().String() + "/agent/v1/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("health: %v, %v; want 200 within 5s", resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	if _, err := root.KVv2("secret").Put(ctx(t), "app", map[string]any{"user": "app", "password": "second-pass"}); err != nil {
		t.Fatal(err)
	}
	lat := waitFile(t, out, "USER=app\nPASSWORD=second-pass\n", 30*time.Second)
	t.Logf("re-render latency after the write: %v (push=%v, poll interval %s)", lat, push, interval)
	select {
	case <-sigs:
	case <-time.After(5 * time.Second):
		t.Error("the application was not signalled after the re-render")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(cmdLog)
		if strings.Count(string(b), "rendered") >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("command ran %d times, want 2 (first render and change)", strings.Count(string(b), "rendered"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAgentOnce: --once writes the files and returns nil.
func TestAgentOnce(t *testing.T) {
	p, root := startDev(t)
	tok := agentToken(t, root, map[string]any{"password": "once-pass"})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "token"), []byte(tok), 0o600)
	out := filepath.Join(dir, "pw")
	cfg := fmt.Sprintf(`
vault { address = %q }
auto_auth {
  method "token_file" { config = { token_file_path = %q } }
}
template {
  contents    = "{{ with secret \"secret/data/app\" }}{{ .Data.data.password | base64Encode }}{{ end }}"
  destination = %q
}
`, p.addr, filepath.Join(dir, "token"), out)
	cx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := agent.Run(cx, agent.Options{ConfigHCL: []byte(cfg), Once: true}); err != nil {
		t.Fatalf("Run --once = %v, want nil", err)
	}
	if cx.Err() != nil {
		t.Fatal("Run --once returned only because the context ended")
	}
	b, err := os.ReadFile(out)
	if err != nil || string(b) != "b25jZS1wYXNz" {
		t.Errorf("file = %q, %v", b, err)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o400 {
		t.Errorf("default mode = %v, want 0400", fi.Mode().Perm())
	}
}

// TestAgentWrongTokenRetries: a refused token is retried with growing
// backoff, and each log line says why.
func TestAgentWrongTokenRetries(t *testing.T) {
	p, _ := startDev(t)
	dir := t.TempDir()
	const bogus = "hvs.not-a-real-token"
	os.WriteFile(filepath.Join(dir, "token"), []byte(bogus), 0o600)
	cfg := fmt.Sprintf(`
coffer { address = %q }
auto_auth {
  method "token_file" { config = { token_file_path = %q } }
}
template {
  contents    = "x"
  destination = %q
}
`, p.addr, filepath.Join(dir, "token"), filepath.Join(dir, "out"))
	logs := &syncBuffer{}
	cx, cancel := context.WithTimeout(context.Background(), 1600*time.Millisecond)
	defer cancel()
	if err := agent.Run(cx, agent.Options{ConfigHCL: []byte(cfg), Once: true, Logger: agentLogger(logs), MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}); err != nil {
		t.Fatalf("Run = %v, want nil when the context ends", err)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	var fails []string
	for _, l := range lines {
		if strings.Contains(l, "authentication failed, retrying") {
			fails = append(fails, l)
		}
	}
	if len(fails) < 3 || len(fails) > 6 {
		t.Fatalf("got %d retry lines in 1.6s with backoff 100ms doubling, want 3..6:\n%s", len(fails), logs.String())
	}
	for _, want := range []string{"backoff=100ms", "backoff=200ms", "backoff=400ms"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}
	if !strings.Contains(fails[0], "permission denied") && !strings.Contains(fails[0], "403") {
		t.Errorf("retry line does not say why: %s", fails[0])
	}
	if strings.Contains(logs.String(), bogus) {
		t.Error("the logs contain the token")
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a template was written without authentication")
	}
}

// TestAgentAppRole logs in with approle (role and secret ID files, the
// secret ID file removed after reading) and renders a template.
func TestAgentAppRole(t *testing.T) {
	p, root := startDev(t)
	cx := ctx(t)
	agentToken(t, root, map[string]any{"password": "approle-pass"})
	if err := root.Sys().EnableAuthWithOptionsWithContext(cx, "approle", &vault.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatalf("enable the approle auth method: %v", err)
	}
	if _, err := root.Logical().WriteWithContext(cx, "auth/approle/role/app", map[string]any{"token_policies": "agent-app"}); err != nil {
		t.Fatal(err)
	}
	rid, err := root.Logical().ReadWithContext(cx, "auth/approle/role/app/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid, err := root.Logical().WriteWithContext(cx, "auth/approle/role/app/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "role_id"), []byte(rid.Data["role_id"].(string)), 0o600)
	os.WriteFile(filepath.Join(dir, "secret_id"), []byte(sid.Data["secret_id"].(string)), 0o600)
	out := filepath.Join(dir, "pw")
	cfg := fmt.Sprintf(`
coffer { address = %q }
auto_auth {
  method "approle" { config = { role_id_file_path = %q, secret_id_file_path = %q } }
}
template {
  contents    = "{{ with secret \"secret/data/app\" }}{{ .Data.data.password }}{{ end }}"
  destination = %q
}
exit_after_auth = true
`, p.addr, filepath.Join(dir, "role_id"), filepath.Join(dir, "secret_id"), out)
	rcx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := agent.Run(rcx, agent.Options{ConfigHCL: []byte(cfg)}); err != nil || rcx.Err() != nil {
		t.Fatalf("Run = %v (ctx %v)", err, rcx.Err())
	}
	if b, _ := os.ReadFile(out); string(b) != "approle-pass" {
		t.Errorf("file = %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "secret_id")); !errors.Is(err, os.ErrNotExist) {
		t.Error("the secret_id file was not removed after reading")
	}
}
