// Package server wires a Coffer server together from its configuration:
// storage, the core with its engines, the HTTP API on each listener, and a
// graceful shutdown. cmd/coffer calls Run; tests call it too, through the
// real binary.
package server

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/coffer-dev/coffer/internal/audit"
	"github.com/coffer-dev/coffer/internal/auth/approle"
	"github.com/coffer-dev/coffer/internal/auth/jwt"
	"github.com/coffer-dev/coffer/internal/auth/kubernetes"
	"github.com/coffer-dev/coffer/internal/auth/userpass"
	"github.com/coffer-dev/coffer/internal/config"
	"github.com/coffer-dev/coffer/internal/core"
	"github.com/coffer-dev/coffer/internal/engine/cubbyhole"
	"github.com/coffer-dev/coffer/internal/engine/database"
	"github.com/coffer-dev/coffer/internal/engine/kv"
	"github.com/coffer-dev/coffer/internal/engine/transit"
	"github.com/coffer-dev/coffer/internal/httpapi"
	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/seal"
	"github.com/coffer-dev/coffer/internal/seal/transitseal"
	"github.com/coffer-dev/coffer/internal/storage"
	"github.com/coffer-dev/coffer/internal/storage/bolt"
	"github.com/coffer-dev/coffer/internal/storage/inmem"
	"github.com/coffer-dev/coffer/internal/version"
)

// Options are the server command's flags.
type Options struct {
	// ConfigPath is the HCL config file; required unless Dev.
	ConfigPath string
	// Dev runs an in-memory, unsealed server with a known root token and
	// KV v2 at secret/ — for trying things out, never for real secrets.
	Dev              bool
	DevRootTokenID   string // "" means a random one
	DevListenAddress string // "" means 127.0.0.1:8200
	// Stdout receives the dev banner; Stderr the logs.
	Stdout, Stderr io.Writer
	// ShutdownTimeout bounds the graceful shutdown; 0: 30s.
	ShutdownTimeout time.Duration
}

// Engines are the secrets engines a server can mount, by type.
func Engines() map[string]logical.Factory {
	return map[string]logical.Factory{
		"kv":        kv.Factory,
		"cubbyhole": cubbyhole.Factory,
		"transit":   transit.Factory,
		"database":  database.Factory,
	}
}

// Run runs the server until ctx is done, then shuts down gracefully: it
// stops accepting connections, lets requests in flight finish, seals, and
// closes storage. Every write acknowledged before that is durable.
func Run(ctx context.Context, opts Options) error {
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 30 * time.Second
	}
	cfg, err := loadConfig(opts)
	if err != nil {
		return err
	}
	logger := newLogger(opts.Stderr, cfg.LogLevel, cfg.LogFormat)
	for _, w := range cfg.Warnings {
		logger.Warn("config: " + w)
	}

	backend, ha, err := openBackend(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer backend.Close()

	devices, err := auditDevices(cfg.Audits)
	if err != nil {
		return err
	}
	protector, migrateFrom, err := sealFromConfig(cfg.Seals)
	if err != nil {
		return err
	}
	c, err := core.New(core.Config{
		Backend:           backend,
		Engines:           Engines(),
		AuthMethods:       AuthMethods(),
		StorageType:       cfg.Storage.Type,
		ClusterName:       cfg.ClusterName,
		Logger:            logger,
		AuditDevices:      devices,
		AuditAllowedDirs:  cfg.AuditAllowedDirs,
		AuditAllowAnyPath: opts.Dev,
		SealProtector:     protector,
		DeclarativeConfig: cfg.DeclarativeConfig,
		SealMigrateFrom:   migrateFrom,
		Cluster:           coreCluster(ha),
	})
	if err != nil {
		return err
	}
	if _, auto := protector.(seal.Wrapper); auto {
		go autoUnsealLoop(ctx, c, logger)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := c.ReopenAudit(context.Background()); err != nil {
				logger.Warn("reopen audit devices", "err", err)
			} else {
				logger.Info("audit devices reopened")
			}
		}
	}()
	defer c.Close()

	if opts.Dev {
		if err := devSetup(ctx, c, opts); err != nil {
			return err
		}
	}

	errc := make(chan error, len(cfg.Listeners))
	var servers []*http.Server
	for _, l := range cfg.Listeners {
		srv, ln, err := listen(l, c, apiCluster(ha), logger)
		if err != nil {
			for _, s := range servers {
				s.Close()
			}
			return err
		}
		servers = append(servers, srv)
		logger.Info("listening", "address", ln.Addr().String(), "tls", !l.TLSDisable)
		go func() {
			var err error
			if l.TLSDisable {
				err = srv.Serve(ln)
			} else {
				err = srv.ServeTLS(ln, "", "")
			}
			if !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	startPprof(logger)
	logger.Info("coffer server started", "version", version.Version, "storage", cfg.Storage.Type)

	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err := <-errc:
		logger.Error("listener failed", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), opts.ShutdownTimeout)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			logger.Warn("shutdown", "err", err)
		}
	}
	return nil
}

