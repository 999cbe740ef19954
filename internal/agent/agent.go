package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/template"
	"time"

	"github.com/coffer-dev/coffer/api"
)

// ConfigEnv names the environment variable holding a base64-encoded HCL
// configuration, read when Options.ConfigPath and ConfigHCL are empty:
// the injector passes the agent's configuration this way.
const ConfigEnv = "COFFER_AGENT_CONFIG"

// Options configure Run. The zero value reads the configuration from
// ConfigEnv and runs until the context is cancelled.
type Options struct {
	// ConfigPath is the HCL configuration file (--config).
	ConfigPath string
	// ConfigHCL is the configuration itself, used when ConfigPath is "".
	// When both are empty the configuration comes from ConfigEnv.
	ConfigHCL []byte
	// Once renders every template once and returns (--once), for init
	// containers; so does exit_after_auth in the configuration.
	Once bool
	// SignalPIDFile names a file holding the pid of a process to signal
	// after a template changes (--signal-pid-file). "": none.
	SignalPIDFile string
	// Signal is sent to that process. nil: SIGHUP.
	Signal os.Signal
	// HealthAddr serves /agent/v1/health (--health-addr); it overrides the
	// configuration's listener. "": the listener's address, else none.
	HealthAddr string
	// Logger receives the agent's logs. nil: discard.
	Logger *slog.Logger
	// Getenv reads the environment (template env, COFFER_ADDR...). nil:
	// os.Getenv.
	Getenv func(string) string
	// Now is the clock. nil: time.Now.
	Now func() time.Time
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// failed attempts (authentication, rendering, the event stream).
	// 0: 1s and 5m.
	MinBackoff, MaxBackoff time.Duration
	// OnceAttempts is how many times --once tries to render before
	// giving up. 0: 8.
	OnceAttempts int
	// Events delivers change events. nil: the server's WebSocket stream.
	Events EventSource
	// HealthListener, when set, is used instead of listening on
	// HealthAddr (tests pass one bound to port 0). Run closes it.
	HealthListener net.Listener
}

// Run runs the agent until ctx is done (it then returns nil) or, with
// Once or exit_after_auth, until every template has been written once.
// It returns an error wrapping ErrConfig for a bad configuration, and
// the last failure when --once gives up. Authentication failures are
// retried with exponential backoff and logged with their reason; no
// token or secret value is ever logged.
func Run(ctx context.Context, opts Options) error {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Minute
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = opts.MinBackoff
	}
	if opts.OnceAttempts <= 0 {
		opts.OnceAttempts = 8
	}
	if opts.Signal == nil {
		opts.Signal = syscall.SIGHUP
	}
	cfg, err := loadConfig(opts)
	if err != nil {
		return err
	}
	r, err := newRunner(cfg, opts)
	if err != nil {
		return err
	}
	return r.run(ctx)
}

func loadConfig(opts Options) (*Config, error) {
	switch {
	case opts.ConfigPath != "":
		return ParseConfigFile(opts.ConfigPath)
	case len(opts.ConfigHCL) > 0:
		return ParseConfig(opts.ConfigHCL, "config")
	}
	enc := opts.Getenv(ConfigEnv)
	if enc == "" {
		return nil, fmt.Errorf("%w: no configuration: pass --config or set %s", ErrConfig, ConfigEnv)
	}
	src, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not base64", ErrConfig, ConfigEnv)
	}
	return ParseConfig(src, ConfigEnv)
}

// entry is a cached secret.
type entry struct {
	secret    *Secret
	leased    bool
	stale     bool      // re-read at the next render
	due       time.Time // leased: when to renew or re-fetch
	increment int       // leased: the first lease duration, asked again on renewal
	capped    bool      // leased: renewal no longer extends the lease; re-fetch at due
}

type tmpl struct {
	cfg  Template
	t    *template.Template
	deps map[string]bool
}

type runner struct {
	cfg    *Config
	opts   Options
	log    *slog.Logger
	base   *api.Client
	hc     *http.Client
	events chan Event

	token     atomic.Pointer[string]
	tokenDue  time.Time // renew or re-authenticate at
	tokenTTL  time.Duration
	renewable bool

	cache     map[string]*entry
	templates []*tmpl
	rendered  bool // every template rendered once

	health struct {
		mu        sync.Mutex // guards following
		authed    bool
		rendered  bool
		lastError string
	}
}

