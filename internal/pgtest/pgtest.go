// Package pgtest starts a throwaway PostgreSQL server for tests: a fresh
// cluster (initdb) in a private temporary directory, a postmaster listening
// on 127.0.0.1 at a free port and on a Unix socket in that directory, and a
// superuser role with a random password for the code under test to use.
//
// Nothing is faked: the binaries are the distribution's (hack/postgres.sh
// installs them and prints their directory; set COFFER_PG_BIN to it). When
// they are missing, Start fails with a message saying how to install them;
// it never skips.
//
// TCP logins need a password (scram-sha-256), so a test can check that a
// wrong or rotated password is refused; the Unix socket trusts the
// bootstrap user "postgres", which Admin uses for set-up and inspection.
//
// Typical use is one server per test package:
//
//	var pg *pgtest.Server
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &pg)) }
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoBinaries is returned by Start when initdb and postgres cannot be
// found.
var ErrNoBinaries = errors.New("pgtest: PostgreSQL server binaries (initdb, postgres) not found: " +
	"run hack/postgres.sh (it runs apt-get install -y postgresql) and export COFFER_PG_BIN=$(hack/postgres.sh)")

// Config configures Start.
type Config struct {
	// BinDir holds initdb and postgres. "": $COFFER_PG_BIN, else the newest
	// /usr/lib/postgresql/*/bin, else $PATH.
	BinDir string
	// StartTimeout bounds initdb plus the server's start. 0: 60s.
	StartTimeout time.Duration
}

// Server is a running throwaway PostgreSQL. Its methods are safe for
// concurrent use.
type Server struct {
	// Host and Port are where it listens for TCP (127.0.0.1).
	Host string
	Port int
	// Dir is the data directory, which also holds the Unix socket.
	Dir string
	// SuperUser and SuperPassword name a superuser role that logs in over
	// TCP with a password.
	SuperUser     string
	SuperPassword string

	cmd    *exec.Cmd
	out    *syncBuffer
	waited chan struct{}

	stopOnce sync.Once
	stopErr  error
}

// Start initializes a cluster in a new temporary directory and starts a
// server on it. It returns ErrNoBinaries (wrapped) when PostgreSQL is not
// installed. When running as root, initdb and postgres run as the
// "postgres" system user (PostgreSQL refuses to run as root), which then
// owns the directory. The caller must call Stop.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	bin, err := findBin(cfg.BinDir)
	if err != nil {
		return nil, err
	}
	timeout := cfg.StartTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	cred, err := dropRoot(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}

	initdb := []string{filepath.Join(bin, "initdb"), "-D", dir, "-U", "postgres",
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync"}
	if cred != nil {
		initdb = append([]string{"runuser", "-u", "postgres", "--"}, initdb...)
	}
	c := exec.CommandContext(ctx, initdb[0], initdb[1:]...)
	if out, err := c.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}

	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{Host: "127.0.0.1", Port: port, Dir: dir, SuperUser: "coffer_root", out: &syncBuffer{}, waited: make(chan struct{})}
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", dir, "-k", dir, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=200")
	// The postmaster runs as the postgres user directly (not through
	// runuser) so that Stop's signal reaches it, and it dies with us.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGINT}
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: start postgres: %w", err)
	}
	go func() { s.cmd.Wait(); close(s.waited) }()

	if err := s.waitReady(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	pw, err := s.CreateSuperuser(ctx, s.SuperUser)
	if err != nil {
		s.Stop()
		return nil, err
	}
	s.SuperPassword = pw
	return s, nil
}

