package compat

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/coffer-dev/coffer/apis/coffer/v1alpha1"
	"github.com/coffer-dev/coffer/internal/k8s/operator"
	"github.com/coffer-dev/coffer/internal/k8stest"
)

// operatorBed is a real kube-apiserver with the CRDs, a real coffer dev
// server with Kubernetes auth configured against it, and the operator
// running in this process.
type operatorBed struct {
	kc     *k8stest.Cluster
	c      client.Client
	p      *proc
	root   *vault.Client
	audit  string
	logins *atomic.Int64
}

const syncPolicy = `
path "secret/data/*"            { capabilities = ["read"] }
path "secret/metadata/*"        { capabilities = ["read"] }
path "sys/internal/ui/mounts/*" { capabilities = ["read"] }
path "sys/events/subscribe/kv*" { capabilities = ["read", "subscribe"] }
path "auth/token/renew-self"    { capabilities = ["update"] }
path "auth/token/lookup-self"   { capabilities = ["read"] }
`

func startOperatorBed(t *testing.T) *operatorBed {
	t.Helper()
	kc, err := k8stest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kc.Stop() })
	if _, err := envtest.InstallCRDs(kc.Config, envtest.CRDInstallOptions{
		Paths: []string{filepath.Join("..", "..", "deploy", "crds")}, ErrorIfPathMissing: true,
	}); err != nil {
		t.Fatalf("install CRDs: %v", err)
	}
	scheme, err := operator.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(kc.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	kc.ServiceAccount(t, "coffer-system", "reviewer")
	kc.AllowTokenReview(t, "coffer-system", "reviewer")
	kc.ServiceAccount(t, "app", "coffer-sync")

	p, root := startDev(t)
	audit := filepath.Join(t.TempDir(), "audit.log")
	enableFileAudit(t, root, "file", audit, nil)
	if err := root.Sys().PutPolicy("sync", syncPolicy); err != nil {
		t.Fatal(err)
	}
	enableAuth(t, root, "kubernetes", "kubernetes", nil)
	mustWrite(t, root, "auth/kubernetes/config", map[string]any{
		"kubernetes_host":    kc.Host,
		"kubernetes_ca_cert": string(kc.CACert),
		"token_reviewer_jwt": kc.Token(t, "coffer-system", "reviewer", time.Hour),
	})
	mustWrite(t, root, "auth/kubernetes/role/sync", map[string]any{
		"bound_service_account_names":      "coffer-sync",
		"bound_service_account_namespaces": "app",
		"audience":                         "coffer",
		"token_policies":                   "sync",
		"token_ttl":                        "15m",
	})

	var logins atomic.Int64
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logw := &syncBuffer{}
	go func() {
		done <- operator.Run(runCtx, operator.Options{
			Config: kc.Config, MetricsAddr: "0", ProbeAddr: "0",
			Logger:  slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelInfo})),
			OnLogin: func() { logins.Add(1) },
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("operator.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("operator.Run did not return within 30s of cancel")
		}
		if strings.Contains(logw.String(), "pw-") {
			t.Errorf("the operator's log holds a secret value:\n%s", logw.String())
		}
		if t.Failed() {
			t.Logf("operator log:\n%s", logw.String())
		}
	})
	return &operatorBed{kc: kc, c: c, p: p, root: root, audit: audit, logins: &logins}
}

func mustWrite(t *testing.T, c *vault.Client, path string, data map[string]any) {
	t.Helper()
	if _, err := c.Logical().Write(path, data); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// eventually polls cond every 20 ms until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *operatorBed) secret(t *testing.T, ns, name string) (*corev1.Secret, error) {
	var s corev1.Secret
	err := b.c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &s)
	return &s, err
}

func (b *operatorBed) store(name, role string) *v1alpha1.CofferStore {
	return &v1alpha1.CofferStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: name},
		Spec: v1alpha1.StoreSpec{Server: b.p.addr, Path: "secret", Auth: v1alpha1.StoreAuth{Kubernetes: &v1alpha1.KubernetesAuth{
			Role: role, ServiceAccountRef: v1alpha1.ServiceAccountSelector{Name: "coffer-sync", Audiences: []string{"coffer"}},
		}}},
	}
}

