package compat

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coffer-dev/coffer/internal/k8stest"
)

// k8sBed is a real kube-apiserver (envtest) and a real coffer dev server
// whose kubernetes auth method (auth/kubernetes) reviews tokens with it.
type k8sBed struct {
	kc   *k8stest.Cluster
	p    *proc
	root *vault.Client
}

// startK8sBed starts the API server (failing, never skipping, without
// KUBEBUILDER_ASSETS) and coffer, and configures auth/kubernetes with a
// reviewer account bound to system:auth-delegator.
func startK8sBed(t *testing.T) *k8sBed {
	t.Helper()
	kc, err := k8stest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kc.Stop() })
	kc.ServiceAccount(t, "coffer-system", "reviewer")
	kc.AllowTokenReview(t, "coffer-system", "reviewer")
	p, root := startDev(t)
	enableAuth(t, root, "kubernetes", "kubernetes", nil)
	mustWrite(t, root, "auth/kubernetes/config", map[string]any{
		"kubernetes_host":    kc.Host,
		"kubernetes_ca_cert": string(kc.CACert),
		"token_reviewer_jwt": kc.Token(t, "coffer-system", "reviewer", time.Hour),
	})
	return &k8sBed{kc: kc, p: p, root: root}
}

// pod creates a Pod running as service account sa (created too) and
// returns it. No scheduler runs: the Pod stays Pending, which is enough
// for tokens bound to it.
func (b *k8sBed) pod(t *testing.T, ns, name, sa string) *corev1.Pod {
	t.Helper()
	b.kc.ServiceAccount(t, ns, sa)
	pod, err := b.kc.Client.CoreV1().Pods(ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa,
			Containers:         []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", ns, name, err)
	}
	return pod
}

// podToken issues, through TokenRequest, a token for the pod's service
// account bound to the pod, as the kubelet does for a projected volume
// or the CSI driver's tokenRequests.
func (b *k8sBed) podToken(t *testing.T, pod *corev1.Pod, audiences ...string) string {
	t.Helper()
	secs := int64(600)
	tr, err := b.kc.Client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(context.Background(), pod.Spec.ServiceAccountName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			Audiences:         audiences,
			ExpirationSeconds: &secs,
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	return tr.Status.Token
}

// sideProc is a coffer process that is not a server (agent, CSI
// provider): started, its output kept, killed at cleanup.
type sideProc struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	waited chan struct{}
}

func startSide(t *testing.T, args ...string) *sideProc {
	t.Helper()
	s := &sideProc{out: &syncBuffer{}, waited: make(chan struct{})}
	s.cmd = exec.Command(cofferBin, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.Env = append(os.Environ(), "COFFER_ADDR=", "VAULT_ADDR=", "COFFER_TOKEN=", "VAULT_TOKEN=")
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.waited) }()
	t.Cleanup(func() {
		select {
		case <-s.waited:
		default:
			s.cmd.Process.Kill()
			<-s.waited
		}
		if t.Failed() {
			t.Logf("coffer %s output:\n%s", args[0], s.out.String())
		}
	})
	return s
}

// wait waits up to d for the process to exit and returns its exit code.
func (s *sideProc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-s.waited:
		return s.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("coffer did not exit within %v:\n%s", d, s.out.String())
		return -1
	}
}

