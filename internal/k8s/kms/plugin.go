package kms

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/kms/pkg/service"

	"github.com/coffer-dev/coffer/api"
)

// Version is the KMS API version the plugin implements.
const Version = "v2"

// DefaultKeyPath is the transit key used when Config.KeyPath is empty.
const DefaultKeyPath = "transit/keys/k8s-etcd"

// FormatAnnotation is the annotation Encrypt adds, naming the format of
// the ciphertext so that a later format can be told apart. The API server
// requires annotation keys to be fully qualified domain names.
const FormatAnnotation = "format.kms.coffer.dev"

// formatTransitV1: the ciphertext is a transit "vault:vN:" ciphertext of
// the seed, with associatedData as additional data.
const formatTransitV1 = "transit-v1"

// associatedData binds every wrapped seed to this use of the key: a
// ciphertext that transit made for another client of the same key does
// not decrypt through the plugin.
var associatedData = base64.StdEncoding.EncodeToString([]byte("coffer.dev/kms-v2"))

// maxSeed bounds Encrypt's plaintext; the API server sends a 32-byte seed.
const maxSeed = 1024

// Config configures a Plugin.
type Config struct {
	// Client reaches Coffer; its own token is ignored. Required.
	Client *api.Client
	// KeyPath is the transit key, "<mount>/keys/<name>".
	// "": DefaultKeyPath.
	KeyPath string
	// Token is a fixed token. TokenFile is a file holding the token,
	// re-read when Coffer refuses the current one. AppRole, when its
	// RoleIDFile is set, logs in instead. Exactly one must be set.
	Token     string
	TokenFile string
	AppRole   AppRole
	// CacheSize bounds the in-memory seed cache (see the package doc).
	// 0: 1024 entries; negative: no cache.
	CacheSize int
	// CacheTTL is how long a cached seed may answer during an outage.
	// 0: 5 minutes; negative: no cache.
	CacheTTL time.Duration
	// Logger receives the logs. nil: discard.
	Logger *slog.Logger
	// Now is the clock. nil: time.Now.
	Now func() time.Time
}

// Plugin implements service.Service over a Coffer transit key. It is safe
// for concurrent use.
type Plugin struct {
	client *api.Client
	mount  string // "transit"
	name   string // "k8s-etcd"
	path   string // "transit/keys/k8s-etcd"
	tokens *tokens
	cache  *seedCache
	log    *slog.Logger
	now    func() time.Time

	mu    sync.Mutex // guards following
	state *keyState  // nil until the key has been read
}

var _ service.Service = (*Plugin)(nil)

// SplitKeyPath splits "<mount>/keys/<name>" into mount and name.
func SplitKeyPath(p string) (mount, name string, err error) {
	p = strings.Trim(p, "/")
	i := strings.LastIndex(p, "/keys/")
	if i <= 0 || i+len("/keys/") == len(p) || strings.Contains(p[i+len("/keys/"):], "/") {
		return "", "", fmt.Errorf("kms: key path %q is not <transit mount>/keys/<name>", p)
	}
	return p[:i], p[i+len("/keys/"):], nil
}

// New returns a Plugin for cfg. It validates cfg and contacts nobody.
func New(cfg Config) (*Plugin, error) {
	if cfg.Client == nil {
		return nil, errors.New("kms: Config.Client is required")
	}
	if cfg.KeyPath == "" {
		cfg.KeyPath = DefaultKeyPath
	}
	mount, name, err := SplitKeyPath(cfg.KeyPath)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, set := range []bool{cfg.Token != "", cfg.TokenFile != "", cfg.AppRole.RoleIDFile != ""} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return nil, ErrNoToken
	case n > 1:
		return nil, errors.New("kms: set only one of a token, a token file and an AppRole role_id file")
	case cfg.AppRole.RoleIDFile == "" && (cfg.AppRole.SecretIDFile != "" || cfg.AppRole.MountPath != ""):
		return nil, errors.New("kms: an AppRole secret_id file or mount needs a role_id file")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 1024
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = 5 * time.Minute
	}
	client := cfg.Client.WithToken("")
	return &Plugin{
		client: client, mount: mount, name: name, path: mount + "/keys/" + name,
		tokens: &tokens{client: client, static: cfg.Token, file: cfg.TokenFile, approle: cfg.AppRole, now: cfg.Now, log: cfg.Logger},
		cache:  newSeedCache(cfg.CacheSize, cfg.CacheTTL, cfg.Now),
		log:    cfg.Logger,
		now:    cfg.Now,
	}, nil
}

// RenewToken keeps the plugin's token alive until ctx is done, retrying
// failures every retry (0: one minute).
func (p *Plugin) RenewToken(ctx context.Context, retry time.Duration) {
	if retry <= 0 {
		retry = time.Minute
	}
	p.tokens.run(ctx, retry)
}