// sealFromConfig reads the seal blocks: at most one active seal, and at
// most one marked disabled = true (the seal being migrated away from).
func sealFromConfig(blocks []config.Block) (active seal.Protector, from seal.Wrapper, err error) {
	active = seal.Shamir{}
	var actives, froms int
	for _, b := range blocks {
		if len(b.Labels) != 1 {
			return nil, nil, errors.New("server: a seal block needs one label, its type: seal \"transit\" { ... }")
		}
		var w seal.Wrapper
		switch b.Labels[0] {
		case "shamir":
			continue
		case "static":
			sc, err := seal.StaticConfigFromBlock(b.Attributes)
			if err != nil {
				return nil, nil, err
			}
			if w, err = seal.NewStatic(sc); err != nil {
				return nil, nil, err
			}
		case "transit":
			tc, err := transitseal.ConfigFromBlock(b.Attributes)
			if err != nil {
				return nil, nil, err
			}
			if w, err = transitseal.New(tc); err != nil {
				return nil, nil, err
			}
		default:
			return nil, nil, fmt.Errorf("server: seal %q is not supported: use \"transit\" or \"static\"", b.Labels[0])
		}
		if d := b.Attributes["disabled"]; d == true || d == "true" {
			from = w
			froms++
		} else {
			active = w
			actives++
		}
	}
	if actives > 1 || froms > 1 {
		return nil, nil, errors.New("server: at most one active seal block and one disabled (migration) seal block")
	}
	return active, from, nil
}

// autoUnsealLoop unseals an auto-unseal server at start and keeps trying,
// with back-off, while the seal key is unreachable or before init. A
// server sealed on purpose afterwards stays sealed until restart.
func autoUnsealLoop(ctx context.Context, c *core.Core, logger *slog.Logger) {
	wait := time.Second
	for {
		err := c.AutoUnseal(ctx)
		switch {
		case err == nil:
			return
		case errors.Is(err, seal.ErrNotInitialized):
			wait = time.Second
		default:
			logger.Warn("auto-unseal failed; the server stays sealed", "err", err)
			wait = min(wait*2, 30*time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// AuthMethods are the auth methods a server can mount under auth/, by type.
func AuthMethods() map[string]logical.Factory {
	return map[string]logical.Factory{
		"kubernetes": kubernetes.Factory,
		"approle":    approle.Factory,
		"userpass":   userpass.Factory,
		"jwt":        jwt.Factory,
		"oidc":       jwt.Factory,
	}
}

// auditDevices turns the config's audit "<type>" "<name>" blocks into
// devices the core enables at every unseal.
func auditDevices(blocks []config.Block) ([]core.AuditDevice, error) {
	var out []core.AuditDevice
	for _, b := range blocks {
		if len(b.Labels) != 2 {
			return nil, fmt.Errorf("server: an audit block needs two labels, its type and its path: audit \"file\" \"file/\" { ... }")
		}
		d := core.AuditDevice{Name: strings.Trim(b.Labels[1], "/"), Config: audit.DeviceConfig{Type: b.Labels[0], Options: map[string]string{}}}
		for k, v := range b.Attributes {
			switch k {
			case "description":
				s, ok := v.(string)
				if !ok {
					return nil, fmt.Errorf("server: audit %q: description must be a string", d.Name)
				}
				d.Config.Description = s
			case "local":
				bv, _ := v.(bool)
				d.Config.Local = bv
			case "options":
				m, ok := v.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("server: audit %q: options must be a map", d.Name)
				}
				for ok, ov := range m {
					d.Config.Options[ok] = fmt.Sprint(ov)
				}
			default:
				return nil, fmt.Errorf("server: audit %q: unknown setting %q", d.Name, k)
			}
		}
		out = append(out, d)
	}
	return out, nil
}

func loadConfig(opts Options) (*config.Config, error) {
	if opts.Dev {
		addr := opts.DevListenAddress
		if addr == "" {
			addr = "127.0.0.1:8200"
		}
		return &config.Config{
			Storage:   config.Storage{Type: "inmem"},
			Listeners: []config.Listener{{Type: "tcp", Address: addr, TLSDisable: true}},
			LogLevel:  "info",
		}, nil
	}
	if opts.ConfigPath == "" {
		return nil, errors.New("server: --config is required (or --dev for an in-memory dev server)")
	}
	return config.ParseFile(opts.ConfigPath)
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "trace", "debug":
		l = slog.LevelDebug
	case "warn", "warning":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	hopts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, hopts))
	}
	return slog.New(slog.NewTextHandler(w, hopts))
}

