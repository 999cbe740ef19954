// Package jwt is Vault's JWT auth method (role_type "jwt"): a client logs
// in with a JSON Web Token signed by a key the mount trusts, and gets the
// policies of a role whose bindings the token's claims meet.
//
// The trusted keys come from exactly one of: jwt_validation_pubkeys (PEM
// public keys), jwks_url (a JSON Web Key Set fetched and cached), or
// oidc_discovery_url (the issuer's /.well-known/openid-configuration,
// whose issuer must equal the URL, then its jwks_uri). A Kubernetes
// cluster's service-account tokens can so be checked offline: its issuer
// serves both documents.
//
// Paths, relative to the mount (auth/jwt/ by default), with Vault's
// fields:
//
//	config        oidc_discovery_url, oidc_discovery_ca_pem, jwks_url,
//	              jwks_ca_pem, jwt_validation_pubkeys, bound_issuer,
//	              jwt_supported_algs, default_role
//	role          LIST
//	role/<name>   role_type, bound_audiences, bound_subject, bound_claims,
//	              bound_claims_type, user_claim, claim_mappings,
//	              groups_claim, clock_skew_leeway, expiration_leeway,
//	              not_before_leeway, token_*
//	login         unauthenticated: role, jwt
//
// Signatures are checked by hand with the standard library (see Parse and
// Token.Verify): RS*, PS*, ES* and EdDSA; "none" and HS* are always
// refused. A refused login is a 400 whose message says what failed
// (signature, expiry, issuer, audience, a claim's name) and never holds
// the token or a claim's value.
package jwt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coffer-dev/coffer/internal/auth/authbase"
	"github.com/coffer-dev/coffer/internal/auth/tokenparams"
	"github.com/coffer-dev/coffer/internal/logical"
)

// Backend is the JWT auth method. It is safe for concurrent use.
type Backend struct {
	s      logical.Storage
	now    func() time.Time
	log    *slog.Logger
	hc     func(caPEM string) (*http.Client, error)
	routes *authbase.Router // set by New, then read-only

	mu sync.Mutex // guards following, and serializes config and role writes
	// keys caches the remote key set (jwks_url or discovery).
	keys      []Key
	keysAt    time.Time
	keysFor   string // the config fingerprint the cache belongs to
	lastFetch time.Time
}

// Config configures New.
type Config struct {
	Storage logical.Storage  // required
	Now     func() time.Time // nil: time.Now
	Logger  *slog.Logger     // nil: discard
	// HTTPClient returns the client for fetching discovery documents and
	// key sets, trusting caPEM when it is set; nil: a client with a 10s
	// timeout trusting caPEM or the system roots.
	HTTPClient func(caPEM string) (*http.Client, error)
}

// keysTTL is how long a fetched key set is used before it is fetched
// again; refetchAfter is the least time between fetches prompted by a
// signature no cached key verifies (a key rotation).
const (
	keysTTL      = 5 * time.Minute
	refetchAfter = 10 * time.Second
)

