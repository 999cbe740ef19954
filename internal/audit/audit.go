package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// Sentinel errors; check them with errors.Is. Those a client can cause are
// wrapped in a *logical.Error with the code noted.
var (
	// ErrNotAudited is returned by LogRequest and LogResponse when no
	// enabled device recorded the entry. The request must fail with a 500
	// and no data.
	ErrNotAudited = errors.New("audit: no audit device recorded the entry")
	// ErrClosed is returned by every operation after Close.
	ErrClosed = errors.New("audit: broker closed")
	// ErrExists: a device is already enabled at that name (Invalid).
	ErrExists = errors.New("audit: path already in use")
	// ErrNoDevice: no device is enabled at that name (Invalid).
	ErrNoDevice = errors.New("audit: no audit device at that path")
	// ErrDeclared: the device is declared in the server config and cannot
	// be disabled through the API (Invalid).
	ErrDeclared = errors.New("audit: device is declared in the server config")
)

// codedError is a client-facing *logical.Error that also matches a
// sentinel with errors.Is.
type codedError struct {
	err      *logical.Error
	sentinel error
}

func (e *codedError) Error() string   { return e.err.Message }
func (e *codedError) Unwrap() []error { return []error{e.err, e.sentinel} }

func coded(sentinel error, code logical.Code, format string, args ...any) error {
	return &codedError{err: logical.Errorf(code, format, args...), sentinel: sentinel}
}

// Config configures a Broker.
type Config struct {
	// Storage is required: a barrier view private to audit. It holds the
	// device table (with each device's HMAC salt and Ed25519 key) and each
	// device's chain state.
	Storage logical.Storage
	// Now is the clock of entry times; nil: time.Now. Timeouts always use
	// the real clock.
	Now func() time.Time
	// Rand is the source of salts and keys; nil: crypto/rand.Reader.
	Rand io.Reader
	// Logger receives device failures and recoveries; nil: discard.
	Logger *slog.Logger
	// AllowedDirs are the directories (audit_allowed_dirs) under which a
	// file device enabled through the API may write. Nil, with
	// AllowAnyPath false, refuses every API-enabled file device except
	// stdout and discard. Config-declared devices may write anywhere.
	AllowedDirs []string
	// AllowAnyPath lifts the AllowedDirs rule (--dev). Symlinks as the
	// final path component are still refused.
	AllowAnyPath bool
}

// Broker dispatches audit entries to the enabled devices. It is safe for
// concurrent use. Each device has a goroutine that the Broker owns; Close
// stops them.
type Broker struct {
	cfg Config
	log *slog.Logger
	now func() time.Time

	unaudited atomic.Uint64

	tableMu sync.Mutex // serializes Enable and Disable; guards following
	records map[string]record
	pending map[string]bool

	mu      sync.RWMutex // guards following
	devices map[string]*device
	list    []*device // devices' values, rebuilt (never changed) on every change
	closed  bool
}

const tableKey = "table"

func chainKey(name string) string { return "chain/" + hex.EncodeToString([]byte(name)) }

type table struct {
	Devices []record `json:"devices"`
}

