// Package compat drives a real coffer process with the real clients: the
// official Vault Go client (github.com/hashicorp/vault/api), plain HTTP for
// bad input, and the coffer CLI binary. Nothing here is faked.
package compat

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// cofferBin is the binary under test, built once by TestMain.
var cofferBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "coffer-compat-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cofferBin = filepath.Join(dir, "coffer")
	build := exec.Command("go", "build", "-o", cofferBin, "github.com/coffer-dev/coffer/cmd/coffer")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build coffer:", err)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		code = scanServerLogs()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// secretValues are secret values the tests write; none may ever appear in
// a server's own output (logs), whatever the test did.
var secretValues = []string{
	"s3cret", "n3w", "p4tched", "hunter2", "canary-value-123", "CanaryValue7f3a9",
	"AuditCanary-0b7e51", "EventCanary", "before-backup", "after-backup",
	"first-pass", "second-pass", "once-pass", "approle-pass", "correct-horse",
	"a-password-never-shown", "pw-reload",
}

var (
	outputsMu sync.Mutex // guards following
	outputs   []*syncBuffer
	tokenRE   = regexp.MustCompile(`hvs\.[A-Za-z0-9]{20,}`)
)

// scanServerLogs checks, after the whole suite, that no server printed a
// secret value or a token. It returns the exit code.
func scanServerLogs() int {
	outputsMu.Lock()
	defer outputsMu.Unlock()
	bad := 0
	for _, o := range outputs {
		out := o.String()
		for _, v := range secretValues {
			if strings.Contains(out, v) {
				fmt.Fprintf(os.Stderr, "a server's log contains the secret value %q\n", v)
				bad++
			}
		}
		if tok := tokenRE.FindString(out); tok != "" {
			fmt.Fprintf(os.Stderr, "a server's log contains a token (%s…)\n", tok[:8])
			bad++
		}
	}
	fmt.Fprintf(os.Stderr, "scanned the logs of %d server processes for %d secret values and tokens: %d found\n", len(outputs), len(secretValues), bad)
	if bad > 0 {
		return 1
	}
	return 0
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running coffer server.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string // http://127.0.0.1:port
	dir    string // data directory (bolt file, config)
	out    *syncBuffer
	waited chan struct{}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServer starts coffer with a bolt store in dir (reused across
// restarts) and waits until it answers.
func startServer(t *testing.T, dir string, extraConfig string) *proc {
	t.Helper()
	addr := freeAddr(t)
	cfg := fmt.Sprintf(`
storage "bolt" {
  path = %q
}
listener "tcp" {
  address     = %q
  tls_disable = true
}
log_level = "warn"
%s
`, filepath.Join(dir, "coffer.db"), addr, extraConfig)
	cfgPath := filepath.Join(dir, "coffer.hcl")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return startProc(t, dir, addr, "server", "--config", cfgPath)
}

// startDev starts `coffer server --dev` with root token "root".
func startDev(t *testing.T) (*proc, *vault.Client) {
	t.Helper()
	addr := freeAddr(t)
	p := startProc(t, t.TempDir(), addr, "server", "--dev", "--dev-root-token-id=root", "--dev-listen-address="+addr)
	return p, p.client(t, "root")
}

func startProc(t *testing.T, dir, addr string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, addr: "http://" + addr, dir: dir, out: &syncBuffer{}, waited: make(chan struct{})}
	outputsMu.Lock()
	outputs = append(outputs, p.out)
	outputsMu.Unlock()
	p.cmd = exec.Command(cofferBin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = append(os.Environ(), "COFFER_ADDR=", "VAULT_ADDR=")
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.waited) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("coffer output:\n%s", p.out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.addr + "/v1/sys/seal-status")
		if err == nil {
			resp.Body.Close()
			return p
		}
		select {
		case <-p.waited:
			t.Fatalf("coffer exited early:\n%s", p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("coffer did not start within 30s:\n%s", p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a graceful exit.
func (p *proc) stop() {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.waited:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("coffer did not stop within 30s of SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Errorf("coffer exited with %d after SIGTERM:\n%s", code, p.out.String())
	}
}

// kill sends SIGKILL: no chance to flush anything.
func (p *proc) kill() {
	select {
	case <-p.waited:
		return
	default:
	}
	p.cmd.Process.Kill()
	<-p.waited
}

func (p *proc) client(t *testing.T, token string) *vault.Client {
	t.Helper()
	cfg := vault.DefaultConfig()
	cfg.Address = p.addr
	cfg.MaxRetries = 0
	c, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

// initUnseal initializes a new server with a 3-of-5 split, unseals it and
// returns the keys and root token.
func initUnseal(t *testing.T, p *proc) ([]string, string) {
	t.Helper()
	c := p.client(t, "")
	res, err := c.Sys().Init(&vault.InitRequest{SecretShares: 5, SecretThreshold: 3})
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	unseal(t, p, res.Keys)
	return res.Keys, res.RootToken
}

func unseal(t *testing.T, p *proc, keys []string) {
	t.Helper()
	c := p.client(t, "")
	for i, k := range keys[:3] {
		st, err := c.Sys().Unseal(k)
		if err != nil {
			t.Fatalf("unseal with key %d: %v", i, err)
		}
		if i < 2 && (!st.Sealed || st.Progress != i+1) {
			t.Fatalf("after key %d: sealed=%v progress=%d", i, st.Sealed, st.Progress)
		}
		if i == 2 && st.Sealed {
			t.Fatalf("still sealed after 3 keys")
		}
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}