func readyReason(conds []metav1.Condition) (metav1.ConditionStatus, string, string) {
	c := meta.FindStatusCondition(conds, operator.ConditionReady)
	if c == nil {
		return "", "", ""
	}
	return c.Status, c.Reason, c.Message
}

func (b *operatorBed) waitStore(t *testing.T, name string, status metav1.ConditionStatus, reason string) {
	t.Helper()
	eventually(t, 30*time.Second, "store "+name+" "+reason, func() error {
		var s v1alpha1.CofferStore
		if err := b.c.Get(context.Background(), types.NamespacedName{Namespace: "app", Name: name}, &s); err != nil {
			return err
		}
		if st, r, msg := readyReason(s.Status.Conditions); st != status || r != reason {
			return errors.New(string(st) + " " + r + ": " + msg)
		}
		return nil
	})
}

func (b *operatorBed) waitSecretReady(t *testing.T, name string, status metav1.ConditionStatus, reason string) *v1alpha1.CofferSecret {
	t.Helper()
	var cs v1alpha1.CofferSecret
	eventually(t, 30*time.Second, "coffersecret "+name+" "+reason, func() error {
		if err := b.c.Get(context.Background(), types.NamespacedName{Namespace: "app", Name: name}, &cs); err != nil {
			return err
		}
		if st, r, msg := readyReason(cs.Status.Conditions); st != status || r != reason {
			return errors.New(string(st) + " " + r + ": " + msg)
		}
		return nil
	})
	return &cs
}