// New loads the device table from cfg.Storage and starts every device
// enabled through the API. A device that cannot be opened is started
// anyway, marked failed, and retried as entries arrive: New fails only
// when the table cannot be read. Config-declared devices are not started
// by New: the caller enables them again with Enable(..., true), which
// reuses their stored salt and key.
func New(ctx context.Context, cfg Config) (*Broker, error) {
	if cfg.Storage == nil {
		return nil, errors.New("audit: Config.Storage is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Broker{cfg: cfg, log: cfg.Logger, now: cfg.Now, records: map[string]record{}, pending: map[string]bool{}, devices: map[string]*device{}}
	raw, err := cfg.Storage.Get(ctx, tableKey)
	switch {
	case errors.Is(err, logical.ErrNotFound):
		return b, nil
	case err != nil:
		return nil, fmt.Errorf("audit: read device table: %w", err)
	}
	var t table
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("audit: decode device table: %w", err)
	}
	for _, rec := range t.Devices {
		b.records[rec.Name] = rec
		if rec.FromConfig {
			continue
		}
		d, err := b.build(ctx, rec)
		if err != nil {
			b.log.Error("audit: cannot restore device", "device", rec.Name, "err", err)
			continue
		}
		go d.run()
		b.devices[rec.Name] = d
	}
	b.listLocked()
	return b, nil
}

func (b *Broker) build(ctx context.Context, rec record) (*device, error) {
	opts, err := parseOptions(DeviceConfig{Type: rec.Type, Options: rec.Options})
	if err != nil {
		return nil, err
	}
	var st chainState
	raw, err := b.cfg.Storage.Get(ctx, chainKey(rec.Name))
	switch {
	case err == nil:
		if err := json.Unmarshal(raw, &st); err != nil {
			return nil, fmt.Errorf("decode chain state: %w", err)
		}
	case !errors.Is(err, logical.ErrNotFound):
		return nil, fmt.Errorf("read chain state: %w", err)
	}
	return newDevice(b, rec, opts, st)
}

// checkName validates a device name: slash-separated segments of letters,
// digits, '-', '_' and '.', without the trailing slash.
func checkName(name string) error {
	if name == "" || len(name) > 128 {
		return logical.Errorf(logical.Invalid, "audit: invalid audit device path")
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return logical.Errorf(logical.Invalid, "audit: invalid audit device path")
		}
		for _, r := range seg {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
				return logical.Errorf(logical.Invalid, "audit: invalid audit device path")
			}
		}
	}
	return nil
}

func (b *Broker) newKeys() (salt string, seed []byte, err error) {
	buf := make([]byte, 16+ed25519.SeedSize)
	if _, err := io.ReadFull(b.cfg.Rand, buf); err != nil {
		return "", nil, fmt.Errorf("audit: read random: %w", err)
	}
	u := buf[:16]
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], buf[16:], nil
}