func newRunner(cfg *Config, opts Options) (*runner, error) {
	addr := cfg.Address
	if addr == "" {
		addr = opts.Getenv("COFFER_ADDR")
	}
	if addr == "" {
		addr = opts.Getenv("VAULT_ADDR")
	}
	if addr == "" {
		addr = api.DefaultAddress
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.TLSSkipVerify}
	if cfg.CACert != "" {
		pem, err := os.ReadFile(cfg.CACert)
		if err != nil {
			return nil, fmt.Errorf("%w: ca_cert: %v", ErrConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: ca_cert %s holds no certificate", ErrConfig, cfg.CACert)
		}
		tlsCfg.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	// HTTP/1.1 only: the event stream is a WebSocket upgrade.
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	hc := &http.Client{Transport: tr}
	base, err := api.NewClient(api.Config{Address: addr, HTTPClient: hc})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	r := &runner{cfg: cfg, opts: opts, log: opts.Logger, base: base, hc: hc, cache: map[string]*entry{}, events: make(chan Event, 16)}
	if r.opts.Events == nil {
		r.opts.Events = WebSocketEvents{Address: addr, HTTPClient: hc}
	}
	for i, tc := range cfg.Templates {
		text := tc.Contents
		if tc.Source != "" {
			b, err := os.ReadFile(tc.Source)
			if err != nil {
				return nil, fmt.Errorf("%w: template %d: %v", ErrConfig, i+1, err)
			}
			text = string(b)
		}
		t, err := ParseTemplate(tc.Destination, text)
		if err != nil {
			return nil, fmt.Errorf("%w: template %d: %v", ErrConfig, i+1, err)
		}
		if tc.ErrorOnMissingKey {
			t.Option("missingkey=error")
		}
		r.templates = append(r.templates, &tmpl{cfg: tc, t: t})
	}
	return r, nil
}

func (r *runner) client() *api.Client {
	if p := r.token.Load(); p != nil {
		return r.base.WithToken(*p)
	}
	return r.base
}

func (r *runner) setHealth(f func()) {
	r.health.mu.Lock()
	defer r.health.mu.Unlock()
	f()
}

func (r *runner) backoff(n int) time.Duration {
	d := r.opts.MinBackoff
	for i := 0; i < n && d < r.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, r.opts.MaxBackoff)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (r *runner) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	if err := r.startHealth(ctx, &wg); err != nil {
		return err
	}
	if err := r.authLoop(ctx); err != nil {
		return nil // ctx done
	}
	once := r.opts.Once || r.cfg.ExitAfterAuth
	if once {
		var err error
		for attempt := 0; attempt < r.opts.OnceAttempts; attempt++ {
			if err = r.render(ctx); err == nil {
				r.log.Info("templates rendered; exiting (once)", "templates", len(r.templates))
				return nil
			}
			if ctx.Err() != nil {
				return nil
			}
			d := r.backoff(attempt)
			r.log.Warn("render failed, retrying", "error", err, "attempt", attempt+1, "backoff", d)
			r.afterFailure(ctx, err)
			if !sleep(ctx, d) {
				return nil
			}
		}
		return fmt.Errorf("agent: giving up after %d attempts: %w", r.opts.OnceAttempts, err)
	}

	wg.Add(1)
	go func() { defer wg.Done(); r.subscribe(ctx) }()

	interval := r.cfg.StaticInterval
	if interval <= 0 {
		interval = DefaultStaticInterval
	}
	nextPoll := r.opts.Now().Add(interval)
	failures := 0
	var retryAt time.Time
	if err := r.render(ctx); err != nil {
		failures++
		retryAt = r.opts.Now().Add(r.backoff(0))
		r.log.Warn("render failed, retrying", "error", err, "backoff", r.backoff(0))
		r.afterFailure(ctx, err)
	}
	for {
		next := nextPoll
		if !r.tokenDue.IsZero() && r.tokenDue.Before(next) {
			next = r.tokenDue
		}
		if !retryAt.IsZero() && retryAt.Before(next) {
			next = retryAt
		}
		for _, e := range r.cache {
			if e.leased && e.due.Before(next) {
				next = e.due
			}
		}
		timer := time.NewTimer(max(next.Sub(r.opts.Now()), 0))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case ev := <-r.events:
			timer.Stop()
			n := r.markChanged(ev)
			if n == 0 {
				continue
			}
			r.log.Info("change event", "type", ev.Type, "path", ev.Path, "secrets", n)
		case <-timer.C:
		}
		now := r.opts.Now()
		if !r.tokenDue.IsZero() && !now.Before(r.tokenDue) {
			r.renewToken(ctx)
		}
		for key, e := range r.cache {
			if e.leased && !now.Before(e.due) {
				r.renewLease(ctx, key, e)
			}
		}
		if !now.Before(nextPoll) {
			for _, e := range r.cache {
				if !e.leased {
					e.stale = true
				}
			}
			nextPoll = now.Add(interval)
		}
		if err := r.render(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			d := r.backoff(failures)
			failures++
			retryAt = r.opts.Now().Add(d)
			r.log.Warn("render failed, retrying", "error", err, "backoff", d)
			r.afterFailure(ctx, err)
			continue
		}
		failures, retryAt = 0, time.Time{}
	}
}