// TestAgentKubernetesAuthOnce runs the real `coffer agent --once` with
// auto_auth method "kubernetes" and a token file holding a TokenRequest
// token of a pod's service account (what the kubelet projects into the
// injected init container): it logs in through the real TokenReview,
// renders the KV template with the configured mode, writes the sink and
// exits 0. With a role the account is not bound to, it keeps retrying
// and says why, without printing the token.
func TestAgentKubernetesAuthOnce(t *testing.T) {
	b := startK8sBed(t)
	cx := ctx(t)
	if _, err := b.root.KVv2("secret").Put(cx, "app", map[string]any{"user": "web", "password": "correct-horse"}); err != nil {
		t.Fatal(err)
	}
	if err := b.root.Sys().PutPolicyWithContext(cx, "web-app", `path "secret/data/app" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, b.root, "auth/kubernetes/role/web", map[string]any{
		"bound_service_account_names":      "web",
		"bound_service_account_namespaces": "shop",
		"token_policies":                   "web-app",
		"token_ttl":                        "10m",
	})
	mustWrite(t, b.root, "auth/kubernetes/role/other", map[string]any{
		"bound_service_account_names":      "billing",
		"bound_service_account_namespaces": "shop",
		"token_policies":                   "web-app",
	})
	pod := b.pod(t, "shop", "web-0", "web")
	jwt := b.podToken(t, pod)

	dir := t.TempDir()
	tokenPath := filepath.Join(dir, "sa-token")
	if err := os.WriteFile(tokenPath, []byte(jwt), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "secrets", "db.env")
	sink := filepath.Join(dir, "coffer-token")
	writeCfg := func(name, role string) string {
		cfg := fmt.Sprintf(`
coffer { address = %q }
auto_auth {
  method "kubernetes" {
    mount_path = "auth/kubernetes"
    config = { role = %q, token_path = %q }
  }
  sink "file" { config = { path = %q } }
}
template {
  contents    = "{{ with secret \"secret/data/app\" }}DB_USER={{ .Data.data.user }}\nDB_PASSWORD={{ .Data.data.password }}\n{{ end }}"
  destination = %q
  perms       = "0440"
  error_on_missing_key = true
}
`, b.p.addr, role, tokenPath, sink, out)
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	start := time.Now()
	a := startSide(t, "agent", "--config", writeCfg("agent.hcl", "web"), "--once")
	if code := a.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("coffer agent --once exited %d:\n%s", code, a.out.String())
	}
	t.Logf("coffer agent --once with kubernetes auth: %v from start to exit", time.Since(start).Round(time.Millisecond))
	got, err := os.ReadFile(out)
	if want := "DB_USER=web\nDB_PASSWORD=correct-horse\n"; err != nil || string(got) != want {
		t.Fatalf("%s = %q (%v), want %q", out, got, err, want)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o440 {
		t.Errorf("mode of %s = %v (%v), want 0440", out, fi.Mode().Perm(), err)
	}
	tok, err := os.ReadFile(sink)
	if err != nil || len(tok) == 0 {
		t.Fatalf("sink: %q, %v", tok, err)
	}
	self, err := b.p.client(t, string(tok)).Auth().Token().LookupSelf()
	if err != nil {
		t.Fatalf("lookup-self with the sink's token: %v", err)
	}
	if meta, _ := self.Data["meta"].(map[string]any); meta["service_account_name"] != "web" || meta["service_account_namespace"] != "shop" {
		t.Errorf("the agent's token is not the pod's service account's: meta = %v", self.Data["meta"])
	}
	for _, s := range []string{jwt, string(tok), "correct-horse"} {
		if strings.Contains(a.out.String(), s) {
			t.Errorf("the agent's output contains a token or a secret value")
		}
	}

	// A role the service account is not bound to: no file, retries with
	// the reason, the JWT never printed.
	os.Remove(out)
	bad := startSide(t, "agent", "--config", writeCfg("bad.hcl", "other"), "--once")
	waitFor(t, "two failed logins logged", 20*time.Second, func() bool {
		return strings.Count(bad.out.String(), "authentication failed, retrying") >= 2
	})
	logs := bad.out.String()
	if !strings.Contains(logs, "auth/kubernetes/login") || !strings.Contains(logs, "permission denied") {
		t.Errorf("the retry lines do not say why:\n%s", logs)
	}
	if !strings.Contains(logs, "backoff=1s") || !strings.Contains(logs, "backoff=2s") {
		t.Errorf("the retries do not back off 1s, 2s:\n%s", logs)
	}
	if strings.Contains(logs, jwt) {
		t.Error("the agent printed the service-account token")
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a template was written without a login")
	}
}