// TestOperator runs the operator against a real kube-apiserver and a real
// coffer server: Kubernetes-auth store, basic-auth template, push latency
// with refreshInterval 1h, Merge, reload of a Deployment, Retain on
// deletion, wrong role and sealed server, and the number of logins.
func TestOperator(t *testing.T) {
	b := startOperatorBed(t)
	cx := ctx(t)
	kv := b.root.KVv2("secret")
	if _, err := kv.Put(cx, "db", map[string]any{"username": "app", "password": "pw-0"}); err != nil {
		t.Fatal(err)
	}

	if err := b.c.Create(cx, b.store("coffer", "sync")); err != nil {
		t.Fatal(err)
	}
	b.waitStore(t, "coffer", metav1.ConditionTrue, operator.ReasonValid)

	hour := &metav1.Duration{Duration: time.Hour}
	db := &v1alpha1.CofferSecret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "db"},
		Spec: v1alpha1.SecretSpec{
			RefreshInterval: hour,
			SecretStoreRef:  v1alpha1.SecretStoreRef{Name: "coffer"},
			Target: v1alpha1.Target{Name: "db-auth", Template: &v1alpha1.Template{
				Type:     string(corev1.SecretTypeBasicAuth),
				Metadata: v1alpha1.TemplateMetadata{Labels: map[string]string{"team": "payments"}},
				Data:     map[string]string{"username": "{{ .user }}", "password": "{{ .pass }}", "url": "postgres://{{ .user }}:{{ .pass }}@db:5432/app"},
			}},
			Data: []v1alpha1.Data{
				{SecretKey: "user", RemoteRef: v1alpha1.RemoteRef{Key: "db", Property: "username"}},
				{SecretKey: "pass", RemoteRef: v1alpha1.RemoteRef{Key: "db", Property: "password"}},
			},
		},
	}
	if err := b.c.Create(cx, db); err != nil {
		t.Fatal(err)
	}

	t.Run("a basic-auth template produces that Secret", func(t *testing.T) {
		eventually(t, 30*time.Second, "secret db-auth", func() error {
			s, err := b.secret(t, "app", "db-auth")
			if err != nil {
				return err
			}
			if s.Type != corev1.SecretTypeBasicAuth || string(s.Data["username"]) != "app" || string(s.Data["password"]) != "pw-0" ||
				string(s.Data["url"]) != "postgres://app:pw-0@db:5432/app" || s.Labels["team"] != "payments" || len(s.Data) != 3 {
				return errors.New("secret not rendered yet")
			}
			return nil
		})
		cs := b.waitSecretReady(t, "db", metav1.ConditionTrue, operator.ReasonSynced)
		if cs.Status.RefreshTime.IsZero() || cs.Status.SyncedResourceVersion == "" {
			t.Errorf("status = %+v, want refreshTime and syncedResourceVersion", cs.Status)
		}
		s, _ := b.secret(t, "app", "db-auth")
		if !ownedBy(s, cs.UID) {
			t.Errorf("owner references = %+v, want a controller reference to the CofferSecret (creationPolicy Owner)", s.OwnerReferences)
		}
		eventually(t, 30*time.Second, "a SecretSynced event", func() error {
			var evs eventsv1.EventList
			if err := b.c.List(cx, &evs, client.InNamespace("app")); err != nil {
				return err
			}
			for _, e := range evs.Items {
				if e.Regarding.Name == "db" && e.Regarding.Kind == "CofferSecret" && e.Reason == operator.ReasonSynced {
					return nil
				}
			}
			return errors.New("no event yet")
		})
	})

	t.Run("an annotated Deployment rolls when its Secret changes", func(t *testing.T) {
		dep := deployment("web", "db-auth")
		if err := b.c.Create(cx, dep); err != nil {
			t.Fatal(err)
		}
		first := waitReloadHash(t, b, "web", "")
		if _, err := kv.Put(cx, "db", map[string]any{"username": "app", "password": "pw-reload"}); err != nil {
			t.Fatal(err)
		}
		waitReloadHash(t, b, "web", first)
	})

	t.Run("100 changes reach the Secret by push, not by the 1h refresh", func(t *testing.T) {
		var lat []time.Duration
		for i := 1; i <= 100; i++ {
			want := "pw-" + strconv.Itoa(i)
			start := time.Now()
			if _, err := kv.Put(cx, "db", map[string]any{"username": "app", "password": want}); err != nil {
				t.Fatal(err)
			}
			eventually(t, 30*time.Second, "password "+want, func() error {
				s, err := b.secret(t, "app", "db-auth")
				if err != nil {
					return err
				}
				if string(s.Data["password"]) != want {
					return errors.New("old value")
				}
				return nil
			})
			lat = append(lat, time.Since(start))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		t.Logf("push latency over %d changes (Secret polled every 20 ms): p50 %v, p95 %v, max %v",
			len(lat), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*95/100].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
		if lat[len(lat)/2] > 2*time.Second {
			t.Errorf("median push latency %v, want under 2s", lat[len(lat)/2])
		}
	})

	t.Run("a ClusterCofferSecret stamps a CofferSecret into selected namespaces through a ClusterCofferStore", func(t *testing.T) {
		b.kc.Namespace(t, "team-b")
		var ns corev1.Namespace
		if err := b.c.Get(cx, types.NamespacedName{Name: "team-b"}, &ns); err != nil {
			t.Fatal(err)
		}
		ns.Labels = map[string]string{"coffer.dev/sync": "yes"}
		if err := b.c.Update(cx, &ns); err != nil {
			t.Fatal(err)
		}
		cstore := &v1alpha1.ClusterCofferStore{
			ObjectMeta: metav1.ObjectMeta{Name: "shared"},
			Spec:       b.store("", "sync").Spec,
		}
		// The same service account as the namespaced store: the same login.
		cstore.Spec.Auth.Kubernetes.ServiceAccountRef.Namespace = "app"
		if err := b.c.Create(cx, cstore); err != nil {
			t.Fatal(err)
		}
		ccs := &v1alpha1.ClusterCofferSecret{
			ObjectMeta: metav1.ObjectMeta{Name: "db-everywhere"},
			Spec: v1alpha1.ClusterSecretSpec{
				NamespaceSelectors: []*metav1.LabelSelector{{MatchLabels: map[string]string{"coffer.dev/sync": "yes"}}},
				CofferSecretSpec: v1alpha1.SecretSpec{
					SecretStoreRef: v1alpha1.SecretStoreRef{Name: "shared", Kind: v1alpha1.KindClusterStore},
					Target:         v1alpha1.Target{Name: "db"},
					DataFrom:       []v1alpha1.DataFrom{{Extract: &v1alpha1.ExtractRef{Key: "db"}}},
				},
			},
		}
		if err := b.c.Create(cx, ccs); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "secret team-b/db", func() error {
			s, err := b.secret(t, "team-b", "db")
			if err != nil {
				return err
			}
			if string(s.Data["username"]) != "app" || string(s.Data["password"]) != "pw-100" {
				return errors.New("not synced yet")
			}
			return nil
		})
	})

	t.Run("a namespace no longer selected loses its CofferSecret", func(t *testing.T) {
		var ns corev1.Namespace
		if err := b.c.Get(cx, types.NamespacedName{Name: "team-b"}, &ns); err != nil {
			t.Fatal(err)
		}
		ns.Labels = nil
		if err := b.c.Update(cx, &ns); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "coffersecret team-b/db-everywhere deleted", func() error {
			err := b.c.Get(cx, types.NamespacedName{Namespace: "team-b", Name: "db-everywhere"}, &v1alpha1.CofferSecret{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return errors.New("still there")
		})
	})

	t.Run("deletionPolicy Delete deletes the Secret when the remote secret disappears", func(t *testing.T) {
		if _, err := kv.Put(cx, "temp", map[string]any{"k": "v"}); err != nil {
			t.Fatal(err)
		}
		tmp := &v1alpha1.CofferSecret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "temp"},
			Spec: v1alpha1.SecretSpec{
				RefreshInterval: hour,
				SecretStoreRef:  v1alpha1.SecretStoreRef{Name: "coffer"},
				Target:          v1alpha1.Target{DeletionPolicy: v1alpha1.DeletionPolicyDelete},
				DataFrom:        []v1alpha1.DataFrom{{Extract: &v1alpha1.ExtractRef{Key: "temp"}}},
			},
		}
		if err := b.c.Create(cx, tmp); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "secret temp", func() error {
			_, err := b.secret(t, "app", "temp")
			return err
		})
		if err := kv.DeleteMetadata(cx, "temp"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "secret temp deleted", func() error {
			if _, err := b.secret(t, "app", "temp"); apierrors.IsNotFound(err) {
				return nil
			}
			return errors.New("still there")
		})
		b.waitSecretReady(t, "temp", metav1.ConditionFalse, operator.ReasonRemoteDeleted)
	})

	t.Run("logins are bounded over those syncs", func(t *testing.T) {
		if n := b.logins.Load(); n < 1 || n > 2 {
			t.Errorf("operator logged in %d times over 100+ syncs, want 1 (2 at most)", n)
		}
		if n := countAuditLogins(t, b.audit); n != int(b.logins.Load()) {
			t.Errorf("audit log has %d successful logins, operator counted %d", n, b.logins.Load())
		}
	})

	t.Run("Merge only adds keys to an existing Secret", func(t *testing.T) {
		pre := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "shared"}, Data: map[string][]byte{"keep": []byte("k"), "user": []byte("old")}}
		if err := b.c.Create(cx, pre); err != nil {
			t.Fatal(err)
		}
		m := &v1alpha1.CofferSecret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "merge"},
			Spec: v1alpha1.SecretSpec{
				SecretStoreRef: v1alpha1.SecretStoreRef{Name: "coffer"},
				Target:         v1alpha1.Target{Name: "shared", CreationPolicy: v1alpha1.CreatePolicyMerge},
				Data:           []v1alpha1.Data{{SecretKey: "user", RemoteRef: v1alpha1.RemoteRef{Key: "db", Property: "username"}}},
			},
		}
		if err := b.c.Create(cx, m); err != nil {
			t.Fatal(err)
		}
		b.waitSecretReady(t, "merge", metav1.ConditionTrue, operator.ReasonSynced)
		s, err := b.secret(t, "app", "shared")
		if err != nil {
			t.Fatal(err)
		}
		if string(s.Data["keep"]) != "k" || string(s.Data["user"]) != "app" || len(s.Data) != 2 || len(s.OwnerReferences) != 0 {
			t.Errorf("merged secret keys %v owners %v, want keep and user, no owner", keys(s.Data), s.OwnerReferences)
		}
	})

	t.Run("a wrong role gives Ready=False and empties no Secret", func(t *testing.T) {
		if err := b.c.Create(cx, b.store("wrong", "no-such-role")); err != nil {
			t.Fatal(err)
		}
		b.waitStore(t, "wrong", metav1.ConditionFalse, operator.ReasonLoginRefused)
		before, _ := b.secret(t, "app", "db-auth")
		var cs v1alpha1.CofferSecret
		if err := b.c.Get(cx, types.NamespacedName{Namespace: "app", Name: "db"}, &cs); err != nil {
			t.Fatal(err)
		}
		cs.Spec.SecretStoreRef.Name = "wrong"
		if err := b.c.Update(cx, &cs); err != nil {
			t.Fatal(err)
		}
		b.waitSecretReady(t, "db", metav1.ConditionFalse, operator.ReasonLoginRefused)
		after, _ := b.secret(t, "app", "db-auth")
		if !maps2Equal(before.Data, after.Data) {
			t.Error("the Secret changed after a refused login")
		}
		cs = v1alpha1.CofferSecret{}
		if err := b.c.Get(cx, types.NamespacedName{Namespace: "app", Name: "db"}, &cs); err != nil {
			t.Fatal(err)
		}
		cs.Spec.SecretStoreRef.Name = "coffer"
		if err := b.c.Update(cx, &cs); err != nil {
			t.Fatal(err)
		}
		b.waitSecretReady(t, "db", metav1.ConditionTrue, operator.ReasonSynced)
	})

	t.Run("deleting with deletionPolicy Retain keeps the Secret and drops the owner reference", func(t *testing.T) {
		var cs v1alpha1.CofferSecret
		if err := b.c.Get(cx, types.NamespacedName{Namespace: "app", Name: "db"}, &cs); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(cs.Finalizers, operator.Finalizer) {
			t.Fatalf("finalizers = %v, want %s", cs.Finalizers, operator.Finalizer)
		}
		if err := b.c.Delete(cx, &cs); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "coffersecret db gone", func() error {
			err := b.c.Get(cx, types.NamespacedName{Namespace: "app", Name: "db"}, &v1alpha1.CofferSecret{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return errors.New("still there")
		})
		s, err := b.secret(t, "app", "db-auth")
		if err != nil {
			t.Fatalf("the Secret is gone: %v", err)
		}
		if ownedBy(s, cs.UID) || len(s.Data) != 3 {
			t.Errorf("retained secret owners %v keys %v: garbage collection could still delete it", s.OwnerReferences, keys(s.Data))
		}
	})

	t.Run("a sealed server gives Ready=False Sealed and empties no Secret", func(t *testing.T) {
		before, _ := b.secret(t, "app", "shared")
		if err := b.root.Sys().Seal(); err != nil {
			t.Fatal(err)
		}
		var cs v1alpha1.CofferSecret
		if err := b.c.Get(cx, types.NamespacedName{Namespace: "app", Name: "merge"}, &cs); err != nil {
			t.Fatal(err)
		}
		cs.Labels = map[string]string{"poke": "1"} // a metadata change asks for a sync
		if err := b.c.Update(cx, &cs); err != nil {
			t.Fatal(err)
		}
		b.waitSecretReady(t, "merge", metav1.ConditionFalse, operator.ReasonSealed)
		b.waitStore(t, "coffer", metav1.ConditionFalse, operator.ReasonSealed)
		after, _ := b.secret(t, "app", "shared")
		if !maps2Equal(before.Data, after.Data) {
			t.Error("the Secret changed while the server was sealed")
		}
	})
}

