package operator

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/coffer-dev/coffer/api"
	"github.com/coffer-dev/coffer/apis/coffer/v1alpha1"
)

// identity is what makes two stores share one login: the same server,
// CA, method and principal. Its fields are all comparable.
type identity struct {
	server, caHash string
	// kubernetes auth
	mount, role, saNamespace, saName, audiences string
	// token auth
	secretNamespace, secretName, secretKey string
}

func (id identity) kubernetes() bool { return id.role != "" }

// String names the identity in logs; it holds no secret.
func (id identity) String() string {
	if id.kubernetes() {
		return fmt.Sprintf("%s auth/%s role=%s sa=%s/%s", id.server, id.mount, id.role, id.saNamespace, id.saName)
	}
	return fmt.Sprintf("%s token=%s/%s[%s]", id.server, id.secretNamespace, id.secretName, id.secretKey)
}

// storeRef is a resolved store: its spec and where it lives.
type storeRef struct {
	Kind, Name, Namespace string // Namespace is "" for a cluster store
	Spec                  v1alpha1.StoreSpec
}

// resolve returns the login identity of store for a CofferSecret in
// namespace ns ("" when checking a cluster store on its own, in which case
// ok is false if the identity depends on the namespace).
func resolve(st storeRef, ns string) (id identity, ok bool, err error) {
	spec := st.Spec
	if spec.Server == "" {
		return identity{}, false, fmt.Errorf("%w: spec.server is empty", ErrInvalidConfig)
	}
	id.server = strings.TrimSuffix(spec.Server, "/")
	if len(spec.CABundle) > 0 {
		sum := sha256.Sum256(spec.CABundle)
		id.caHash = hex.EncodeToString(sum[:8])
	}
	pick := func(requested string) (string, error) {
		switch {
		case st.Namespace != "" && requested != "" && requested != st.Namespace:
			return "", fmt.Errorf("%w: a CofferStore may not name another namespace (%q)", ErrInvalidConfig, requested)
		case st.Namespace != "":
			return st.Namespace, nil
		case requested != "":
			return requested, nil
		}
		return ns, nil
	}
	switch a := spec.Auth; {
	case a.Kubernetes != nil && a.TokenSecretRef != nil:
		return identity{}, false, fmt.Errorf("%w: set only one of auth.kubernetes and auth.tokenSecretRef", ErrInvalidConfig)
	case a.Kubernetes != nil:
		k := a.Kubernetes
		if k.Role == "" || k.ServiceAccountRef.Name == "" {
			return identity{}, false, fmt.Errorf("%w: auth.kubernetes needs role and serviceAccountRef.name", ErrInvalidConfig)
		}
		id.mount = strings.Trim(k.MountPath, "/")
		if id.mount == "" {
			id.mount = "kubernetes"
		}
		id.role, id.saName = k.Role, k.ServiceAccountRef.Name
		id.audiences = strings.Join(k.ServiceAccountRef.Audiences, ",")
		if id.saNamespace, err = pick(k.ServiceAccountRef.Namespace); err != nil {
			return identity{}, false, err
		}
		return id, id.saNamespace != "", nil
	case a.TokenSecretRef != nil:
		r := a.TokenSecretRef
		if r.Name == "" {
			return identity{}, false, fmt.Errorf("%w: auth.tokenSecretRef needs name", ErrInvalidConfig)
		}
		id.secretName, id.secretKey = r.Name, r.Key
		if id.secretKey == "" {
			id.secretKey = "token"
		}
		if id.secretNamespace, err = pick(r.Namespace); err != nil {
			return identity{}, false, err
		}
		return id, id.secretNamespace != "", nil
	}
	return identity{}, false, fmt.Errorf("%w: spec.auth needs kubernetes or tokenSecretRef", ErrInvalidConfig)
}

// tokenRequester issues service-account tokens (client-go's
// CoreV1().ServiceAccounts(ns).CreateToken).
type tokenRequester interface {
	CreateToken(ctx context.Context, namespace, name string, audiences []string, ttl time.Duration) (string, error)
}

// sessions holds one logged-in session per identity. Safe for concurrent use.
type sessions struct {
	tokens tokenRequester
	reader client.Reader // reads token Secrets
	now    func() time.Time

	logins  atomic.Int64 // successful logins, for tests and metrics
	onLogin func()       // nil: nothing
	log     *slog.Logger // nil: discard

	mu sync.Mutex // guards following
	m  map[identity]*session
}

