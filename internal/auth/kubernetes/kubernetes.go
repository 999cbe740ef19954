// Package kubernetes is Vault's Kubernetes auth method: a pod logs in
// with its service-account token, which the Kubernetes API server checks
// through the TokenReview API, and gets the policies of a role bound to
// its service account's name and namespace.
//
// Paths, relative to the mount (auth/kubernetes/ by default), with
// Vault's fields:
//
//	config       kubernetes_host, kubernetes_ca_cert, token_reviewer_jwt,
//	             issuer, disable_iss_validation, disable_local_ca_jwt,
//	             pem_keys (accepted and ignored: the API server checks)
//	role         LIST
//	role/<name>  bound_service_account_names, bound_service_account_namespaces
//	             (both may hold globs: "*", "dev-*"), audience,
//	             alias_name_source, token_*
//	login        unauthenticated: role, jwt
//
// TokenReview is called with token_reviewer_jwt; when it is unset, with
// the server's own service-account token (LocalTokenFile, re-read at
// every login since projected tokens rotate) unless disable_local_ca_jwt;
// and otherwise with the caller's own JWT, which then needs the
// system:auth-delegator role, as in Vault.
//
// Every refused login is a 403 with errors ["permission denied",
// "<what failed>"]: an unbound name or namespace, a wrong audience, or a
// token the API server does not accept (expired, for a deleted service
// account, garbage). The token never appears in an error or a log.
package kubernetes

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	"k8s.io/client-go/rest"

	"github.com/coffer-dev/coffer/internal/auth/authbase"
	"github.com/coffer-dev/coffer/internal/auth/jwt"
	"github.com/coffer-dev/coffer/internal/auth/tokenparams"
	"github.com/coffer-dev/coffer/internal/logical"
)

// The in-cluster service-account files a server running in a pod has.
const (
	DefaultLocalTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	DefaultLocalCAFile    = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
)

// Backend is the Kubernetes auth method. It is safe for concurrent use.
type Backend struct {
	s          logical.Storage
	now        func() time.Time
	log        *slog.Logger
	tokenFile  string
	caFile     string
	reviewTime time.Duration
	routes     *authbase.Router // set by New, then read-only

	mu sync.Mutex // serializes config and role writes
}

// Config configures New.
type Config struct {
	Storage logical.Storage  // required
	Now     func() time.Time // nil: time.Now
	Logger  *slog.Logger     // nil: discard
	// LocalTokenFile and LocalCAFile are the server's own service-account
	// token and CA; empty: DefaultLocalTokenFile, DefaultLocalCAFile. A
	// missing file is not an error: it is not used.
	LocalTokenFile, LocalCAFile string
	// ReviewTimeout bounds one TokenReview; zero: 10 seconds.
	ReviewTimeout time.Duration
}

