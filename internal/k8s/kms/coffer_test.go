package kms

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
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/coffer-dev/coffer/api"
)

// cofferBin is the real coffer binary, built once by TestMain; the tests
// run it as `coffer server --dev`.
var cofferBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "coffer-kms-")
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
	os.RemoveAll(dir)
	os.Exit(code)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// devServer is a running `coffer server --dev` with root token "root",
// transit mounted at transit/ and the key transit/keys/k8s-etcd.
type devServer struct {
	addr   string
	root   *api.Client
	out    *lockedBuffer
	unseal string
}

func startDev(t testing.TB) *devServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hostport := l.Addr().String()
	l.Close()
	out := &lockedBuffer{}
	cmd := exec.Command(cofferBin, "server", "--dev", "--dev-root-token-id=root", "--dev-listen-address="+hostport)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "COFFER_ADDR=", "VAULT_ADDR=")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("coffer output:\n%s", out.String())
		}
	})
	s := &devServer{addr: "http://" + hostport, out: out}
	s.root, err = api.NewClient(api.Config{Address: s.addr, Token: "root"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st, err := s.root.SealStatus(context.Background()); err == nil && !st.Sealed {
			break
		}
		select {
		case <-done:
			t.Fatalf("coffer exited early:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("coffer did not start within 30s:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if m := regexp.MustCompile(`Unseal Key: (\S+)`).FindStringSubmatch(out.String()); m != nil {
		s.unseal = m[1]
	}
	s.write(t, "sys/mounts/transit", map[string]any{"type": "transit"})
	s.write(t, "transit/keys/k8s-etcd", map[string]any{})
	return s
}

func (s *devServer) write(t testing.TB, path string, body map[string]any) *api.Response {
	t.Helper()
	r, err := s.root.Do(context.Background(), http.MethodPut, path, body)
	if err != nil {
		t.Fatalf("PUT %s: %v", path, err)
	}
	return r
}

// token creates a token with the given policy (written from hcl) and
// options.
func (s *devServer) token(t testing.TB, hcl string, opts map[string]any) string {
	t.Helper()
	s.write(t, "sys/policies/acl/kms-test", map[string]any{"policy": hcl})
	body := map[string]any{"policies": []string{"kms-test"}, "no_default_policy": true}
	for k, v := range opts {
		body[k] = v
	}
	r := s.write(t, "auth/token/create", body)
	return r.Auth.ClientToken
}

// kmsPolicy is the least privilege the plugin needs.
const kmsPolicy = `
path "transit/keys/k8s-etcd" { capabilities = ["read"] }
path "transit/encrypt/k8s-etcd" { capabilities = ["update"] }
path "transit/decrypt/k8s-etcd" { capabilities = ["update"] }
`

// serve runs a plugin for cfg on a socket in a temporary directory and
// returns a gRPC client connected to it.
func serve(t testing.TB, cfg Config) (kmsapi.KeyManagementServiceClient, *Plugin) {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(shortTempDir(t), "kms.sock")
	l, _, err := listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(p)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return kmsapi.NewKeyManagementServiceClient(conn), p
}

// shortTempDir returns a temporary directory with a short path: a unix
// socket path must fit in 108 bytes.
func shortTempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "kms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func (s *devServer) client(t testing.TB) *api.Client {
	t.Helper()
	c, err := api.NewClient(api.Config{Address: s.addr})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startDevAddrClosed returns a client for a local address where nothing
// listens.
func startDevAddrClosed(t testing.TB) *api.Client {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := api.NewClient(api.Config{Address: "http://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitNextSecond sleeps until the wall clock enters a new second.
func waitNextSecond() {
	now := time.Now()
	time.Sleep(now.Truncate(time.Second).Add(time.Second + 10*time.Millisecond).Sub(now))
}