func ownedBy(s *corev1.Secret, uid types.UID) bool {
	for _, r := range s.OwnerReferences {
		if r.UID == uid && r.Controller != nil && *r.Controller {
			return true
		}
	}
	return false
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func maps2Equal(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func deployment(name, secrets string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: name, Annotations: map[string]string{operator.AnnotationReload: secrets}},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}}},
			},
		},
	}
}

// waitReloadHash waits until the Deployment's pod template carries a
// reload hash different from prev, and returns it.
func waitReloadHash(t *testing.T, b *operatorBed, name, prev string) string {
	t.Helper()
	var got string
	eventually(t, 30*time.Second, "reload hash of "+name, func() error {
		var d appsv1.Deployment
		if err := b.c.Get(context.Background(), types.NamespacedName{Namespace: "app", Name: name}, &d); err != nil {
			return err
		}
		got = d.Spec.Template.Annotations[operator.AnnotationReloadHash]
		if got == "" || got == prev {
			return errors.New("hash " + got)
		}
		return nil
	})
	return got
}

// countAuditLogins counts successful auth/kubernetes/login responses in
// the server's audit log.
func countAuditLogins(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e struct {
			Type    string `json:"type"`
			Error   string `json:"error"`
			Request struct {
				Path string `json:"path"`
			} `json:"request"`
			Response *struct {
				Auth *struct {
					ClientToken string `json:"client_token"`
				} `json:"auth"`
			} `json:"response"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		if e.Type == "response" && e.Request.Path == "auth/kubernetes/login" && e.Error == "" &&
			e.Response != nil && e.Response.Auth != nil && e.Response.Auth.ClientToken != "" {
			n++
		}
	}
	return n
}

// TestOperatorManifests applies the CRDs, RBAC and Deployment under
// deploy/ to a real kube-apiserver with a server-side dry run.
func TestOperatorManifests(t *testing.T) {
	kc, err := k8stest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kc.Stop() })
	c, err := client.New(kc.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	kc.Namespace(t, "coffer") // a dry-run Namespace is not created; namespaced objects need it
	var files []string
	for _, glob := range []string{"../../deploy/crds/*.yaml", "../../deploy/operator/*.yaml"} {
		m, _ := filepath.Glob(glob)
		files = append(files, m...)
	}
	if len(files) < 6 {
		t.Fatalf("found only %v", files)
	}
	n := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
		for {
			var u unstructured.Unstructured
			if err := dec.Decode(&u.Object); err != nil {
				if err == io.EOF {
					break
				}
				t.Fatalf("%s: %v", f, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			if u.GetKind() == "CustomResourceDefinition" || strings.Contains(f, "crds") {
				// CRDs are applied for real: the RBAC refers to their resources.
				if err := c.Apply(context.Background(), client.ApplyConfigurationFromUnstructured(&u), client.FieldOwner("compat"), client.ForceOwnership); err != nil {
					t.Errorf("%s: apply %s %s: %v", f, u.GetKind(), u.GetName(), err)
				}
			} else if err := c.Apply(context.Background(), client.ApplyConfigurationFromUnstructured(&u), client.DryRunAll, client.FieldOwner("compat"), client.ForceOwnership); err != nil {
				t.Errorf("%s: server-side dry-run apply of %s %s: %v", f, u.GetKind(), u.GetName(), err)
			}
			n++
		}
	}
	t.Logf("applied %d objects from %d files", n, len(files))

	// The CRDs' schemas refuse bad input.
	scheme, err := operator.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	tc, err := client.New(kc.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	kc.Namespace(t, "bad")
	k8sAuth := &v1alpha1.KubernetesAuth{Role: "r", ServiceAccountRef: v1alpha1.ServiceAccountSelector{Name: "sa"}}
	for name, obj := range map[string]client.Object{
		"an unknown creationPolicy": &v1alpha1.CofferSecret{ObjectMeta: metav1.ObjectMeta{Namespace: "bad", Name: "a"},
			Spec: v1alpha1.SecretSpec{SecretStoreRef: v1alpha1.SecretStoreRef{Name: "s"}, Target: v1alpha1.Target{CreationPolicy: "Bogus"}}},
		"an unknown store kind": &v1alpha1.CofferSecret{ObjectMeta: metav1.ObjectMeta{Namespace: "bad", Name: "b"},
			Spec: v1alpha1.SecretSpec{SecretStoreRef: v1alpha1.SecretStoreRef{Name: "s", Kind: "SecretStore"}}},
		"a dataFrom with two sources": &v1alpha1.CofferSecret{ObjectMeta: metav1.ObjectMeta{Namespace: "bad", Name: "c"},
			Spec: v1alpha1.SecretSpec{SecretStoreRef: v1alpha1.SecretStoreRef{Name: "s"}, DataFrom: []v1alpha1.DataFrom{{
				Extract: &v1alpha1.ExtractRef{Key: "a"}, Dynamic: &v1alpha1.DynamicRef{Path: "db/creds/x"}}}}},
		"a store with two auth methods": &v1alpha1.CofferStore{ObjectMeta: metav1.ObjectMeta{Namespace: "bad", Name: "d"},
			Spec: v1alpha1.StoreSpec{Server: "https://c:8200", Auth: v1alpha1.StoreAuth{Kubernetes: k8sAuth, TokenSecretRef: &v1alpha1.SecretKeySelector{Name: "t"}}}},
		"a store without a URL scheme": &v1alpha1.CofferStore{ObjectMeta: metav1.ObjectMeta{Namespace: "bad", Name: "e"},
			Spec: v1alpha1.StoreSpec{Server: "coffer:8200", Auth: v1alpha1.StoreAuth{Kubernetes: k8sAuth}}},
	} {
		if err := tc.Create(context.Background(), obj); !apierrors.IsInvalid(err) {
			t.Errorf("%s: create = %v, want Invalid", name, err)
		}
	}
}