func newSessions(tr tokenRequester, r client.Reader, now func() time.Time) *sessions {
	return &sessions{tokens: tr, reader: r, now: now, m: map[identity]*session{}}
}

// get returns the session of id, creating it (without logging in).
func (ss *sessions) get(id identity, caBundle []byte) (*session, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s, ok := ss.m[id]; ok {
		return s, nil
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// HTTP/1.1 only: the event stream upgrades the connection to a WebSocket.
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(caBundle) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caBundle) {
			return nil, fmt.Errorf("%w: caBundle holds no PEM certificate", ErrInvalidConfig)
		}
		tlsCfg.RootCAs = pool
	}
	tr.TLSClientConfig = tlsCfg
	hc := &http.Client{Transport: tr}
	c, err := api.NewClient(api.Config{Address: id.server, HTTPClient: &http.Client{Transport: tr, Timeout: 30 * time.Second}})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	s := &session{id: id, owner: ss, client: c, stream: hc, kv: map[string]int{}}
	ss.m[id] = s
	return s, nil
}

// each calls fn for every session.
func (ss *sessions) each(fn func(*session)) {
	ss.mu.Lock()
	all := make([]*session, 0, len(ss.m))
	for _, s := range ss.m {
		all = append(all, s)
	}
	ss.mu.Unlock()
	for _, s := range all {
		fn(s)
	}
}

// session is one login to one server. Its token is obtained on first use,
// renewed past half its TTL and replaced by a new login only when renewal
// fails or the server no longer accepts it.
type session struct {
	id     identity
	owner  *sessions
	client *api.Client  // without token
	stream *http.Client // HTTP/1.1, no timeout: the event stream

	mu        sync.Mutex // guards following
	token     string
	obtained  time.Time
	ttl       time.Duration // 0: does not expire
	renewable bool
	kv        map[string]int // mount → KV version
}

// Token returns a valid token, logging in or renewing when needed.
func (s *session) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenLocked(ctx)
}

func (s *session) tokenLocked(ctx context.Context) (string, error) {
	if !s.id.kubernetes() {
		return s.secretTokenLocked(ctx)
	}
	now := s.owner.now()
	if s.token != "" {
		age := now.Sub(s.obtained)
		switch {
		case s.ttl == 0 || age < s.ttl/2:
			return s.token, nil
		case s.renewable && age < s.ttl:
			if err := s.renewLocked(ctx); err == nil {
				return s.token, nil
			}
		}
		s.token = ""
	}
	if err := s.loginLocked(ctx); err != nil {
		return "", err
	}
	return s.token, nil
}

func (s *session) secretTokenLocked(ctx context.Context) (string, error) {
	var sec corev1.Secret
	key := types.NamespacedName{Namespace: s.id.secretNamespace, Name: s.id.secretName}
	if err := s.owner.reader.Get(ctx, key, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return "", fmt.Errorf("%w: token Secret %s not found", ErrInvalidConfig, key)
		}
		return "", fmt.Errorf("operator: read token Secret %s: %w", key, err)
	}
	tok := strings.TrimSpace(string(sec.Data[s.id.secretKey]))
	if tok == "" {
		return "", fmt.Errorf("%w: token Secret %s has no key %q", ErrInvalidConfig, key, s.id.secretKey)
	}
	s.token = tok
	return tok, nil
}