// New returns the JWT backend over cfg.Storage.
func New(cfg Config) (*Backend, error) {
	if cfg.Storage == nil {
		return nil, errors.New("jwt: storage is required")
	}
	b := &Backend{s: cfg.Storage, now: cfg.Now, log: cfg.Logger, hc: cfg.HTTPClient}
	if b.now == nil {
		b.now = time.Now
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.hc == nil {
		b.hc = defaultHTTPClient
	}
	b.routes = &authbase.Router{Storage: b.s, Login: b.login, ReadConfig: b.readConfig, WriteConfig: b.writeConfig, ReadRole: b.readRole, WriteRole: b.writeRole}
	return b, nil
}

// Factory builds the JWT backend for a "jwt" (or "oidc") mount.
func Factory(ctx context.Context, cfg logical.BackendConfig) (logical.Backend, error) {
	return New(Config{Storage: cfg.Storage, Now: cfg.Now, Logger: cfg.Logger})
}

func defaultHTTPClient(caPEM string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caPEM != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(caPEM)) {
			return nil, logical.Errorf(logical.Invalid, "the CA PEM holds no certificate")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, nil
}

// UnauthenticatedPaths implements logical.Unauthenticated.
func (b *Backend) UnauthenticatedPaths() []string { return []string{"login"} }

// RoleInfo describes a role for sys/access.
// RoleInfo is logical.RoleInfo, so Roles implements logical.RoleLister.
type RoleInfo = logical.RoleInfo

// Roles returns every role with its token policies, sorted by name.
func (b *Backend) Roles(ctx context.Context) ([]RoleInfo, error) {
	return authbase.Roles(ctx, b.s, "role/", func(r *role) []string { return r.Token.Policies })
}

// config is the stored mount configuration.
type config struct {
	OIDCDiscoveryURL   string   `json:"oidc_discovery_url"`
	OIDCDiscoveryCAPEM string   `json:"oidc_discovery_ca_pem"`
	JWKSURL            string   `json:"jwks_url"`
	JWKSCAPEM          string   `json:"jwks_ca_pem"`
	PubKeys            []string `json:"jwt_validation_pubkeys"`
	BoundIssuer        string   `json:"bound_issuer"`
	SupportedAlgs      []string `json:"jwt_supported_algs"`
	DefaultRole        string   `json:"default_role"`
}

// role is a stored role.
type role struct {
	RoleType         string             `json:"role_type"`
	BoundAudiences   []string           `json:"bound_audiences"`
	BoundSubject     string             `json:"bound_subject"`
	BoundClaims      map[string]any     `json:"bound_claims"`
	BoundClaimsType  string             `json:"bound_claims_type"`
	UserClaim        string             `json:"user_claim"`
	ClaimMappings    map[string]string  `json:"claim_mappings"`
	GroupsClaim      string             `json:"groups_claim"`
	ClockSkewLeeway  int64              `json:"clock_skew_leeway"` // seconds; negative: none
	ExpirationLeeway int64              `json:"expiration_leeway"`
	NotBeforeLeeway  int64              `json:"not_before_leeway"`
	Token            tokenparams.Params `json:"token"`
}

func (b *Backend) config(ctx context.Context) (*config, error) {
	return authbase.Get[config](ctx, b.s, "config")
}

func (b *Backend) role(ctx context.Context, name string) (*role, error) {
	return authbase.Get[role](ctx, b.s, "role/"+name)
}

// HandleRequest implements logical.Backend.
func (b *Backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	return b.routes.HandleRequest(ctx, req)
}

// Exists implements logical.ExistenceChecker for role/<name>.
func (b *Backend) Exists(ctx context.Context, req *logical.Request) (ok, exists bool, err error) {
	return b.routes.Exists(ctx, req)
}

type configRequest struct {
	OIDCDiscoveryURL   *string             `json:"oidc_discovery_url"`
	OIDCDiscoveryCAPEM *string             `json:"oidc_discovery_ca_pem"`
	JWKSURL            *string             `json:"jwks_url"`
	JWKSCAPEM          *string             `json:"jwks_ca_pem"`
	PubKeys            *logical.StringList `json:"jwt_validation_pubkeys"`
	BoundIssuer        *string             `json:"bound_issuer"`
	SupportedAlgs      *logical.StringList `json:"jwt_supported_algs"`
	DefaultRole        *string             `json:"default_role"`
}

func (b *Backend) writeConfig(ctx context.Context, req *logical.Request) error {
	var in configRequest
	if err := req.Decode(&in); err != nil {
		return err
	}
	c := config{}
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = strings.TrimSpace(*src)
		}
	}
	set(&c.OIDCDiscoveryURL, in.OIDCDiscoveryURL)
	set(&c.OIDCDiscoveryCAPEM, in.OIDCDiscoveryCAPEM)
	set(&c.JWKSURL, in.JWKSURL)
	set(&c.JWKSCAPEM, in.JWKSCAPEM)
	set(&c.BoundIssuer, in.BoundIssuer)
	set(&c.DefaultRole, in.DefaultRole)
	if in.PubKeys != nil {
		c.PubKeys = *in.PubKeys
	}
	if in.SupportedAlgs != nil {
		for _, a := range *in.SupportedAlgs {
			if !slices.Contains(SupportedAlgs, a) {
				return logical.Errorf(logical.Invalid, "jwt_supported_algs: %q is not supported (use one of %s)", a, strings.Join(SupportedAlgs, ", "))
			}
		}
		c.SupportedAlgs = *in.SupportedAlgs
	}
	n := 0
	for _, set := range []bool{c.OIDCDiscoveryURL != "", c.JWKSURL != "", len(c.PubKeys) > 0} {
		if set {
			n++
		}
	}
	if n != 1 {
		return logical.Errorf(logical.Invalid, "exactly one of oidc_discovery_url, jwks_url or jwt_validation_pubkeys must be set")
	}
	for i, k := range c.PubKeys {
		if _, err := ParsePublicKeyPEM(k); err != nil {
			return logical.Errorf(logical.Invalid, "jwt_validation_pubkeys[%d]: %v", i, err)
		}
	}
	// Check that the remote keys can be fetched now, as Vault does.
	keys, err := b.fetchKeys(ctx, &c)
	if err != nil {
		return logical.Errorf(logical.Invalid, "error checking the key source: %v", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := authbase.PutJSON(ctx, b.s, "config", &c); err != nil {
		return err
	}
	b.keys, b.keysFor, b.keysAt, b.lastFetch = keys, fingerprint(&c), b.now(), b.now()
	return nil
}

func (b *Backend) readConfig(ctx context.Context) (*logical.Response, error) {
	c, err := b.config(ctx)
	if err != nil || c == nil {
		return nil, err
	}
	nz := func(l []string) []string {
		if l == nil {
			return []string{}
		}
		return l
	}
	return &logical.Response{Data: map[string]any{
		"oidc_discovery_url":     c.OIDCDiscoveryURL,
		"oidc_discovery_ca_pem":  c.OIDCDiscoveryCAPEM,
		"jwks_url":               c.JWKSURL,
		"jwks_ca_pem":            c.JWKSCAPEM,
		"jwt_validation_pubkeys": nz(c.PubKeys),
		"bound_issuer":           c.BoundIssuer,
		"jwt_supported_algs":     nz(c.SupportedAlgs),
		"default_role":           c.DefaultRole,
	}}, nil
}

// fingerprint identifies the key source of a config, so that the key
// cache is dropped when it changes.
func fingerprint(c *config) string {
	return c.OIDCDiscoveryURL + "\x00" + c.OIDCDiscoveryCAPEM + "\x00" + c.JWKSURL + "\x00" + c.JWKSCAPEM
}

// maxDocument bounds a fetched discovery document or key set.
const maxDocument = 1 << 20

func (b *Backend) get(ctx context.Context, url, caPEM string) ([]byte, error) {
	hc, err := b.hc(caPEM)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("bad URL")
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxDocument {
		return nil, fmt.Errorf("GET %s: document over %d bytes", url, maxDocument)
	}
	return body, nil
}

// fetchKeys returns the keys of c: the parsed PEM keys, or the remote
// key set.
func (b *Backend) fetchKeys(ctx context.Context, c *config) ([]Key, error) {
	if len(c.PubKeys) > 0 {
		var out []Key
		for _, p := range c.PubKeys {
			k, err := ParsePublicKeyPEM(p)
			if err != nil {
				return nil, err
			}
			out = append(out, Key{Public: k})
		}
		return out, nil
	}
	jwksURL, ca := c.JWKSURL, c.JWKSCAPEM
	if c.OIDCDiscoveryURL != "" {
		ca = c.OIDCDiscoveryCAPEM
		raw, err := b.get(ctx, strings.TrimSuffix(c.OIDCDiscoveryURL, "/")+"/.well-known/openid-configuration", ca)
		if err != nil {
			return nil, err
		}
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil || doc.JWKSURI == "" {
			return nil, errors.New("the discovery document has no jwks_uri")
		}
		if doc.Issuer != c.OIDCDiscoveryURL {
			return nil, fmt.Errorf("the discovery document's issuer %q is not oidc_discovery_url", doc.Issuer)
		}
		jwksURL = doc.JWKSURI
	}
	raw, err := b.get(ctx, jwksURL, ca)
	if err != nil {
		return nil, err
	}
	return ParseJWKS(raw)
}

// currentKeys returns the cached keys of c, fetching them when the cache
// is stale or belongs to another config, or when refresh is set (a
// signature no cached key verified) and the last fetch is old enough.
func (b *Backend) currentKeys(ctx context.Context, c *config, refresh bool) ([]Key, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	fp := fingerprint(c)
	fresh := b.keysFor == fp && b.keys != nil && now.Sub(b.keysAt) < keysTTL
	if fresh && (!refresh || now.Sub(b.lastFetch) < refetchAfter) {
		return b.keys, false, nil
	}
	b.lastFetch = now
	keys, err := b.fetchKeys(ctx, c)
	if err != nil {
		if b.keysFor == fp && b.keys != nil {
			b.log.WarnContext(ctx, "jwt: key refresh failed; using cached keys", "err", err)
			return b.keys, false, nil
		}
		return nil, false, err
	}
	b.keys, b.keysFor, b.keysAt = keys, fp, now
	return keys, true, nil
}

type roleRequest struct {
	RoleType         *string             `json:"role_type"`
	BoundAudiences   *logical.StringList `json:"bound_audiences"`
	BoundSubject     *string             `json:"bound_subject"`
	BoundClaims      map[string]any      `json:"bound_claims"`
	BoundClaimsType  *string             `json:"bound_claims_type"`
	UserClaim        *string             `json:"user_claim"`
	ClaimMappings    map[string]string   `json:"claim_mappings"`
	GroupsClaim      *string             `json:"groups_claim"`
	ClockSkewLeeway  json.RawMessage     `json:"clock_skew_leeway"`
	ExpirationLeeway json.RawMessage     `json:"expiration_leeway"`
	NotBeforeLeeway  json.RawMessage     `json:"not_before_leeway"`
	tokenparams.Request
}

// parseLeeway reads a leeway: seconds or a duration string; a negative
// number means no leeway at all.
func parseLeeway(field string, raw json.RawMessage, dst *int64) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var s string
	if raw[0] == '"' {
		if json.Unmarshal(raw, &s) != nil {
			return logical.Errorf(logical.Invalid, "%s must be a duration", field)
		}
	} else {
		s = string(raw)
	}
	if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
		*dst = n
		return nil
	}
	d, err := logical.ParseDuration(s)
	if err != nil {
		return logical.Errorf(logical.Invalid, "%s must be a duration", field)
	}
	*dst = int64(d / time.Second)
	return nil
}

