package injector

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/coffer-dev/coffer/internal/k8stest"
)

func TestMain(m *testing.M) { k8stest.Main(m) }

// testCA writes a self-signed CA and a serving certificate for 127.0.0.1
// (with serial as its serial number) into dir, returning the CA's PEM.
func testCA(t *testing.T, dir string, serial int64) []byte {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "injector"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}

// startInjector runs the webhook on 127.0.0.1 and returns its URL and CA.
func startInjector(t *testing.T) (string, []byte, string) {
	t.Helper()
	dir := t.TempDir()
	ca := testCA(t, dir, 2)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Listener: l, TLSCertFile: filepath.Join(dir, "tls.crt"), TLSKeyFile: filepath.Join(dir, "tls.key"), Config: testCfg})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	return "https://" + l.Addr().String(), ca, dir
}

func tlsClient(ca []byte) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func TestHandlerReview(t *testing.T) {
	url, ca, _ := startInjector(t)
	hc := tlsClient(ca)
	review := func(p *corev1.Pod) *admissionv1.AdmissionResponse {
		raw, _ := json.Marshal(p)
		body, _ := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{UID: "u1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Operation: admissionv1.Create,
				Namespace: "team-a", Object: runtime.RawExtension{Raw: raw}},
		})
		resp, err := hc.Post(url+"/mutate", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Response == nil || out.Response.UID != "u1" {
			t.Fatalf("response: %+v, %v", out, err)
		}
		return out.Response
	}
	if r := review(pod(annotated())); !r.Allowed || r.Patch == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Errorf("annotated pod: %+v", r)
	}
	if r := review(pod(nil)); !r.Allowed || r.Patch != nil {
		t.Errorf("plain pod: %+v", r)
	}
	if r := review(pod(annotated(AnnLimitsMem, "lots"))); r.Allowed || r.Result == nil || !strings.Contains(r.Result.Message, "agent-limits-mem") {
		t.Errorf("invalid pod: %+v", r)
	}
	resp, err := hc.Post(url+"/mutate", "application/json", strings.NewReader("{"))
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("garbage body: %v %v", resp, err)
	}
}

func TestCertificateReloaded(t *testing.T) {
	url, ca, dir := startInjector(t)
	serial := func(ca []byte) int64 {
		resp, err := tlsClient(ca).Get(url + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	if s := serial(ca); s != 2 {
		t.Fatalf("serial = %d", s)
	}
	time.Sleep(10 * time.Millisecond) // a distinct modification time
	ca2 := testCA(t, dir, 3)
	if s := serial(ca2); s != 3 {
		t.Errorf("after rewriting the files, serial = %d, want 3", s)
	}
	os.WriteFile(filepath.Join(dir, "tls.crt"), []byte("garbage"), 0o600)
	if s := serial(ca2); s != 3 {
		t.Errorf("a broken certificate file replaced the good one: serial %d", s)
	}
}

// TestWebhookOnAPIServer registers the injector with a real kube-apiserver
// through a MutatingWebhookConfiguration and creates pods.
func TestWebhookOnAPIServer(t *testing.T) {
	env := k8stest.Env(t)
	url, ca, _ := startInjector(t)
	ctx := context.Background()
	fail := admissionregv1.Fail
	none := admissionregv1.SideEffectClassNone
	path := url + "/mutate"
	whc := &admissionregv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "coffer-injector-test"},
		Webhooks: []admissionregv1.MutatingWebhook{{
			Name:                    "agent.coffer.dev",
			ClientConfig:            admissionregv1.WebhookClientConfig{URL: &path, CABundle: ca},
			Rules:                   []admissionregv1.RuleWithOperations{{Operations: []admissionregv1.OperationType{admissionregv1.Create}, Rule: admissionregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			FailurePolicy:           &fail,
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"coffer-injector-test": "on"}},
		}},
	}
	if _, err := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, whc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), whc.Name, metav1.DeleteOptions{})
	})
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "injector-test", Labels: map[string]string{"coffer-injector-test": "on"}}}
	if _, err := env.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mk := func(name string, ann map[string]string) (*corev1.Pod, error) {
		p := pod(ann)
		p.Name, p.Namespace = name, ns.Name
		p.Spec.Volumes = nil
		p.Spec.Containers[0].VolumeMounts = nil
		var err error
		// The webhook configuration takes a moment to reach the API
		// server's admission chain.
		for i := 0; i < 50; i++ {
			var got *corev1.Pod
			got, err = env.Client.CoreV1().Pods(ns.Name).Create(ctx, p, metav1.CreateOptions{})
			if err == nil && (ann == nil || got.Annotations[AnnStatus] != "" || i == 49) {
				return got, nil
			}
			if err == nil {
				env.Client.CoreV1().Pods(ns.Name).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
				waitGone(t, env, ns.Name, name)
			} else if !strings.Contains(err.Error(), "coffer injector") {
				time.Sleep(100 * time.Millisecond)
				continue
			} else {
				return nil, err
			}
			time.Sleep(100 * time.Millisecond)
		}
		return nil, err
	}
	got, err := mk("annotated", annotated())
	if err != nil {
		t.Fatal(err)
	}
	read, err := env.Client.CoreV1().Pods(ns.Name).Get(ctx, got.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if read.Annotations[AnnStatus] != StatusValue || len(read.Spec.InitContainers) != 1 || len(read.Spec.Containers) != 3 || read.Spec.Containers[2].Name != SidecarName {
		t.Errorf("annotated pod read back: status %q, %d init, %d containers", read.Annotations[AnnStatus], len(read.Spec.InitContainers), len(read.Spec.Containers))
	}
	vol := false
	for _, v := range read.Spec.Volumes {
		vol = vol || (v.Name == VolumeName && v.EmptyDir != nil && v.EmptyDir.Medium == corev1.StorageMediumMemory)
	}
	if !vol {
		t.Errorf("volumes = %+v", read.Spec.Volumes)
	}
	for _, c := range read.Spec.Containers {
		if len(c.VolumeMounts) == 0 || c.VolumeMounts[len(c.VolumeMounts)-1].MountPath != MountPath {
			t.Errorf("container %s mounts %+v", c.Name, c.VolumeMounts)
		}
	}

	plain, err := mk("plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(plain.Spec.InitContainers) != 0 || len(plain.Spec.Containers) != 2 || plain.Annotations[AnnStatus] != "" {
		t.Errorf("plain pod was changed: %+v", plain.Spec)
	}

	_, err = mk("invalid", annotated(AnnSecret+"..", "secret/data/x"))
	if err == nil || !strings.Contains(err.Error(), "not a valid file name") {
		t.Errorf("invalid pod: err = %v, want the admission message", err)
	}
}

func waitGone(t *testing.T, env *k8stest.Cluster, ns, name string) {
	for i := 0; i < 100; i++ {
		if _, err := env.Client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{}); err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