// do sends one request with the plugin's token; when Coffer refuses the
// token it obtains a new one (if its source can) and tries once more.
func (p *Plugin) do(ctx context.Context, method, path string, body any) (*api.Response, error) {
	tok, err := p.tokens.get(ctx)
	if err != nil {
		return nil, err
	}
	r, err := p.client.WithToken(tok).Do(ctx, method, path, body)
	if !errors.Is(err, api.ErrPermissionDenied) {
		return r, err
	}
	tok2, rerr := p.tokens.refresh(ctx, tok)
	if rerr != nil {
		return nil, rerr
	}
	if tok2 == tok {
		return nil, err
	}
	return p.client.WithToken(tok2).Do(ctx, method, path, body)
}

// readKey reads the transit key and records its state.
func (p *Plugin) readKey(ctx context.Context) (*keyState, error) {
	r, err := p.do(ctx, http.MethodGet, p.path, nil)
	if err != nil {
		return nil, err
	}
	st, err := p.parseKey(r.Data)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == nil || p.state.keyID() != st.keyID() {
		p.log.InfoContext(ctx, "kms: transit key state", "key", p.path, "key_id", st.keyID())
	}
	p.state = st
	return st, nil
}

// parseKey reads the data of a transit key read.
func (p *Plugin) parseKey(d map[string]any) (*keyState, error) {
	if t, _ := d["type"].(string); t != "aes256-gcm96" && t != "chacha20-poly1305" {
		return nil, fmt.Errorf("kms: transit key %s has type %q; it must be aes256-gcm96 or chacha20-poly1305", p.path, t)
	}
	if derived, _ := d["derived"].(bool); derived {
		return nil, fmt.Errorf("kms: transit key %s is derived; it must not be", p.path)
	}
	latest, ok := jsonInt(d["latest_version"])
	if !ok || latest < 1 {
		return nil, fmt.Errorf("kms: transit key %s read has no latest_version", p.path)
	}
	keys, _ := d["keys"].(map[string]any)
	created, ok := jsonInt(keys["1"])
	if !ok {
		return nil, fmt.Errorf("kms: transit key %s has no version 1 (trimmed?); its key_id cannot be derived", p.path)
	}
	st := &keyState{derived: DeriveKeyID(p.path, created), latest: int(latest), read: p.now()}
	st.id = st.derived
	if id, _ := d["id"].(string); id != "" {
		st.id = id
	}
	return st, nil
}

// currentState returns the last key state, reading the key if there is
// none yet.
func (p *Plugin) currentState(ctx context.Context) (*keyState, error) {
	p.mu.Lock()
	st := p.state
	p.mu.Unlock()
	if st != nil {
		return st, nil
	}
	return p.readKey(ctx)
}

