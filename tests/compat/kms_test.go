package compat

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	kmsapi "k8s.io/kms/apis/v2"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	vault "github.com/hashicorp/vault/api"

	"github.com/coffer-dev/coffer/internal/k8s/kms"
	"github.com/coffer-dev/coffer/internal/k8stest"
)

// TestKMSPluginEncryptsSecretsInEtcd runs the whole chain for real: a
// coffer dev server with transit, the KMS v2 plugin on a unix socket, and
// kube-apiserver + etcd (envtest) started with an EncryptionConfiguration
// naming that socket. A Secret reads back intact, its raw etcd value is a
// KMS v2 envelope without the plaintext, and after a transit rotation the
// plugin reports a new key_id and still unwraps the DEK seed stored in
// etcd under the old one.
func TestKMSPluginEncryptsSecretsInEtcd(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Fatal(k8stest.ErrNoAssets)
	}
	p, vc := startDev(t)
	if err := vc.Sys().Mount("transit", &vault.MountInput{Type: "transit"}); err != nil {
		t.Fatal(err)
	}
	if _, err := vc.Logical().Write("transit/keys/k8s-etcd", nil); err != nil {
		t.Fatal(err)
	}

	// The plugin, as `coffer kms-plugin` runs it.
	dir, err := os.MkdirTemp("", "kms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "coffer.sock")
	pctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- kms.Run(pctx, kms.Options{Listen: "unix://" + sock, Address: p.addr, Token: "root", KeyPath: "transit/keys/k8s-etcd"})
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("kms.Run: %v", err)
		}
	})
	plugin := kmsClient(t, sock)
	st := waitStatus(t, plugin)

	encCfg := filepath.Join(dir, "encryption.yaml")
	if err := os.WriteFile(encCfg, []byte(fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - kms:
          apiVersion: v2
          name: coffer
          endpoint: unix://%s
          timeout: 3s
      - identity: {}
`, sock)), 0o600); err != nil {
		t.Fatal(err)
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	env.ControlPlane.GetAPIServer().Configure().Set("encryption-provider-config", encCfg)
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver with the KMS plugin: %v", err)
	}
	t.Cleanup(func() { env.Stop() })
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	ctx := ctx(t)
	canary := "kms-canary-" + randomHex(t)
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "default"}, Data: map[string][]byte{"password": []byte(canary)}}
	if _, err := cs.CoreV1().Secrets("default").Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Secret: %v", err)
	}
	got, err := cs.CoreV1().Secrets("default").Get(ctx, "db", metav1.GetOptions{})
	if err != nil || string(got.Data["password"]) != canary {
		t.Fatalf("Secret read back: %v (%d bytes)", err, len(got.Data["password"]))
	}

	raw := etcdGet(t, env.ControlPlane.Etcd.URL.Host, "/registry/secrets/default/db")
	if !bytes.HasPrefix(raw, []byte("k8s:enc:kms:v2:coffer:")) {
		t.Fatalf("etcd value starts with %q, want k8s:enc:kms:v2:coffer:", raw[:min(len(raw), 24)])
	}
	if bytes.Contains(raw, []byte(canary)) {
		t.Fatal("the Secret's plaintext is in etcd")
	}
	obj := parseEncryptedObject(t, raw[len("k8s:enc:kms:v2:coffer:"):])
	if obj.keyID != st.KeyId {
		t.Errorf("stored key_id %q, plugin Status %q", obj.keyID, st.KeyId)
	}

	// Rotate: Status reports a new key_id; the DEK seed stored under the
	// old one still unwraps, and the old Secret still reads.
	if _, err := vc.Logical().Write("transit/keys/k8s-etcd/rotate", nil); err != nil {
		t.Fatal(err)
	}
	st2, err := plugin.Status(ctx, &kmsapi.StatusRequest{})
	if err != nil || st2.Healthz != "ok" || st2.KeyId == st.KeyId {
		t.Fatalf("after rotate: Status %v, %v; want ok and a key_id other than %s", st2, err, st.KeyId)
	}
	if _, err := plugin.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: obj.edek, KeyId: obj.keyID, Annotations: obj.annotations}); err != nil {
		t.Errorf("Decrypt of the seed stored in etcd after rotation: %v", err)
	}
	got, err = cs.CoreV1().Secrets("default").Get(ctx, "db", metav1.GetOptions{})
	if err != nil || string(got.Data["password"]) != canary {
		t.Fatalf("Secret after rotation: %v", err)
	}
}

func randomHex(t *testing.T) string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func kmsClient(t *testing.T, sock string) kmsapi.KeyManagementServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return kmsapi.NewKeyManagementServiceClient(conn)
}

// waitStatus polls the plugin until it answers healthy.
func waitStatus(t *testing.T, c kmsapi.KeyManagementServiceClient) *kmsapi.StatusResponse {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := c.Status(ctx(t), &kmsapi.StatusRequest{})
		if err == nil && st.Healthz == "ok" {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin not healthy within 15s: %v, %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rawCodec sends and receives already-encoded protobuf messages, so the
// test can call etcd's KV.Range without the etcd client (not in go.mod).
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)   { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(b []byte, v any) error { *v.(*[]byte) = bytes.Clone(b); return nil }
func (rawCodec) Name() string                    { return "proto" }

// etcdGet reads one key's raw value from etcd with a hand-encoded
// etcdserverpb.RangeRequest{key: 1}; the response's kvs (field 2) are
// mvccpb.KeyValue{key: 1, value: 5}.
func etcdGet(t *testing.T, hostport, key string) []byte {
	t.Helper()
	conn, err := grpc.NewClient(hostport, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte(key))
	var resp []byte
	if err := conn.Invoke(ctx(t), "/etcdserverpb.KV/Range", &req, &resp); err != nil {
		t.Fatalf("etcd Range %s: %v", key, err)
	}
	for _, kv := range fields(t, resp)[2] {
		f := fields(t, kv)
		if len(f[1]) == 1 && string(f[1][0]) == key && len(f[5]) == 1 {
			return f[5][0]
		}
	}
	t.Fatalf("etcd has no key %s", key)
	return nil
}

// fields splits a protobuf message into its length-delimited fields by
// number (varints and other wire types are skipped).
func fields(t *testing.T, b []byte) map[protowire.Number][][]byte {
	t.Helper()
	out := map[protowire.Number][][]byte{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad protobuf: %v", protowire.ParseError(n))
		}
		b = b[n:]
		if typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				t.Fatalf("bad protobuf: %v", protowire.ParseError(m))
			}
			out[num] = append(out[num], v)
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			t.Fatalf("bad protobuf: %v", protowire.ParseError(m))
		}
		b = b[m:]
	}
	return out
}

// encryptedObject is the part of the API server's kmsv2 EncryptedObject
// (encryptedData 1, keyID 2, encryptedDEKSource 3, annotations 4) the
// test checks.
type encryptedObject struct {
	keyID       string
	edek        []byte
	annotations map[string][]byte
}

func parseEncryptedObject(t *testing.T, b []byte) encryptedObject {
	t.Helper()
	f := fields(t, b)
	if len(f[2]) != 1 || len(f[3]) != 1 {
		t.Fatalf("stored object has no keyID or encryptedDEKSource")
	}
	o := encryptedObject{keyID: string(f[2][0]), edek: f[3][0], annotations: map[string][]byte{}}
	for _, e := range f[4] {
		kv := fields(t, e)
		if len(kv[1]) == 1 && len(kv[2]) == 1 {
			o.annotations[string(kv[1][0])] = kv[2][0]
		}
	}
	if !strings.HasPrefix(string(o.edek), "vault:v") {
		t.Errorf("stored encryptedDEKSource %.12q is not a transit ciphertext", o.edek)
	}
	return o
}