// Enable enables a device at name (a trailing "/" is ignored) and returns
// once its sink is open and its first line written, or with an error
// after at most the device's timeout: it never hangs on a FIFO without a
// reader (refused at once) or a socket that does not accept. On error
// nothing is enabled. fromConfig marks a device declared in the server
// config: its path is not checked against AllowedDirs, it reuses the salt
// and key stored for it by an earlier start, and it cannot be disabled
// through the API. Errors a client can cause are *logical.Error Invalid
// (ErrExists, ErrPathNotAllowed, bad options).
func (b *Broker) Enable(ctx context.Context, name string, dc DeviceConfig, fromConfig bool) error {
	name = strings.TrimSuffix(name, "/")
	if err := checkName(name); err != nil {
		return err
	}
	opts, err := parseOptions(dc)
	if err != nil {
		return err
	}
	if !fromConfig && dc.Type == "file" && opts.filePath != "stdout" && opts.filePath != "discard" {
		if _, err := resolveAllowed(opts.filePath, b.cfg.AllowedDirs, b.cfg.AllowAnyPath); err != nil {
			return err
		}
	}

	b.tableMu.Lock()
	defer b.tableMu.Unlock()
	b.mu.RLock()
	_, exists := b.devices[name]
	closed := b.closed
	b.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	if exists {
		return coded(ErrExists, logical.Invalid, "audit: path already in use at %s/", name)
	}
	rec := record{Name: name, Type: dc.Type, Description: dc.Description, Options: dc.Options, Local: dc.Local, FromConfig: fromConfig}
	old, had := b.records[name]
	if fromConfig && had && old.FromConfig && old.Type == dc.Type {
		rec.Salt, rec.Seed = old.Salt, old.Seed
	} else {
		if rec.Salt, rec.Seed, err = b.newKeys(); err != nil {
			return err
		}
		if had { // a leftover record: its chain belongs to other keys
			if err := b.cfg.Storage.Delete(ctx, chainKey(name)); err != nil {
				return fmt.Errorf("audit: reset chain state: %w", err)
			}
		}
	}
	d, err := b.build(ctx, rec)
	if err != nil {
		return err
	}
	go d.run()
	timer := time.NewTimer(opts.timeout)
	defer timer.Stop()
	select {
	case err = <-d.opened:
	case <-timer.C:
		err = fmt.Errorf("audit: device %q did not open within %s", name, opts.timeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil {
		err = b.saveTable(ctx, name, &rec)
	}
	if err != nil {
		d.abort()
		d.quitOnce.Do(func() { close(d.quit) })
		var le *logical.Error
		if errors.As(err, &le) {
			return err
		}
		return logical.Errorf(logical.Invalid, "audit: enable %s/: %s", name, err)
	}
	b.mu.Lock()
	if b.closed { // Close ran while the device opened
		b.mu.Unlock()
		d.abort()
		d.quitOnce.Do(func() { close(d.quit) })
		return ErrClosed
	}
	b.devices[name] = d
	b.listLocked()
	b.mu.Unlock()
	return nil
}

// saveTable stores the records with name set to rec (or removed when rec
// is nil). The caller holds tableMu.
func (b *Broker) saveTable(ctx context.Context, name string, rec *record) error {
	next := maps.Clone(b.records)
	if rec == nil {
		delete(next, name)
	} else {
		next[name] = *rec
	}
	var t table
	for _, r := range next {
		t.Devices = append(t.Devices, r)
	}
	sort.Slice(t.Devices, func(i, j int) bool { return t.Devices[i].Name < t.Devices[j].Name })
	raw, err := json.Marshal(t)
	if err != nil {
		return err
	}
	ops := []logical.Op{{Key: tableKey, Value: raw}}
	if rec == nil {
		ops = append(ops, logical.Op{Key: chainKey(name), Delete: true})
	}
	if err := b.cfg.Storage.Apply(ctx, ops); err != nil {
		return fmt.Errorf("audit: save device table: %w", err)
	}
	b.records = next
	return nil
}

// Disable stops the device at name after it wrote what it holds and a
// "disable" checkpoint (bounded by ctx), and forgets its keys, as Vault
// does. Disabling a missing device is not an error. A config-declared
// device returns ErrDeclared.
func (b *Broker) Disable(ctx context.Context, name string) error {
	name = strings.TrimSuffix(name, "/")
	b.tableMu.Lock()
	defer b.tableMu.Unlock()
	b.mu.RLock()
	d, ok := b.devices[name]
	b.mu.RUnlock()
	if !ok {
		return nil
	}
	if d.rec.FromConfig {
		return coded(ErrDeclared, logical.Invalid, "audit: %s/ is declared in the server config and cannot be disabled through the API", name)
	}
	d.closeReason("disable") // from now on the goroutine saves no chain state
	if err := b.saveTable(ctx, name, nil); err != nil {
		d.closeReason("")
		return err
	}
	b.mu.Lock()
	delete(b.devices, name)
	b.listLocked()
	b.mu.Unlock()
	return d.stop(ctx)
}

// closeReason sets the reason of the checkpoint the goroutine writes when
// it stops; only called before stop.
func (d *device) closeReason(r string) {
	d.mu.Lock()
	d.stopReason = r
	d.mu.Unlock()
}

// Reopen closes and reopens every device's sink, as on SIGHUP after log
// rotation: a "reopen" checkpoint ends the old file, and a new (empty)
// file starts with a "start" checkpoint whose prev_hash continues the
// chain. It waits for each device at most until ctx ends and returns the
// joined errors of the devices that could not reopen (they retry as
// entries arrive).
func (b *Broker) Reopen(ctx context.Context) error {
	devs := b.snapshot()
	errs := make([]error, len(devs))
	var wg sync.WaitGroup
	for i, d := range devs {
		wg.Go(func() {
			if err := d.do(ctx, opReopen); err != nil {
				errs[i] = fmt.Errorf("audit: reopen %s/: %w", d.rec.Name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close writes a "shutdown" checkpoint to every device after what they
// hold, and stops them. Devices still blocked when ctx ends are aborted
// (their pending entries are lost) and reported in the error. Close is
// idempotent; afterwards Log* returns ErrClosed.
func (b *Broker) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	devs := make([]*device, 0, len(b.devices))
	for _, d := range b.devices {
		devs = append(devs, d)
	}
	b.mu.Unlock()
	errs := make([]error, len(devs))
	var wg sync.WaitGroup
	for i, d := range devs {
		wg.Go(func() { errs[i] = d.stop(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (b *Broker) snapshot() []*device {
	b.mu.RLock()
	defer b.mu.RUnlock()
	devs := make([]*device, 0, len(b.devices))
	for _, d := range b.devices {
		devs = append(devs, d)
	}
	return devs
}

// Hash returns the HMAC that the device at name writes for input
// (sys/audit-hash): "hmac-sha256:<hex>".
func (b *Broker) Hash(ctx context.Context, name, input string) (string, error) {
	name = strings.TrimSuffix(name, "/")
	b.mu.RLock()
	d, ok := b.devices[name]
	b.mu.RUnlock()
	if !ok {
		return "", coded(ErrNoDevice, logical.Invalid, "audit: unknown audit device %q", name)
	}
	return d.mac.value(input), nil
}

// DeviceInfo describes an enabled device for sys/audit.
type DeviceInfo struct {
	Name        string // without the trailing "/"
	Type        string
	Description string
	Options     map[string]string
	Local       bool
	FromConfig  bool
	// PublicKey verifies the device's checkpoints (FormatPublicKey).
	PublicKey string
	// Failed is set while the device cannot write or keep up; Reason says
	// why (never a secret).
	Failed bool
	Reason string
	DeviceMetrics
}

// DeviceMetrics are a device's counters since the Broker started.
type DeviceMetrics struct {
	Written     uint64 // entries confirmed written
	Dropped     uint64 // entries lost: queue full, or the write failed
	WriteErrors uint64 // failed writes and opens
	Timeouts    uint64 // entries not confirmed within the device timeout
	Queued      int    // entries waiting now
}

// List returns the enabled devices sorted by name.
func (b *Broker) List() []DeviceInfo {
	devs := b.snapshot()
	out := make([]DeviceInfo, 0, len(devs))
	for _, d := range devs {
		failed, reason := d.status()
		out = append(out, DeviceInfo{
			Name: d.rec.Name, Type: d.rec.Type, Description: d.rec.Description, Options: d.rec.Options,
			Local: d.rec.Local, FromConfig: d.rec.FromConfig, PublicKey: d.pub, Failed: failed, Reason: reason,
			DeviceMetrics: d.metrics(),
		})
	}
	slices.SortFunc(out, func(a, b DeviceInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (d *device) metrics() DeviceMetrics {
	return DeviceMetrics{
		Written: d.written.Load(), Dropped: d.dropped.Load(), WriteErrors: d.writeErrors.Load(),
		Timeouts: d.timeouts.Load(), Queued: len(d.queue),
	}
}

// Metrics are the Broker's counters for sys/metrics.
type Metrics struct {
	// Unaudited counts entries no device recorded (requests failed closed).
	Unaudited uint64
	// Devices maps device names to their counters.
	Devices map[string]DeviceMetrics
	// Failed counts devices marked failed now.
	Failed int
}

// Metrics returns a snapshot of the counters.
func (b *Broker) Metrics() Metrics {
	m := Metrics{Unaudited: b.unaudited.Load(), Devices: map[string]DeviceMetrics{}}
	for _, d := range b.snapshot() {
		m.Devices[d.rec.Name] = d.metrics()
		if f, _ := d.status(); f {
			m.Failed++
		}
	}
	return m
}

// LogRequest records in.  It returns nil once one device confirmed the
// entry, nil at once when no device is enabled, and an error wrapping
// ErrNotAudited when every device failed or timed out (or ErrClosed, or
// ctx's error): the request must then fail without data. It is safe for
// concurrent use.
func (b *Broker) LogRequest(ctx context.Context, in *Input) error {
	devs, err := b.active()
	if err != nil || len(devs) == 0 {
		return err
	}
	return b.dispatch(ctx, devs, prepareRequest(in, b.now()))
}

// LogResponse records the response to in: resp (which may be nil) or
// respErr. Its contract is LogRequest's.
func (b *Broker) LogResponse(ctx context.Context, in *Input, resp *logical.Response, respErr error) error {
	devs, err := b.active()
	if err != nil || len(devs) == 0 {
		return err
	}
	p, err := prepareResponse(in, resp, respErr, b.now())
	if err != nil {
		b.unaudited.Add(1)
		return fmt.Errorf("%w: %v", ErrNotAudited, err)
	}
	return b.dispatch(ctx, devs, p)
}

// prepareRequest returns the request entry of in at time now.
func prepareRequest(in *Input, now time.Time) *prepared {
	p := &prepared{typ: "request", time: now.UTC(), in: in, err: errorMessage(in.Err)}
	p.reqData = requestData(in)
	return p
}

// prepareResponse returns the response entry of in at time now. It fails
// only when resp.Data cannot be encoded as JSON.
func prepareResponse(in *Input, resp *logical.Response, respErr error, now time.Time) (*prepared, error) {
	p := &prepared{typ: "response", time: now.UTC(), in: in, resp: resp}
	p.reqData = requestData(in)
	if respErr == nil {
		respErr = in.Err
	}
	p.err = errorMessage(respErr)
	if resp != nil && resp.Data != nil {
		v, err := responseValue(resp.Data)
		if err != nil {
			return nil, fmt.Errorf("encode response data: %v", err)
		}
		p.respData = v
	}
	return p, nil
}

// requestData returns the data of in: its body's JSON, or its query
// parameters when the body has none. The body's is parsed once for the
// request and the response entry.
func requestData(in *Input) any {
	if len(in.Body) > 0 && len(in.parsedBody) == len(in.Body) && &in.parsedBody[0] == &in.Body[0] {
		return in.bodyData
	}
	if v := parseBody(in.Body); v != nil {
		in.bodyData, in.parsedBody = v, in.Body
		return v
	}
	return queryValue(in.Query)
}

// listLocked rebuilds b.list from b.devices; the caller holds b.mu (or is
// New).
func (b *Broker) listLocked() {
	l := make([]*device, 0, len(b.devices))
	for _, d := range b.devices {
		l = append(l, d)
	}
	b.list = l
}

// active returns the enabled devices. The slice is shared: never change
// it.
func (b *Broker) active() ([]*device, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return nil, ErrClosed
	}
	return b.list, nil
}

// dispatch enqueues p for every device and waits for the first
// confirmation, each device's own timeout, or ctx.
func (b *Broker) dispatch(ctx context.Context, devs []*device, p *prepared) error {
	res := make(chan result, len(devs))
	start := time.Now()
	type wait struct {
		d        *device
		deadline time.Time
	}
	var buf [4]wait
	waiting := buf[:0] // the devices not yet heard from
	for _, d := range devs {
		body, err := p.render(d.mac, d.opts.hmacAccessor)
		if err != nil {
			continue
		}
		select {
		case d.queue <- job{body: body, res: res}:
			waiting = append(waiting, wait{d, start.Add(d.opts.timeout)})
		default:
			d.lost(1)
			d.setFailed("queue full: the device is not keeping up")
		}
	}
	failed := len(devs) - len(waiting)
	for len(waiting) > 0 {
		next := waiting[0].deadline
		for _, w := range waiting[1:] {
			if w.deadline.Before(next) {
				next = w.deadline
			}
		}
		timer := time.NewTimer(time.Until(next))
		select {
		case r := <-res:
			timer.Stop()
			if r.err == nil {
				return nil
			}
			if i := slices.IndexFunc(waiting, func(w wait) bool { return w.d == r.d }); i >= 0 {
				waiting = slices.Delete(waiting, i, i+1)
				failed++
			}
		case now := <-timer.C:
			waiting = slices.DeleteFunc(waiting, func(w wait) bool {
				if w.deadline.After(now) {
					return false
				}
				w.d.timeouts.Add(1)
				failed++
				return true
			})
		case <-ctx.Done():
			timer.Stop()
			b.unaudited.Add(1)
			return fmt.Errorf("%w: %w", ErrNotAudited, ctx.Err())
		}
	}
	b.unaudited.Add(1)
	return fmt.Errorf("%w: %d device(s) failed or timed out", ErrNotAudited, failed)
}
