// Package k8stest starts a real Kubernetes API server (kube-apiserver and
// etcd, through sigs.k8s.io/controller-runtime/pkg/envtest) for the tests
// of every package that talks to Kubernetes.
//
// The binaries are found through KUBEBUILDER_ASSETS, which
// hack/build-envtest-bins.sh prints (it builds them once from the Go module
// proxy and caches them outside the repository):
//
//	export KUBEBUILDER_ASSETS=$(hack/build-envtest-bins.sh)
//
// One API server serves a whole test binary: call Main from TestMain and
// Env from the tests.
//
//	func TestMain(m *testing.M) { k8stest.Main(m) }
//
//	func TestLogin(t *testing.T) {
//		env := k8stest.Env(t)
//		sa := env.ServiceAccount(t, "team-a", "app")
//		...
//	}
//
// envtest starts kube-apiserver with RBAC authorization and with
// --service-account-issuer, --service-account-key-file and
// --service-account-signing-key-file set, so TokenRequest issues real
// service-account tokens and TokenReview checks them. The ServiceAccount
// admission plugin is disabled (no token controller runs), so tokens come
// only from TokenRequest, as in a modern cluster.
package k8stest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ErrNoAssets is returned by Start when KUBEBUILDER_ASSETS is unset or does
// not hold the binaries.
var ErrNoAssets = errors.New("k8stest: KUBEBUILDER_ASSETS must name a directory holding kube-apiserver and etcd; build them with `export KUBEBUILDER_ASSETS=$(hack/build-envtest-bins.sh)` (the first build takes 10-20 minutes, later runs reuse the cache)")

// Cluster is a running API server.
type Cluster struct {
	// Config is an admin rest.Config for the API server.
	Config *rest.Config
	// Client is a clientset built from Config.
	Client *kubernetes.Clientset
	// Host is the API server's URL ("https://127.0.0.1:port").
	Host string
	// CACert is the PEM CA certificate that signs the API server's serving
	// certificate.
	CACert []byte
	// Issuer is the service-account token issuer (the "iss" claim).
	Issuer string

	env *envtest.Environment
}

// Start starts an API server; the caller must Stop it. It returns an error
// wrapping ErrNoAssets when the binaries cannot be found.
func Start() (*Cluster, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		return nil, ErrNoAssets
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() {
			return nil, fmt.Errorf("%w (missing %s in %s)", ErrNoAssets, b, dir)
		}
	}
	env := &envtest.Environment{BinaryAssetsDirectory: dir}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("k8stest: start envtest: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		env.Stop()
		return nil, fmt.Errorf("k8stest: clientset: %w", err)
	}
	c := &Cluster{Config: cfg, Client: cs, Host: cfg.Host, CACert: cfg.CAData, env: env}
	c.Issuer = issuerOf(env)
	return c, nil
}

// issuerOf returns the issuer envtest configures by default
// (--service-account-issuer, the secure serving URL with path "/"), as a
// service-account token's "iss" claim carries it.
func issuerOf(env *envtest.Environment) string {
	if v := env.ControlPlane.APIServer.Configure().Get("service-account-issuer").Get(nil); len(v) > 0 {
		return v[0]
	}
	return env.ControlPlane.APIServer.SecureServing.URL("https", "/").String()
}

// Stop stops the API server and etcd. It is safe to call more than once.
func (c *Cluster) Stop() error {
	if c == nil || c.env == nil {
		return nil
	}
	env := c.env
	c.env = nil
	return env.Stop()
}

var (
	mu      sync.Mutex // guards following
	shared  *Cluster
	started bool
	startEr error
)

// Main runs the tests of a package with a shared API server, started on
// first use by Env and stopped after m.Run. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	mu.Lock()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "k8stest: stop:", err)
		}
	}
	mu.Unlock()
	os.Exit(code)
}

// Env returns the test binary's shared API server, starting it on first
// use. It fails the test (naming the command that builds the binaries)
// when they are missing: a missing API server is a defect, not a skip.
func Env(t testing.TB) *Cluster {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if !started {
		started = true
		shared, startEr = Start()
	}
	if startEr != nil {
		t.Fatal(startEr)
	}
	return shared
}

// Namespace creates a namespace named name (it may exist already).
func (c *Cluster) Namespace(t testing.TB, name string) {
	t.Helper()
	_, err := c.Client.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

// ServiceAccount creates the namespace (if needed) and a service account
// in it, and returns the account.
func (c *Cluster) ServiceAccount(t testing.TB, namespace, name string) *corev1.ServiceAccount {
	t.Helper()
	c.Namespace(t, namespace)
	sa, err := c.Client.CoreV1().ServiceAccounts(namespace).Create(context.Background(),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service account %s/%s: %v", namespace, name, err)
	}
	return sa
}

// Token issues a token for a service account through TokenRequest, for
// the given audiences (none: the API server's own) and lifetime (zero:
// one hour).
func (c *Cluster) Token(t testing.TB, namespace, name string, ttl time.Duration, audiences ...string) string {
	t.Helper()
	if ttl == 0 {
		ttl = time.Hour
	}
	secs := int64(ttl / time.Second)
	tr, err := c.Client.CoreV1().ServiceAccounts(namespace).CreateToken(context.Background(), name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &secs}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", namespace, name, err)
	}
	return tr.Status.Token
}

// AllowTokenReview binds the cluster role system:auth-delegator (which
// allows creating TokenReviews) to a service account, as Vault's
// documentation tells operators to do for the reviewer account.
func (c *Cluster) AllowTokenReview(t testing.TB, namespace, name string) {
	t.Helper()
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "k8stest-auth-delegator-" + namespace + "-" + name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: namespace, Name: name}},
	}
	_, err := c.Client.RbacV1().ClusterRoleBindings().Create(context.Background(), crb, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("bind system:auth-delegator to %s/%s: %v", namespace, name, err)
	}
}