// afterFailure re-authenticates when err says the token was refused.
func (r *runner) afterFailure(ctx context.Context, err error) {
	if errors.Is(err, api.ErrPermissionDenied) && r.cfg.Method != nil {
		r.log.Info("permission denied: authenticating again")
		r.authLoop(ctx)
	}
}

// markChanged marks stale the cached secrets without a lease that ev
// concerns, and returns how many.
func (r *runner) markChanged(ev Event) int {
	n := 0
	want := normalizePath(ev.Path)
	for key, e := range r.cache {
		path, _, _ := strings.Cut(key, "\x00")
		if e.leased || (ev.Path != "" && normalizePath(path) != want) {
			continue
		}
		e.stale = true
		n++
	}
	return n
}

// subscribe keeps the event stream open, with backoff between attempts.
func (r *runner) subscribe(ctx context.Context) {
	for failures := 0; ; failures++ {
		tok := ""
		if p := r.token.Load(); p != nil {
			tok = *p
		}
		start := r.opts.Now()
		err := r.opts.Events.Subscribe(ctx, tok, r.events)
		if ctx.Err() != nil {
			return
		}
		if r.opts.Now().Sub(start) > time.Minute {
			failures = 0
		}
		d := r.backoff(failures)
		if errors.Is(err, ErrEventsUnsupported) {
			d = r.opts.MaxBackoff
			if failures == 0 {
				poll := r.cfg.StaticInterval
				if poll <= 0 {
					poll = DefaultStaticInterval
				}
				r.log.Info("the server has no event stream; polling only", "poll", poll)
			}
		} else {
			r.log.Warn("event stream failed, reconnecting", "error", err, "backoff", d)
		}
		if !sleep(ctx, d) {
			return
		}
	}
}