// loginLocked requests a service-account token and logs in with it.
func (s *session) loginLocked(ctx context.Context) error {
	var aud []string
	if s.id.audiences != "" {
		aud = strings.Split(s.id.audiences, ",")
	}
	jwt, err := s.owner.tokens.CreateToken(ctx, s.id.saNamespace, s.id.saName, aud, 10*time.Minute)
	if err != nil {
		return fmt.Errorf("%w: TokenRequest for %s/%s: %v", ErrLoginRefused, s.id.saNamespace, s.id.saName, err)
	}
	resp, err := s.client.Do(ctx, http.MethodPost, "auth/"+s.id.mount+"/login", map[string]any{"role": s.id.role, "jwt": jwt})
	if err != nil {
		var ae *api.Error
		if errors.As(err, &ae) && (ae.StatusCode == http.StatusBadRequest || ae.StatusCode == http.StatusForbidden ||
			ae.StatusCode == http.StatusUnauthorized || ae.StatusCode == http.StatusNotFound) {
			return fmt.Errorf("%w: auth/%s/login role %q: %v", ErrLoginRefused, s.id.mount, s.id.role, err)
		}
		return fmt.Errorf("operator: login auth/%s: %w", s.id.mount, err)
	}
	if resp.Auth == nil || resp.Auth.ClientToken == "" {
		return fmt.Errorf("%w: auth/%s/login returned no token", ErrLoginRefused, s.id.mount)
	}
	s.token = resp.Auth.ClientToken
	s.obtained = s.owner.now()
	s.ttl = time.Duration(resp.Auth.LeaseDuration) * time.Second
	s.renewable = resp.Auth.Renewable
	s.owner.logins.Add(1)
	if s.owner.onLogin != nil {
		s.owner.onLogin()
	}
	if s.owner.log != nil {
		s.owner.log.InfoContext(ctx, "logged in", "store", s.id.String(), "ttl", s.ttl, "renewable", s.renewable)
	}
	return nil
}

// renewLocked extends the current token.
func (s *session) renewLocked(ctx context.Context) error {
	resp, err := s.client.WithToken(s.token).Do(ctx, http.MethodPost, "auth/token/renew-self", map[string]any{})
	if err != nil {
		return err
	}
	if resp.Auth == nil {
		return errors.New("operator: renew-self returned no auth")
	}
	s.obtained = s.owner.now()
	s.ttl = time.Duration(resp.Auth.LeaseDuration) * time.Second
	s.renewable = resp.Auth.Renewable
	return nil
}

// maintain renews the token when it is past half its TTL, so an idle
// session (long refreshInterval, events only) keeps its token.
func (s *session) maintain(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && s.id.kubernetes() {
		_, _ = s.tokenLocked(ctx)
	}
}

// invalidate forgets tok if it is still the current token.
func (s *session) invalidate(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token == tok && s.id.kubernetes() {
		s.token = ""
	}
}

// do runs fn with an authenticated client. When fn is denied and the
// token itself is no longer valid (revoked, expired), it logs in again
// and retries once; a denial by policy is returned as is.
func (s *session) do(ctx context.Context, fn func(c *api.Client) error) error {
	tok, err := s.Token(ctx)
	if err != nil {
		return err
	}
	err = fn(s.client.WithToken(tok))
	if !errors.Is(err, api.ErrPermissionDenied) || !s.id.kubernetes() {
		return err
	}
	if _, lerr := s.client.WithToken(tok).Read(ctx, "auth/token/lookup-self"); !errors.Is(lerr, api.ErrPermissionDenied) {
		return err
	}
	s.invalidate(tok)
	if tok, err = s.Token(ctx); err != nil {
		return err
	}
	return fn(s.client.WithToken(tok))
}

// kvVersion returns the KV version of mount (1 or 2), asking the server
// once per session.
func (s *session) kvVersion(ctx context.Context, mount string) (int, error) {
	s.mu.Lock()
	v, ok := s.kv[mount]
	s.mu.Unlock()
	if ok {
		return v, nil
	}
	var resp *api.Response
	err := s.do(ctx, func(c *api.Client) (err error) {
		resp, err = c.Read(ctx, "sys/internal/ui/mounts/"+mount)
		return err
	})
	if err != nil {
		if errors.Is(err, api.ErrNotFound) {
			return 0, fmt.Errorf("%w: no mount %q on the server", ErrInvalidConfig, mount)
		}
		return 0, fmt.Errorf("operator: detect KV version of %q: %w", mount, err)
	}
	v = 1
	if opts, ok := resp.Data["options"].(map[string]any); ok && fmt.Sprint(opts["version"]) == "2" {
		v = 2
	}
	s.mu.Lock()
	s.kv[mount] = v
	s.mu.Unlock()
	return v, nil
}

// kubeTokens implements tokenRequester with client-go.
type kubeTokens struct {
	create func(ctx context.Context, ns, name string, tr *authenticationv1.TokenRequest, opts metav1.CreateOptions) (*authenticationv1.TokenRequest, error)
}

func (k kubeTokens) CreateToken(ctx context.Context, ns, name string, audiences []string, ttl time.Duration) (string, error) {
	secs := int64(ttl / time.Second)
	tr, err := k.create(ctx, ns, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &secs},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return tr.Status.Token, nil
}