// New returns the Kubernetes backend over cfg.Storage.
func New(cfg Config) (*Backend, error) {
	if cfg.Storage == nil {
		return nil, errors.New("kubernetes: storage is required")
	}
	b := &Backend{s: cfg.Storage, now: cfg.Now, log: cfg.Logger, tokenFile: cfg.LocalTokenFile, caFile: cfg.LocalCAFile, reviewTime: cfg.ReviewTimeout}
	if b.now == nil {
		b.now = time.Now
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.tokenFile == "" {
		b.tokenFile = DefaultLocalTokenFile
	}
	if b.caFile == "" {
		b.caFile = DefaultLocalCAFile
	}
	if b.reviewTime == 0 {
		b.reviewTime = 10 * time.Second
	}
	b.routes = &authbase.Router{Storage: b.s, Login: b.login, ReadConfig: b.readConfig, WriteConfig: b.writeConfig, ReadRole: b.readRole, WriteRole: b.writeRole}
	return b, nil
}

// Factory builds the Kubernetes backend for a "kubernetes" mount.
func Factory(ctx context.Context, cfg logical.BackendConfig) (logical.Backend, error) {
	return New(Config{Storage: cfg.Storage, Now: cfg.Now, Logger: cfg.Logger})
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

type config struct {
	Host                 string   `json:"kubernetes_host"`
	CACert               string   `json:"kubernetes_ca_cert"`
	ReviewerJWT          string   `json:"token_reviewer_jwt"`
	PEMKeys              []string `json:"pem_keys"`
	Issuer               string   `json:"issuer"`
	DisableISSValidation bool     `json:"disable_iss_validation"`
	DisableLocalCAJWT    bool     `json:"disable_local_ca_jwt"`
}

type role struct {
	Names           []string           `json:"bound_service_account_names"`
	Namespaces      []string           `json:"bound_service_account_namespaces"`
	Audience        string             `json:"audience"`
	AliasNameSource string             `json:"alias_name_source"`
	Token           tokenparams.Params `json:"token"`
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
	Host                 *string             `json:"kubernetes_host"`
	CACert               *string             `json:"kubernetes_ca_cert"`
	ReviewerJWT          *string             `json:"token_reviewer_jwt"`
	PEMKeys              *logical.StringList `json:"pem_keys"`
	Issuer               *string             `json:"issuer"`
	DisableISSValidation *logical.Bool       `json:"disable_iss_validation"`
	DisableLocalCAJWT    *logical.Bool       `json:"disable_local_ca_jwt"`
}

func (b *Backend) writeConfig(ctx context.Context, req *logical.Request) error {
	var in configRequest
	if err := req.Decode(&in); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c, err := b.config(ctx)
	if err != nil {
		return err
	}
	if c == nil {
		c = &config{DisableISSValidation: true}
	}
	if in.Host != nil {
		c.Host = strings.TrimSpace(*in.Host)
	}
	if in.CACert != nil {
		c.CACert = *in.CACert
	}
	if in.ReviewerJWT != nil {
		c.ReviewerJWT = strings.TrimSpace(*in.ReviewerJWT)
	}
	if in.PEMKeys != nil {
		c.PEMKeys = *in.PEMKeys
	}
	if in.Issuer != nil {
		c.Issuer = *in.Issuer
	}
	if in.DisableISSValidation != nil {
		c.DisableISSValidation = bool(*in.DisableISSValidation)
	}
	if in.DisableLocalCAJWT != nil {
		c.DisableLocalCAJWT = bool(*in.DisableLocalCAJWT)
	}
	if c.Host == "" {
		return logical.Errorf(logical.Invalid, "no host provided")
	}
	if !strings.HasPrefix(c.Host, "https://") && !strings.HasPrefix(c.Host, "http://") {
		return logical.Errorf(logical.Invalid, "kubernetes_host must be a URL (https://host:port)")
	}
	if c.CACert != "" {
		if blk, _ := pem.Decode([]byte(c.CACert)); blk == nil {
			return logical.Errorf(logical.Invalid, "kubernetes_ca_cert is not PEM")
		}
	}
	if c.ReviewerJWT != "" {
		if _, err := jwt.Parse(c.ReviewerJWT); err != nil {
			return logical.Errorf(logical.Invalid, "token_reviewer_jwt is not a JWT")
		}
	}
	return authbase.PutJSON(ctx, b.s, "config", c)
}

func (b *Backend) readConfig(ctx context.Context) (*logical.Response, error) {
	c, err := b.config(ctx)
	if err != nil || c == nil {
		return nil, err
	}
	keys := c.PEMKeys
	if keys == nil {
		keys = []string{}
	}
	return &logical.Response{Data: map[string]any{
		"kubernetes_host":        c.Host,
		"kubernetes_ca_cert":     c.CACert,
		"token_reviewer_jwt_set": c.ReviewerJWT != "",
		"pem_keys":               keys,
		"issuer":                 c.Issuer,
		"disable_iss_validation": c.DisableISSValidation,
		"disable_local_ca_jwt":   c.DisableLocalCAJWT,
	}}, nil
}

type roleRequest struct {
	Names           *logical.StringList `json:"bound_service_account_names"`
	Namespaces      *logical.StringList `json:"bound_service_account_namespaces"`
	Audience        *string             `json:"audience"`
	AliasNameSource *string             `json:"alias_name_source"`
	tokenparams.Request
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
		r = &role{AliasNameSource: "serviceaccount_uid"}
	}
	if in.Names != nil {
		r.Names = *in.Names
	}
	if in.Namespaces != nil {
		r.Namespaces = *in.Namespaces
	}
	if in.Audience != nil {
		r.Audience = *in.Audience
	}
	if in.AliasNameSource != nil {
		switch s := *in.AliasNameSource; s {
		case "", "serviceaccount_uid":
			r.AliasNameSource = "serviceaccount_uid"
		case "serviceaccount_name":
			r.AliasNameSource = s
		default:
			return logical.Errorf(logical.Invalid, `alias_name_source must be "serviceaccount_uid" or "serviceaccount_name"`)
		}
	}
	if len(r.Names) == 0 {
		return logical.Errorf(logical.Invalid, `"bound_service_account_names" can not be empty`)
	}
	if len(r.Namespaces) == 0 {
		return logical.Errorf(logical.Invalid, `"bound_service_account_namespaces" can not be empty`)
	}
	if len(r.Names) > 1 && slices.Contains(r.Names, "*") {
		return logical.Errorf(logical.Invalid, `can not mix "*" with values`)
	}
	if len(r.Namespaces) > 1 && slices.Contains(r.Namespaces, "*") {
		return logical.Errorf(logical.Invalid, `can not mix "*" with values`)
	}
	if err := in.Apply(&r.Token); err != nil {
		return err
	}
	return authbase.PutJSON(ctx, b.s, "role/"+name, r)
}

func (b *Backend) readRole(ctx context.Context, name string) (*logical.Response, error) {
	r, err := b.role(ctx, name)
	if err != nil || r == nil {
		return nil, err
	}
	d := map[string]any{
		"bound_service_account_names":      r.Names,
		"bound_service_account_namespaces": r.Namespaces,
		"audience":                         r.Audience,
		"alias_name_source":                r.AliasNameSource,
	}
	r.Token.Fill(d)
	return &logical.Response{Data: d}, nil
}

// denied is a refused login: 403 "permission denied" and the reason.
func denied(reason string) error {
	return &logical.Error{Code: logical.PermissionDenied, Message: "permission denied: " + reason, Messages: []string{"permission denied", reason}}
}

// serviceAccount is who a token claims to be.
type serviceAccount struct {
	Namespace, Name, UID, SecretName string
}

// claimed reads the service account from a token's claims, projected
// ("kubernetes.io": {...}) or legacy (secret-based) tokens alike.
func claimed(c map[string]any) serviceAccount {
	var sa serviceAccount
	if k8s, ok := c["kubernetes.io"].(map[string]any); ok {
		sa.Namespace, _ = k8s["namespace"].(string)
		if s, ok := k8s["serviceaccount"].(map[string]any); ok {
			sa.Name, _ = s["name"].(string)
			sa.UID, _ = s["uid"].(string)
		}
		return sa
	}
	sa.Namespace, _ = c["kubernetes.io/serviceaccount/namespace"].(string)
	sa.Name, _ = c["kubernetes.io/serviceaccount/service-account.name"].(string)
	sa.UID, _ = c["kubernetes.io/serviceaccount/service-account.uid"].(string)
	sa.SecretName, _ = c["kubernetes.io/serviceaccount/secret.name"].(string)
	return sa
}

func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if globMatch(p, s) {
			return true
		}
	}
	return false
}