// authLoop authenticates until it succeeds or ctx is done (then it
// returns ctx.Err()). Without a method, the token comes from the
// environment.
func (r *runner) authLoop(ctx context.Context) error {
	if r.cfg.Method == nil {
		tok := r.opts.Getenv("COFFER_TOKEN")
		if tok == "" {
			tok = r.opts.Getenv("VAULT_TOKEN")
		}
		r.token.Store(&tok)
		r.setHealth(func() { r.health.authed = true })
		return nil
	}
	for attempt := 0; ; attempt++ {
		l, err := authenticate(ctx, r.base, r.cfg.Method)
		if err == nil {
			r.token.Store(&l.token)
			r.tokenTTL, r.renewable = l.ttl, l.renewable
			r.tokenDue = time.Time{}
			if l.ttl > 0 {
				r.tokenDue = r.opts.Now().Add(l.ttl * 2 / 3)
			}
			if err := writeSinks(r.cfg.Sinks, l.token); err != nil {
				r.log.Error("writing the token sink failed", "error", err)
			}
			r.setHealth(func() { r.health.authed, r.health.lastError = true, "" })
			r.log.Info("authenticated", "method", r.cfg.Method.Type, "ttl", l.ttl, "renewable", l.renewable)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d := r.backoff(attempt)
		r.setHealth(func() { r.health.authed, r.health.lastError = false, err.Error() })
		r.log.Warn("authentication failed, retrying", "method", r.cfg.Method.Type, "error", err, "attempt", attempt+1, "backoff", d)
		if !sleep(ctx, d) {
			return ctx.Err()
		}
	}
}

// renewToken renews the token at two thirds of its TTL, and
// authenticates again when it cannot be renewed or renewal no longer
// extends it (max TTL reached).
func (r *runner) renewToken(ctx context.Context) {
	if r.renewable {
		resp, err := r.client().Write(ctx, "auth/token/renew-self", map[string]any{"increment": int(r.tokenTTL.Seconds())})
		if err == nil && resp.Auth != nil {
			ttl := time.Duration(resp.Auth.LeaseDuration) * time.Second
			if ttl >= r.tokenTTL/2 && ttl > 0 {
				r.tokenDue = r.opts.Now().Add(ttl * 2 / 3)
				r.log.Info("token renewed", "ttl", ttl)
				return
			}
		} else if err != nil {
			r.log.Warn("token renewal failed; authenticating again", "error", err)
		}
	}
	r.authLoop(ctx)
}

// renewLease renews a leased secret at two thirds of its lease, or marks
// it for re-fetching when it is not renewable, renewal fails, or the
// lease has stopped growing (its max TTL is near).
func (r *runner) renewLease(ctx context.Context, key string, e *entry) {
	path, _, _ := strings.Cut(key, "\x00")
	if !e.secret.Renewable || e.capped {
		r.log.Info("re-fetching leased secret before it expires", "path", path)
		e.stale = true
		return
	}
	resp, err := r.client().Write(ctx, "sys/leases/renew", map[string]any{"lease_id": e.secret.LeaseID, "increment": e.increment})
	if err != nil {
		r.log.Warn("lease renewal failed; re-fetching", "path", path, "error", err)
		e.stale = true
		return
	}
	d := resp.LeaseDuration
	if d <= 0 {
		e.stale = true
		return
	}
	e.due = r.opts.Now().Add(time.Duration(d) * time.Second * 2 / 3)
	if d < e.increment {
		e.capped = true
	}
	r.log.Info("lease renewed", "path", path, "lease_duration", d, "max_ttl_near", e.capped)
}

// fetch returns the cached secret for path, reading it again when stale.
func (r *runner) fetch(ctx context.Context, path string, args []string) (*Secret, error) {
	key := secretKey(path, args)
	if e, ok := r.cache[key]; ok && !e.stale {
		return e.secret, nil
	}
	path = strings.Trim(path, "/")
	var (
		resp *api.Response
		err  error
	)
	if len(args) > 0 {
		body, aerr := writeArgs(args)
		if aerr != nil {
			return nil, aerr
		}
		resp, err = r.client().Write(ctx, path, body)
	} else {
		resp, err = r.client().Read(ctx, path)
	}
	if err != nil {
		if errors.Is(err, api.ErrNotFound) {
			return nil, fmt.Errorf("secret %q: %w", path, ErrNoSecret)
		}
		return nil, fmt.Errorf("secret %q: %w", path, err)
	}
	s := &Secret{Data: resp.Data, LeaseID: resp.LeaseID, LeaseDuration: resp.LeaseDuration, Renewable: resp.Renewable, Warnings: resp.Warnings}
	if s.Data == nil {
		s.Data = map[string]any{}
	}
	e := &entry{secret: s, leased: s.LeaseID != "" && s.LeaseDuration > 0}
	if e.leased {
		e.increment = s.LeaseDuration
		e.due = r.opts.Now().Add(time.Duration(s.LeaseDuration) * time.Second * 2 / 3)
	}
	r.cache[key] = e
	return s, nil
}

// render executes every template, writes those whose output differs
// from the file on disk, then runs their commands and signals the app.
// It returns the joined errors of the templates that failed; the others
// are still written.
func (r *runner) render(ctx context.Context) error {
	var errs []error
	changed := 0
	for _, t := range r.templates {
		t.deps = map[string]bool{}
		fm := Funcs(r.opts.Getenv, r.opts.Now)
		fm["secret"] = func(path string, args ...string) (*Secret, error) {
			t.deps[secretKey(path, args)] = true
			return r.fetch(ctx, path, args)
		}
		var buf bytes.Buffer
		if err := t.t.Funcs(fm).Execute(&buf, nil); err != nil {
			errs = append(errs, fmt.Errorf("template %s: %w", t.cfg.Destination, err))
			continue
		}
		old, err := os.ReadFile(t.cfg.Destination)
		if err == nil && bytes.Equal(old, buf.Bytes()) {
			if fi, err := os.Stat(t.cfg.Destination); err == nil && fi.Mode().Perm() == t.cfg.Perms {
				continue
			}
		}
		if err := writeFileAtomic(t.cfg.Destination, buf.Bytes(), t.cfg.Perms); err != nil {
			errs = append(errs, fmt.Errorf("template %s: %w", t.cfg.Destination, err))
			continue
		}
		changed++
		r.log.Info("template rendered", "destination", t.cfg.Destination)
		if t.cfg.Command != "" {
			r.runCommand(ctx, t.cfg)
		}
	}
	// Secrets no template uses any more are dropped.
	for key := range r.cache {
		used := false
		for _, t := range r.templates {
			used = used || t.deps[key]
		}
		if !used {
			delete(r.cache, key)
		}
	}
	if changed > 0 && r.rendered && r.opts.SignalPIDFile != "" {
		r.signal()
	}
	if err := errors.Join(errs...); err != nil {
		r.setHealth(func() { r.health.lastError = err.Error() })
		return err
	}
	r.rendered = true
	r.setHealth(func() { r.health.rendered, r.health.lastError = true, "" })
	return nil
}

// runCommand runs a template's command through /bin/sh -c, bounded to
// 30 seconds; a failure is logged, with the command's output.
func (r *runner) runCommand(ctx context.Context, t Template) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/bin/sh", "-c", t.Command).CombinedOutput()
	if err != nil {
		r.log.Warn("template command failed", "destination", t.Destination, "error", err, "output", strings.TrimSpace(string(out)))
		return
	}
	r.log.Info("template command ran", "destination", t.Destination)
}

