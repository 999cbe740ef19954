package kms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	kmsapi "k8s.io/kms/apis/v2"
	"k8s.io/kms/pkg/service"

	"github.com/coffer-dev/coffer/api"
)

// DefaultListen is the socket used when Options.Listen is empty.
const DefaultListen = "unix:///var/run/kms/coffer.sock"

// Options configure Run; each field is one flag of `coffer kms-plugin`.
type Options struct {
	// Listen (--listen) is the socket: "unix:///path", a plain path, or
	// "unix:///@name" for an abstract socket. "": DefaultListen.
	Listen string
	// KeyPath (--key) is the transit key, "<mount>/keys/<name>".
	// "": DefaultKeyPath.
	KeyPath string
	// Address (--address) is Coffer's URL. "": COFFER_ADDR, else
	// VAULT_ADDR, else api.DefaultAddress.
	Address string
	// Token (--token) is a fixed token. "": COFFER_TOKEN, else
	// VAULT_TOKEN, unless TokenFile or AppRole is set.
	Token string
	// TokenFile (--token-file) holds the token; it is re-read when Coffer
	// refuses the current one (so a rotated file is picked up).
	TokenFile string
	// AppRole (--approle-role-id-file, --approle-secret-id-file,
	// --approle-mount) logs in with AppRole and logs in again before the
	// token's max TTL.
	AppRole AppRole
	// CACert (--ca-cert) is a PEM file of CAs for Coffer's certificate.
	// "": COFFER_CACERT, else VAULT_CACERT, else the system pool.
	CACert string
	// CacheSize (--cache-size) and CacheTTL (--cache-ttl) bound the
	// in-memory seed cache; see Config. 0: 1024 entries, 5 minutes.
	CacheSize int
	CacheTTL  time.Duration
	// Logger receives the logs. nil: discard.
	Logger *slog.Logger
	// Getenv reads the environment. nil: os.Getenv.
	Getenv func(string) string
}

// Run serves the KMS v2 plugin on its unix socket until ctx is done, then
// stops gracefully, removes the socket and returns nil. It fails at once
// on bad options or when the socket cannot be created; Coffer being
// unreachable or sealed is not a failure (Status reports it). The socket
// is created with mode 0600: only its owner (the API server runs as root
// in a static-pod control plane) may connect.
func Run(ctx context.Context, opts Options) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	env, err := api.ConfigFromEnv(getenv, "")
	if err != nil {
		return fmt.Errorf("kms: %w", err)
	}
	cfg := api.Config{Address: opts.Address, CACert: opts.CACert}
	if cfg.Address == "" {
		cfg.Address = env.Address
	}
	if cfg.CACert == "" {
		cfg.CACert = env.CACert
	}
	cfg.TLSSkipVerify = env.TLSSkipVerify
	client, err := api.NewClient(cfg)
	if err != nil {
		return fmt.Errorf("kms: %w", err)
	}
	token := opts.Token
	if token == "" && opts.TokenFile == "" && opts.AppRole.RoleIDFile == "" {
		token = env.Token
	}
	p, err := New(Config{
		Client: client, KeyPath: opts.KeyPath, Token: token, TokenFile: opts.TokenFile, AppRole: opts.AppRole,
		CacheSize: opts.CacheSize, CacheTTL: opts.CacheTTL, Logger: opts.Logger,
	})
	if err != nil {
		return err
	}
	l, sock, err := listen(opts.Listen)
	if err != nil {
		return err
	}
	if sock != "" {
		defer os.Remove(sock)
	}
	srv := NewServer(p)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	renewed := make(chan struct{})
	go func() { defer close(renewed); p.RenewToken(ctx, 0) }()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	opts.Logger.Info("kms plugin listening", "socket", l.Addr().String(), "key", p.path, "address", client.Address())
	select {
	case err = <-errc:
		err = fmt.Errorf("kms: serve: %w", err)
	case <-ctx.Done():
		srv.GracefulStop()
		err = nil
	}
	cancel()
	<-renewed
	return err
}

// NewServer returns a gRPC server with p registered as the KMS v2
// KeyManagementService (through k8s.io/kms/pkg/service).
func NewServer(p *Plugin) *grpc.Server {
	s := grpc.NewServer()
	kmsapi.RegisterKeyManagementServiceServer(s, service.NewGRPCService("", 0, p))
	return s
}

// listen opens the unix socket named by endpoint, removing a stale socket
// file first. sock is the file to remove on exit ("" for an abstract
// socket).
func listen(endpoint string) (l net.Listener, sock string, err error) {
	if endpoint == "" {
		endpoint = DefaultListen
	}
	path := endpoint
	if rest, ok := strings.CutPrefix(endpoint, "unix://"); ok {
		path = rest
	} else if strings.Contains(endpoint, "://") {
		return nil, "", fmt.Errorf("kms: listen address %q: only unix:// sockets are supported", endpoint)
	}
	if path == "" {
		return nil, "", fmt.Errorf("kms: listen address %q has no path", endpoint)
	}
	if strings.HasPrefix(path, "/@") {
		l, err := net.Listen("unix", path[1:])
		if err != nil {
			return nil, "", fmt.Errorf("kms: listen: %w", err)
		}
		return l, "", nil
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, "", fmt.Errorf("kms: %s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, "", fmt.Errorf("kms: remove stale socket: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("kms: %w", err)
	}
	l, err = net.Listen("unix", path)
	if err != nil {
		return nil, "", fmt.Errorf("kms: listen: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, "", fmt.Errorf("kms: chmod socket: %w", err)
	}
	return l, path, nil
}