func openStorage(s config.Storage, logger *slog.Logger) (storage.Backend, error) {
	switch s.Type {
	case "inmem":
		return inmem.New(), nil
	case "bolt":
		path := s.Options["path"]
		if path == "" {
			return nil, errors.New("server: storage \"bolt\" needs a path, e.g. path = \"/var/lib/coffer/coffer.db\"")
		}
		return bolt.Open(bolt.Config{Path: path, Logger: logger.With("component", "bolt")})
	}
	return nil, fmt.Errorf("server: unsupported storage type %q: use \"bolt\" (or \"inmem\" for tests)", s.Type)
}

func listen(l config.Listener, c *core.Core, hc httpapi.Cluster, logger *slog.Logger) (*http.Server, net.Listener, error) {
	ln, err := net.Listen("tcp", l.Address)
	if err != nil {
		return nil, nil, fmt.Errorf("server: listen on %s: %w", l.Address, err)
	}
	srv := &http.Server{
		Handler: httpapi.Handler(httpapi.Config{
			Core:           c,
			MaxRequestSize: l.MaxRequestSize,
			Logger:         logger.With("component", "http"),
			Cluster:        hc,
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	if !l.TLSDisable {
		cert, err := tls.LoadX509KeyPair(l.TLSCertFile, l.TLSKeyFile)
		if err != nil {
			ln.Close()
			return nil, nil, fmt.Errorf("server: load TLS certificate: %w", err)
		}
		min := uint16(tls.VersionTLS12)
		if l.TLSMinVersion == "tls13" {
			min = tls.VersionTLS13
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: min}
	}
	return srv, ln, nil
}

// devSetup initializes and unseals an in-memory dev server, mounts KV v2
// at secret/, and prints the root token and unseal key.
func devSetup(ctx context.Context, c *core.Core, opts Options) error {
	res, err := c.Init(ctx, core.InitRequest{SecretShares: 1, SecretThreshold: 1, RootTokenID: opts.DevRootTokenID})
	if err != nil {
		return fmt.Errorf("server: dev init: %w", err)
	}
	if _, err := c.Unseal(ctx, res.Keys[0]); err != nil {
		return fmt.Errorf("server: dev unseal: %w", err)
	}
	_, err = c.HandleRequest(ctx, &logical.Request{
		Operation:   logical.UpdateOperation,
		Path:        "sys/mounts/secret",
		Body:        []byte(`{"type":"kv","description":"key/value secret storage","options":{"version":"2"}}`),
		ClientToken: res.RootToken,
	})
	if err != nil {
		return fmt.Errorf("server: dev mount secret/: %w", err)
	}
	addr := opts.DevListenAddress
	if addr == "" {
		addr = "127.0.0.1:8200"
	}
	fmt.Fprintf(opts.Stdout, `WARNING! dev mode is enabled! Everything is in memory and the server is unsealed.

You may need to set the following environment variables:

    export COFFER_ADDR='http://%s'

The unseal key and root token are displayed below in case you want to
seal/unseal the server or re-authenticate.

Unseal Key: %s
Root Token: %s

Development mode should NOT be used in production installations!
`, addr, base64.StdEncoding.EncodeToString(res.Keys[0]), res.RootToken)
	return nil
}