// signal sends opts.Signal to the pid in opts.SignalPIDFile.
func (r *runner) signal() {
	b, err := os.ReadFile(r.opts.SignalPIDFile)
	if err != nil {
		r.log.Warn("cannot read the pid file to signal", "error", err)
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		r.log.Warn("the pid file holds no pid", "file", r.opts.SignalPIDFile)
		return
	}
	p, err := os.FindProcess(pid)
	if err == nil {
		err = p.Signal(r.opts.Signal)
	}
	if err != nil {
		r.log.Warn("signalling the application failed", "pid", pid, "error", err)
		return
	}
	r.log.Info("application signalled", "pid", pid, "signal", r.opts.Signal.String())
}

// startHealth serves /agent/v1/health: 200 once authenticated and every
// template rendered, else 503; the body says which, and the last error.
func (r *runner) startHealth(ctx context.Context, wg *sync.WaitGroup) error {
	l := r.opts.HealthListener
	if l == nil {
		addr := r.opts.HealthAddr
		if addr == "" {
			addr = r.cfg.ListenAddr
		}
		if addr == "" {
			return nil
		}
		var err error
		if l, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("agent: health listener: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /agent/v1/health", func(w http.ResponseWriter, _ *http.Request) {
		r.health.mu.Lock()
		body := map[string]any{"authenticated": r.health.authed, "rendered": r.health.rendered}
		if r.health.lastError != "" {
			body["last_error"] = r.health.lastError
		}
		ok := r.health.authed && (r.health.rendered || len(r.templates) == 0)
		r.health.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(body)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	wg.Add(2)
	go func() { defer wg.Done(); srv.Serve(l) }()
	go func() {
		defer wg.Done()
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	return nil
}