func leeway(n int64) time.Duration {
	if n < 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

func (b *Backend) writeRole(ctx context.Context, req *logical.Request, name string) error {
	var in roleRequest
	if err := req.Decode(&in); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	r, err := b.role(ctx, name)
	if err != nil {
		return err
	}
	if r == nil {
		r = &role{RoleType: "jwt", UserClaim: "sub", BoundClaimsType: "string",
			ClockSkewLeeway: 60, ExpirationLeeway: 150, NotBeforeLeeway: 150}
	}
	if in.RoleType != nil {
		switch *in.RoleType {
		case "jwt", "":
			r.RoleType = "jwt"
		case "oidc":
			return logical.Errorf(logical.Invalid, `role_type "oidc" (the browser login flow) is not supported; use "jwt"`)
		default:
			return logical.Errorf(logical.Invalid, "invalid role_type %q", *in.RoleType)
		}
	}
	if in.BoundAudiences != nil {
		r.BoundAudiences = *in.BoundAudiences
	}
	if in.BoundSubject != nil {
		r.BoundSubject = *in.BoundSubject
	}
	if in.BoundClaims != nil {
		for k, v := range in.BoundClaims {
			if !validBound(v) {
				return logical.Errorf(logical.Invalid, "bound_claims: the value of %q must be a string, number, boolean or a list of them", k)
			}
		}
		r.BoundClaims = in.BoundClaims
	}
	if in.BoundClaimsType != nil {
		if t := *in.BoundClaimsType; t != "string" && t != "glob" {
			return logical.Errorf(logical.Invalid, `bound_claims_type must be "string" or "glob"`)
		}
		r.BoundClaimsType = *in.BoundClaimsType
	}
	if in.UserClaim != nil {
		r.UserClaim = strings.TrimSpace(*in.UserClaim)
	}
	if r.UserClaim == "" {
		return logical.Errorf(logical.Invalid, "a user_claim is required")
	}
	if in.ClaimMappings != nil {
		seen := map[string]bool{}
		for _, v := range in.ClaimMappings {
			if v == "" || seen[v] || v == "role" {
				return logical.Errorf(logical.Invalid, "claim_mappings: metadata key %q is empty, repeated or reserved", v)
			}
			seen[v] = true
		}
		r.ClaimMappings = in.ClaimMappings
	}
	if in.GroupsClaim != nil {
		r.GroupsClaim = *in.GroupsClaim
	}
	for _, l := range []struct {
		name string
		raw  json.RawMessage
		dst  *int64
	}{{"clock_skew_leeway", in.ClockSkewLeeway, &r.ClockSkewLeeway}, {"expiration_leeway", in.ExpirationLeeway, &r.ExpirationLeeway}, {"not_before_leeway", in.NotBeforeLeeway, &r.NotBeforeLeeway}} {
		if err := parseLeeway(l.name, l.raw, l.dst); err != nil {
			return err
		}
	}
	if err := in.Apply(&r.Token); err != nil {
		return err
	}
	return authbase.PutJSON(ctx, b.s, "role/"+name, r)
}

func validBound(v any) bool {
	switch x := v.(type) {
	case string, json.Number, bool, float64:
		return true
	case []any:
		for _, e := range x {
			switch e.(type) {
			case string, json.Number, bool, float64:
			default:
				return false
			}
		}
		return len(x) > 0
	}
	return false
}

func (b *Backend) readRole(ctx context.Context, name string) (*logical.Response, error) {
	r, err := b.role(ctx, name)
	if err != nil || r == nil {
		return nil, err
	}
	auds := r.BoundAudiences
	if auds == nil {
		auds = []string{}
	}
	d := map[string]any{
		"role_type":         r.RoleType,
		"bound_audiences":   auds,
		"bound_subject":     r.BoundSubject,
		"bound_claims":      r.BoundClaims,
		"bound_claims_type": r.BoundClaimsType,
		"user_claim":        r.UserClaim,
		"claim_mappings":    r.ClaimMappings,
		"groups_claim":      r.GroupsClaim,
		"clock_skew_leeway": r.ClockSkewLeeway,
		"expiration_leeway": r.ExpirationLeeway,
		"not_before_leeway": r.NotBeforeLeeway,
	}
	r.Token.Fill(d)
	return &logical.Response{Data: d}, nil
}

// refuse is a login refusal: a 400 whose message names what failed.
func refuse(format string, args ...any) error {
	return logical.Errorf(logical.Invalid, format, args...)
}

func (b *Backend) login(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	var in struct {
		Role string `json:"role"`
		JWT  string `json:"jwt"`
	}
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	if in.JWT == "" {
		return nil, logical.Errorf(logical.Invalid, "missing jwt")
	}
	c, err := b.config(ctx)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, logical.Errorf(logical.Invalid, "could not load configuration")
	}
	name := in.Role
	if name == "" {
		name = c.DefaultRole
	}
	if name == "" {
		return nil, logical.Errorf(logical.Invalid, "missing role")
	}
	r, err := b.role(ctx, name)
	if err != nil {
		return nil, err
	}
	if !authbase.ValidName(name) || r == nil {
		return nil, logical.Errorf(logical.Invalid, "role %q could not be found", name)
	}
	tok, err := Parse(in.JWT)
	if err != nil {
		return nil, refuse("error validating token: %v", err)
	}
	keys, fetched, err := b.currentKeys(ctx, c, false)
	if err != nil {
		b.log.WarnContext(ctx, "jwt: fetching keys failed", "err", err)
		return nil, logical.Errorf(logical.Unavailable, "error fetching the signing keys")
	}
	err = tok.Verify(keys, c.SupportedAlgs)
	if errors.Is(err, ErrSignature) && !fetched && len(c.PubKeys) == 0 {
		if keys, _, err = b.currentKeys(ctx, c, true); err == nil {
			err = tok.Verify(keys, c.SupportedAlgs)
		}
	}
	if err != nil {
		return nil, refuse("error validating token: %v", err)
	}
	issuer := c.BoundIssuer
	if issuer == "" && c.OIDCDiscoveryURL != "" {
		issuer = c.OIDCDiscoveryURL
	}
	if err := tok.Validate(Expected{
		Issuer:           issuer,
		Audiences:        r.BoundAudiences,
		Now:              b.now(),
		ExpirationLeeway: leeway(r.ExpirationLeeway),
		NotBeforeLeeway:  leeway(r.NotBeforeLeeway),
		ClockSkew:        leeway(r.ClockSkewLeeway),
	}); err != nil {
		return nil, refuse("error validating claims: %v", err)
	}
	if r.BoundSubject != "" {
		if sub, _ := tok.Claims["sub"].(string); sub != r.BoundSubject {
			return nil, refuse("error validating claims: sub (subject) claim does not match bound_subject")
		}
	}
	for k, want := range r.BoundClaims {
		got, ok := claim(tok.Claims, k)
		if !ok {
			return nil, refuse("error validating claims: claim %q is missing", k)
		}
		if !claimMatches(got, want, r.BoundClaimsType == "glob") {
			return nil, refuse("error validating claims: claim %q does not match any associated bound claim values", k)
		}
	}
	uv, ok := claim(tok.Claims, r.UserClaim)
	user, isStr := scalar(uv)
	if !ok || !isStr || user == "" {
		return nil, refuse("claim %q not found in token or not a string", r.UserClaim)
	}
	meta := map[string]string{"role": name}
	for cl, key := range r.ClaimMappings {
		if v, ok := claim(tok.Claims, cl); ok {
			if s, ok := scalar(v); ok {
				meta[key] = s
			}
		}
	}
	auth, err := r.Token.Auth(req.RemoteAddr)
	if err != nil {
		return nil, err
	}
	auth.Metadata = meta
	auth.DisplayName = user
	auth.Alias = user
	return &logical.Response{Auth: auth}, nil
}