// Main is TestMain's body for a package that shares one server: it starts
// the server into *dst, runs the tests and stops it. It returns the exit
// code; a server that cannot start fails the package with the reason.
func Main(m *testing.M, dst **Server) int {
	s, err := Start(context.Background(), Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*dst = s
	code := m.Run()
	if err := s.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// findBin returns the directory holding initdb and postgres.
func findBin(dir string) (string, error) {
	ok := func(d string) bool {
		for _, name := range []string{"initdb", "postgres"} {
			if fi, err := os.Stat(filepath.Join(d, name)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if dir != "" {
		if ok(dir) {
			return dir, nil
		}
		return "", fmt.Errorf("%w (looked in %s)", ErrNoBinaries, dir)
	}
	if d := os.Getenv("COFFER_PG_BIN"); d != "" {
		if ok(d) {
			return d, nil
		}
		return "", fmt.Errorf("%w (COFFER_PG_BIN=%s has no initdb/postgres)", ErrNoBinaries, d)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if ok(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && ok(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	return "", ErrNoBinaries
}

// versionOf returns the major version in /usr/lib/postgresql/<v>/bin.
func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

// dropRoot prepares dir for the postgres system user when running as root
// and returns the credential to run the server with; nil when not root.
func dropRoot(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root needs the postgres system user (created by apt-get install -y postgresql): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, fmt.Errorf("pgtest: chown data directory: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls the Unix socket until the server accepts connections.
func (s *Server) waitReady(ctx context.Context) error {
	for {
		c, err := s.Admin(ctx)
		if err == nil {
			c.Close(ctx)
			return nil
		}
		select {
		case <-s.waited:
			return fmt.Errorf("pgtest: postgres exited during start:\n%s", s.out.String())
		case <-ctx.Done():
			return fmt.Errorf("pgtest: postgres did not accept connections in time: %v\n%s", err, s.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Admin connects to database "postgres" as the bootstrap superuser over the
// Unix socket (trusted). The caller closes the connection.
func (s *Server) Admin(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", s.Dir, s.Port))
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgtest: connect as postgres: %w", err)
	}
	return c, nil
}

// Exec runs sql (one or more statements, no parameters) as the bootstrap
// superuser.
func (s *Server) Exec(ctx context.Context, sql string) error {
	c, err := s.Admin(ctx)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql); err != nil {
		return fmt.Errorf("pgtest: exec: %w", err)
	}
	return nil
}

// CreateSuperuser creates a superuser role name that logs in over TCP and
// returns its random password.
func (s *Server) CreateSuperuser(ctx context.Context, name string) (string, error) {
	pw := Password()
	if err := s.Exec(ctx, fmt.Sprintf(`CREATE ROLE %s WITH SUPERUSER LOGIN PASSWORD '%s'`, pgx.Identifier{name}.Sanitize(), pw)); err != nil {
		return "", fmt.Errorf("pgtest: create superuser %q: %w", name, err)
	}
	return pw, nil
}

// URL returns a postgres:// URL for user and password to database "postgres"
// over TCP.
func (s *Server) URL(user, password string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password),
		Host: net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), Path: "/postgres", RawQuery: "sslmode=disable"}
	return u.String()
}

// TemplateURL returns the connection URL with Vault's {{username}} and
// {{password}} placeholders, as written to a database engine's config.
func (s *Server) TemplateURL() string {
	return fmt.Sprintf("postgresql://{{username}}:{{password}}@%s/postgres?sslmode=disable",
		net.JoinHostPort(s.Host, strconv.Itoa(s.Port)))
}

// Connect logs in over TCP as user with password.
func (s *Server) Connect(ctx context.Context, user, password string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, s.URL(user, password))
}

// RoleExists reports whether a role named name exists (pg_roles).
func (s *Server) RoleExists(ctx context.Context, name string) (bool, error) {
	c, err := s.Admin(ctx)
	if err != nil {
		return false, err
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE rolname = $1`, name).Scan(&n); err != nil {
		return false, fmt.Errorf("pgtest: query pg_roles: %w", err)
	}
	return n > 0, nil
}

// Stop shuts the server down (fast shutdown: open sessions are
// disconnected) and removes its directory. It is idempotent.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.waited:
		case <-time.After(30 * time.Second):
			s.cmd.Process.Kill()
			<-s.waited
			s.stopErr = fmt.Errorf("pgtest: postgres did not stop within 30s of SIGINT")
		}
		if err := os.RemoveAll(s.Dir); err != nil && s.stopErr == nil {
			s.stopErr = fmt.Errorf("pgtest: remove data directory: %w", err)
		}
	})
	return s.stopErr
}

// Password returns a random 24-character alphanumeric password.
func Password() string {
	return rand.Text()[:24]
}

// Log returns what the server wrote to stdout and stderr so far.
func (s *Server) Log() string { return s.out.String() }

// syncBuffer is a bytes.Buffer safe for the process's writes and reads.
type syncBuffer struct {
	mu sync.Mutex // guards following
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Clone(b.b.String())
}