func (b *Backend) login(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	var in struct {
		Role string `json:"role"`
		JWT  string `json:"jwt"`
	}
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	if in.Role == "" {
		return nil, logical.Errorf(logical.Invalid, "missing role")
	}
	if in.JWT == "" {
		return nil, logical.Errorf(logical.Invalid, "missing jwt")
	}
	c, err := b.config(ctx)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, logical.Errorf(logical.Invalid, "could not load backend configuration")
	}
	if !authbase.ValidName(in.Role) {
		return nil, logical.Errorf(logical.Invalid, "invalid role name %q", in.Role)
	}
	r, err := b.role(ctx, in.Role)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, logical.Errorf(logical.Invalid, "invalid role name %q", in.Role)
	}
	// The claims are read unverified only to refuse early; TokenReview
	// below is what authenticates the token.
	tok, err := jwt.Parse(in.JWT)
	if err != nil {
		return nil, denied("the jwt is not a well-formed JSON Web Token")
	}
	sa := claimed(tok.Claims)
	if sa.Name == "" || sa.Namespace == "" {
		return nil, denied("the jwt is not a Kubernetes service account token")
	}
	if !matchAny(r.Names, sa.Name) {
		return nil, denied("service account name not authorized")
	}
	if !matchAny(r.Namespaces, sa.Namespace) {
		return nil, denied("namespace not authorized")
	}
	if !c.DisableISSValidation && c.Issuer != "" {
		if iss, _ := tok.Claims["iss"].(string); iss != c.Issuer {
			return nil, denied("invalid issuer (iss) claim")
		}
	}
	var auds []string
	if r.Audience != "" {
		got, err := tok.Audiences()
		if err != nil || !slices.Contains(got, r.Audience) {
			return nil, denied("invalid audience (aud) claim: audience claim does not match any expected audience")
		}
		auds = []string{r.Audience}
	}
	reviewed, err := b.review(ctx, c, in.JWT, auds)
	if err != nil {
		return nil, err
	}
	if reviewed.Namespace != sa.Namespace || reviewed.Name != sa.Name || (sa.UID != "" && reviewed.UID != sa.UID) {
		return nil, denied("the token review does not match the token's service account")
	}
	sa.UID = reviewed.UID
	auth, err := r.Token.Auth(req.RemoteAddr)
	if err != nil {
		return nil, err
	}
	auth.Metadata = map[string]string{
		"service_account_name":        sa.Name,
		"service_account_namespace":   sa.Namespace,
		"service_account_uid":         sa.UID,
		"service_account_secret_name": sa.SecretName,
		"role":                        in.Role,
	}
	auth.DisplayName = sa.Namespace + "-" + sa.Name
	auth.Alias = sa.UID
	if r.AliasNameSource == "serviceaccount_name" {
		auth.Alias = sa.Namespace + "/" + sa.Name
	}
	b.log.InfoContext(ctx, "kubernetes login", "role", in.Role, "namespace", sa.Namespace, "service_account", sa.Name)
	return &logical.Response{Auth: auth}, nil
}