// Status reads the transit key and reports healthz "ok" and the key_id of
// its latest version, or, on any failure, a one-line reason and the last
// known key_id. It returns an error only when ctx is done.
func (p *Plugin) Status(ctx context.Context) (*service.StatusResponse, error) {
	st, err := p.readKey(ctx)
	if err == nil {
		return &service.StatusResponse{Version: Version, Healthz: "ok", KeyID: st.keyID()}, nil
	}
	if ctx.Err() != nil {
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	reason := p.reason(ctx, err)
	p.log.WarnContext(ctx, "kms: unhealthy", "reason", reason)
	resp := &service.StatusResponse{Version: Version, Healthz: reason}
	p.mu.Lock()
	if p.state != nil {
		resp.KeyID = p.state.keyID()
	}
	p.mu.Unlock()
	return resp, nil
}

// reason turns a failure into the healthz text: what is wrong, in words.
func (p *Plugin) reason(ctx context.Context, err error) string {
	var ae *api.Error
	switch {
	case errors.Is(err, api.ErrSealed):
		return "coffer is sealed"
	case errors.Is(err, api.ErrPermissionDenied):
		return "coffer refused the token: permission denied on " + p.path
	case errors.Is(err, api.ErrNotFound):
		return "transit key " + p.path + " not found"
	case errors.As(err, &ae):
		if ae.StatusCode == http.StatusServiceUnavailable {
			// A 503 without "sealed": ask seal-status, which needs no token.
			if s, serr := p.client.SealStatus(ctx); serr == nil && s.Sealed {
				return "coffer is sealed"
			}
		}
		return "coffer answered " + strconv.Itoa(ae.StatusCode) + ": " + err.Error()
	case errors.Is(err, ErrNoToken):
		return err.Error()
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return "coffer unreachable: " + err.Error()
	}
	return err.Error()
}

// grpcError maps a failure of a call to Coffer to a gRPC status whose
// message says what failed. Messages come from Coffer's errors, which
// never carry secret values.
func (p *Plugin) grpcError(ctx context.Context, op string, err error) error {
	var ae *api.Error
	code := codes.Internal
	switch {
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	case errors.Is(err, ErrUnknownKeyID):
		code = codes.InvalidArgument
	case errors.Is(err, api.ErrSealed):
		code = codes.Unavailable
	case errors.Is(err, api.ErrPermissionDenied), errors.Is(err, ErrNoToken):
		code = codes.PermissionDenied
	case errors.As(err, &ae):
		switch {
		case ae.StatusCode >= 500:
			code = codes.Unavailable
		case ae.StatusCode == http.StatusNotFound:
			code = codes.NotFound
		default:
			code = codes.InvalidArgument
		}
	case isOutage(err):
		code = codes.Unavailable
	}
	return status.Error(code, "coffer kms: "+op+": "+p.reason(ctx, err))
}

// isOutage reports whether err means that Coffer could not answer
// (transport failure, sealed, 5xx) rather than that it refused.
func isOutage(err error) bool {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.StatusCode >= 500
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// Encrypt wraps a seed with the version of the key that Status last
// reported, so that the key_id it returns equals Status's.
func (p *Plugin) Encrypt(ctx context.Context, uid string, seed []byte) (*service.EncryptResponse, error) {
	if len(seed) == 0 || len(seed) > maxSeed {
		return nil, status.Errorf(codes.InvalidArgument, "coffer kms: encrypt: plaintext of %d bytes; want 1 to %d", len(seed), maxSeed)
	}
	st, err := p.currentState(ctx)
	if err != nil {
		return nil, p.grpcError(ctx, "encrypt", err)
	}
	r, err := p.do(ctx, http.MethodPut, p.mount+"/encrypt/"+p.name, map[string]any{
		"plaintext":       base64.StdEncoding.EncodeToString(seed),
		"key_version":     st.latest,
		"associated_data": associatedData,
	})
	if err != nil {
		return nil, p.grpcError(ctx, "encrypt", err)
	}
	ct, _ := r.Data["ciphertext"].(string)
	if v, ok := ciphertextVersion(ct); !ok || v != st.latest {
		return nil, status.Errorf(codes.Internal, "coffer kms: encrypt: transit returned a ciphertext not under version %d", st.latest)
	}
	keyID := FormatKeyID(st.id, st.latest)
	p.cache.put(keyID, []byte(ct), seed)
	p.log.DebugContext(ctx, "kms: encrypt", "uid", uid, "key_id", keyID)
	return &service.EncryptResponse{
		Ciphertext:  []byte(ct),
		KeyID:       keyID,
		Annotations: map[string][]byte{FormatAnnotation: []byte(formatTransitV1)},
	}, nil
}

// Decrypt unwraps a seed. The key_id must name this key and the version
// of the ciphertext; otherwise Decrypt refuses with InvalidArgument
// before asking Coffer. When Coffer cannot answer, a seed wrapped or
// unwrapped within CacheTTL is returned from memory.
func (p *Plugin) Decrypt(ctx context.Context, uid string, req *service.DecryptRequest) ([]byte, error) {
	if err := p.checkDecrypt(ctx, req); err != nil {
		return nil, p.grpcError(ctx, "decrypt", err)
	}
	r, err := p.do(ctx, http.MethodPut, p.mount+"/decrypt/"+p.name, map[string]any{
		"ciphertext":      string(req.Ciphertext),
		"associated_data": associatedData,
	})
	if err != nil {
		if isOutage(err) {
			if seed, ok := p.cache.get(req.KeyID, req.Ciphertext); ok {
				p.log.WarnContext(ctx, "kms: decrypt answered from the in-memory cache; coffer cannot answer", "uid", uid, "key_id", req.KeyID, "err", err)
				return seed, nil
			}
		}
		return nil, p.grpcError(ctx, "decrypt", err)
	}
	b64, _ := r.Data["plaintext"].(string)
	seed, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(seed) == 0 {
		return nil, status.Error(codes.Internal, "coffer kms: decrypt: transit returned no plaintext")
	}
	p.cache.put(req.KeyID, req.Ciphertext, seed)
	return seed, nil
}

// checkDecrypt verifies that req was made by this plugin: a key_id of
// this key whose version is the ciphertext's, and a known format.
func (p *Plugin) checkDecrypt(ctx context.Context, req *service.DecryptRequest) error {
	if f, ok := req.Annotations[FormatAnnotation]; ok && string(f) != formatTransitV1 {
		return fmt.Errorf("%w: unknown format annotation %q", ErrUnknownKeyID, f)
	}
	id, ver, err := ParseKeyID(req.KeyID)
	if err != nil {
		return err
	}
	if cv, ok := ciphertextVersion(string(req.Ciphertext)); !ok || cv != ver {
		return fmt.Errorf("%w: %s does not match the ciphertext's key version", ErrUnknownKeyID, req.KeyID)
	}
	st, err := p.currentState(ctx)
	if err != nil {
		return err
	}
	if st.owns(id) {
		return nil
	}
	// The key may have been replaced or the engine upgraded since the
	// last read: read it again before refusing.
	if st, err = p.readKey(ctx); err != nil {
		return err
	}
	if !st.owns(id) {
		return fmt.Errorf("%w: %s was not issued for transit key %s", ErrUnknownKeyID, req.KeyID, p.path)
	}
	return nil
}