// claim returns a claim by name, or by JSON pointer ("/a/b") into nested
// objects.
func claim(claims map[string]any, name string) (any, bool) {
	if !strings.HasPrefix(name, "/") {
		v, ok := claims[name]
		return v, ok
	}
	var cur any = claims
	for _, part := range strings.Split(name[1:], "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// scalar returns a string, number or boolean claim as a string.
func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	}
	return "", false
}

// claimMatches reports whether a claim (a scalar or a list of them)
// matches a bound value (a scalar or a list): any element of one equal
// to (or, with glob, matching) any of the other.
func claimMatches(got, want any, glob bool) bool {
	wants := []any{want}
	if l, ok := want.([]any); ok {
		wants = l
	}
	gots := []any{got}
	if l, ok := got.([]any); ok {
		gots = l
	}
	for _, g := range gots {
		gs, ok := scalar(g)
		if !ok {
			continue
		}
		for _, w := range wants {
			ws, ok := scalar(w)
			if !ok {
				continue
			}
			if ws == gs {
				return true
			}
			if glob && globMatch(ws, gs) {
				return true
			}
		}
	}
	return false
}

// globMatch reports whether s matches pattern, in which "*" matches any
// run of characters (slashes too) and every other character itself.
func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return len(s) >= len(last) && strings.HasSuffix(s, last)
}