// review asks the API server who token belongs to. Any failure to
// authenticate is a denied error; failures to reach the API server are
// Unavailable.
func (b *Backend) review(ctx context.Context, c *config, token string, audiences []string) (serviceAccount, error) {
	rc := &rest.Config{Host: c.Host, Timeout: b.reviewTime}
	rc.CAData = []byte(c.CACert)
	bearer := c.ReviewerJWT
	if !c.DisableLocalCAJWT {
		if bearer == "" {
			if raw, err := os.ReadFile(b.tokenFile); err == nil {
				bearer = strings.TrimSpace(string(raw))
			}
		}
		if c.CACert == "" {
			if raw, err := os.ReadFile(b.caFile); err == nil {
				rc.CAData = raw
			}
		}
	}
	if bearer == "" {
		bearer = token // the caller's own JWT reviews itself, as Vault does
	}
	rc.BearerToken = bearer
	cl, err := authclient.NewForConfig(rc)
	if err != nil {
		b.log.ErrorContext(ctx, "kubernetes: TokenReview client", "err", err)
		return serviceAccount{}, logical.Errorf(logical.Unavailable, "kubernetes: cannot build a client for kubernetes_host")
	}
	ctx, cancel := context.WithTimeout(ctx, b.reviewTime)
	defer cancel()
	tr, err := cl.TokenReviews().Create(ctx, &authv1.TokenReview{Spec: authv1.TokenReviewSpec{Token: token, Audiences: audiences}}, metav1.CreateOptions{})
	if err != nil {
		b.log.WarnContext(ctx, "kubernetes: TokenReview failed", "err", redact(err.Error(), token))
		var status interface{ Status() metav1.Status }
		if errors.As(err, &status) {
			if code := status.Status().Code; code == 401 || code == 403 {
				return serviceAccount{}, denied(fmt.Sprintf("the token reviewer was refused by the API server (%d): check token_reviewer_jwt and its system:auth-delegator binding", code))
			}
		}
		return serviceAccount{}, logical.Errorf(logical.Unavailable, "kubernetes: the TokenReview request failed")
	}
	if !tr.Status.Authenticated {
		reason := "the API server did not authenticate the token"
		if tr.Status.Error != "" {
			reason += ": " + redact(tr.Status.Error, token)
		}
		return serviceAccount{}, denied(reason)
	}
	if len(audiences) > 0 && !slices.ContainsFunc(tr.Status.Audiences, func(a string) bool { return slices.Contains(audiences, a) }) {
		return serviceAccount{}, denied("invalid audience (aud) claim: the token review found no expected audience")
	}
	parts := strings.Split(tr.Status.User.Username, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" {
		return serviceAccount{}, denied("the token does not belong to a service account")
	}
	return serviceAccount{Namespace: parts[2], Name: parts[3], UID: tr.Status.User.UID}, nil
}

// redact removes the token from a message that might quote it.
func redact(msg, token string) string {
	if token == "" {
		return msg
	}
	return strings.ReplaceAll(msg, token, "<token>")
}

// globMatch reports whether s matches pattern, in which "*" matches any
// run of characters and every other character itself.
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
