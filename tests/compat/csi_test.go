package compat

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	corev1 "k8s.io/api/core/v1"
)

// csiAPI is the Secrets Store CSI Driver's published provider API
// (sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1/service.proto),
// described here field for field and driven through the protobuf
// runtime's dynamic messages and gRPC's standard proto codec, so the
// test does not share the provider's hand-written encoding.
var csiAPI = func() protoreflect.FileDescriptor {
	str, i32, byt, msg := descriptorpb.FieldDescriptorProto_TYPE_STRING, descriptorpb.FieldDescriptorProto_TYPE_INT32,
		descriptorpb.FieldDescriptorProto_TYPE_BYTES, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	one, rep := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL, descriptorpb.FieldDescriptorProto_LABEL_REPEATED
	f := func(name string, num int32, typ descriptorpb.FieldDescriptorProto_Type, label descriptorpb.FieldDescriptorProto_Label, ref string) *descriptorpb.FieldDescriptorProto {
		d := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num), Type: typ.Enum(), Label: label.Enum()}
		if ref != "" {
			d.TypeName = proto.String(".v1alpha1." + ref)
		}
		return d
	}
	m := func(name string, fields ...*descriptorpb.FieldDescriptorProto) *descriptorpb.DescriptorProto {
		return &descriptorpb.DescriptorProto{Name: proto.String(name), Field: fields}
	}
	rpc := func(name string) *descriptorpb.MethodDescriptorProto {
		return &descriptorpb.MethodDescriptorProto{Name: proto.String(name), InputType: proto.String(".v1alpha1." + name + "Request"), OutputType: proto.String(".v1alpha1." + name + "Response")}
	}
	fdp := &descriptorpb.FileDescriptorProto{
		Name: proto.String("provider/v1alpha1/service.proto"), Package: proto.String("v1alpha1"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			m("VersionRequest", f("version", 1, str, one, "")),
			m("VersionResponse", f("version", 1, str, one, ""), f("runtime_name", 2, str, one, ""), f("runtime_version", 3, str, one, "")),
			m("MountRequest", f("attributes", 1, str, one, ""), f("secrets", 2, str, one, ""), f("target_path", 3, str, one, ""),
				f("permission", 4, str, one, ""), f("current_object_version", 5, msg, rep, "ObjectVersion")),
			m("MountResponse", f("object_version", 1, msg, rep, "ObjectVersion"), f("error", 2, msg, one, "Error"), f("files", 3, msg, rep, "File")),
			m("ObjectVersion", f("id", 1, str, one, ""), f("version", 2, str, one, "")),
			m("Error", f("code", 1, str, one, "")),
			m("File", f("path", 1, str, one, ""), f("mode", 2, i32, one, ""), f("contents", 3, byt, one, "")),
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{Name: proto.String("CSIDriverProvider"), Method: []*descriptorpb.MethodDescriptorProto{rpc("Version"), rpc("Mount")}}},
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		panic(err)
	}
	return fd
}()

func csiMsg(name string) *dynamicpb.Message {
	return dynamicpb.NewMessage(csiAPI.Messages().ByName(protoreflect.Name(name)))
}

func csiSet(m *dynamicpb.Message, field string, v any) {
	m.Set(m.Descriptor().Fields().ByName(protoreflect.Name(field)), protoreflect.ValueOf(v))
}

func csiGet(m protoreflect.Message, field string) protoreflect.Value {
	return m.Get(m.Descriptor().Fields().ByName(protoreflect.Name(field)))
}

// csiFile is one file of a MountResponse.
type csiFile struct {
	mode     int32
	contents string
}

// csiMount sends a MountRequest the way the driver's NodePublishVolume
// builds it: the SecretProviderClass parameters plus the pod's
// csi.storage.k8s.io/* attributes and service-account tokens, as JSON;
// the node-publish secrets as JSON ("null" without
// nodePublishSecretRef); the permission as JSON of os.FileMode(0644);
// the objects the pod has now. It returns the files and versions by
// path/id.
func csiMount(cc *grpc.ClientConn, params map[string]string, pod *corev1.Pod, tokens map[string]string, current map[string]string) (map[string]csiFile, map[string]string, error) {
	attrs := map[string]string{}
	for k, v := range params {
		attrs[k] = v
	}
	attrs["csi.storage.k8s.io/pod.name"] = pod.Name
	attrs["csi.storage.k8s.io/pod.namespace"] = pod.Namespace
	attrs["csi.storage.k8s.io/pod.uid"] = string(pod.UID)
	attrs["csi.storage.k8s.io/serviceAccount.name"] = pod.Spec.ServiceAccountName
	type tok struct {
		Token               string `json:"token"`
		ExpirationTimestamp string `json:"expirationTimestamp"`
	}
	toks := map[string]tok{}
	for aud, t := range tokens {
		toks[aud] = tok{Token: t, ExpirationTimestamp: time.Now().Add(10 * time.Minute).UTC().Format(time.RFC3339)}
	}
	tj, _ := json.Marshal(toks)
	attrs["csi.storage.k8s.io/serviceAccount.tokens"] = string(tj)
	aj, _ := json.Marshal(attrs)
	perm, _ := json.Marshal(os.FileMode(0o644))

	req := csiMsg("MountRequest")
	csiSet(req, "attributes", string(aj))
	csiSet(req, "secrets", "null")
	csiSet(req, "target_path", "/var/lib/kubelet/pods/"+string(pod.UID)+"/volumes/kubernetes.io~csi/secrets-store-inline/mount")
	csiSet(req, "permission", string(perm))
	cur := req.Mutable(req.Descriptor().Fields().ByName("current_object_version")).List()
	for id, v := range current {
		ov := csiMsg("ObjectVersion")
		csiSet(ov, "id", id)
		csiSet(ov, "version", v)
		cur.Append(protoreflect.ValueOfMessage(ov))
	}
	resp := csiMsg("MountResponse")
	cx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cc.Invoke(cx, "/v1alpha1.CSIDriverProvider/Mount", req, resp); err != nil {
		return nil, nil, err
	}
	files, versions := map[string]csiFile{}, map[string]string{}
	fl := csiGet(resp, "files").List()
	for i := 0; i < fl.Len(); i++ {
		f := fl.Get(i).Message()
		files[csiGet(f, "path").String()] = csiFile{mode: int32(csiGet(f, "mode").Int()), contents: string(csiGet(f, "contents").Bytes())}
	}
	vl := csiGet(resp, "object_version").List()
	for i := 0; i < vl.Len(); i++ {
		ov := vl.Get(i).Message()
		versions[csiGet(ov, "id").String()] = csiGet(ov, "version").String()
	}
	return files, versions, nil
}

// TestCSIProviderMount runs the real `coffer csi-provider` on a unix
// socket against a real coffer server and a real kube-apiserver: a Mount
// for a pod whose service account is bound to the class's role returns
// the files (KV v2 and KV v1, one key or the whole secret, the class's
// file modes) and their versions; after a write the versions move so the
// driver's rotation rewrites the files; a pod whose account is not bound,
// and a request without the class's audience, get clear errors that hold
// no token; the provider revokes the token of each mount.
func TestCSIProviderMount(t *testing.T) {
	b := startK8sBed(t)
	cx := ctx(t)
	if _, err := b.root.KVv2("secret").Put(cx, "db", map[string]any{"username": "shop", "password": "s3cret"}); err != nil {
		t.Fatal(err)
	}
	if err := b.root.Sys().MountWithContext(cx, "legacy", &vault.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, b.root, "legacy/api", map[string]any{"token": "hunter2"})
	if err := b.root.Sys().PutPolicyWithContext(cx, "web-csi", `
path "secret/data/db" { capabilities = ["read"] }
path "legacy/api"     { capabilities = ["read"] }
`); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, b.root, "auth/kubernetes/role/web", map[string]any{
		"bound_service_account_names":      "web",
		"bound_service_account_namespaces": "shop",
		"audience":                         "coffer",
		"token_policies":                   "web-csi",
		"token_ttl":                        "5m",
	})
	web := b.pod(t, "shop", "web-0", "web")
	billing := b.pod(t, "shop", "billing-0", "billing")

	sock := filepath.Join(t.TempDir(), "coffer.sock")
	prov := startSide(t, "csi-provider", "--endpoint", "unix://"+sock, "--coffer-addr", "http://127.0.0.1:1")
	waitFor(t, "the provider's socket", 15*time.Second, func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()

	vreq, vresp := csiMsg("VersionRequest"), csiMsg("VersionResponse")
	csiSet(vreq, "version", "v1alpha1")
	if err := cc.Invoke(cx, "/v1alpha1.CSIDriverProvider/Version", vreq, vresp); err != nil {
		t.Fatalf("Version: %v", err)
	}
	if csiGet(vresp, "runtime_name").String() != "coffer" || csiGet(vresp, "version").String() != "v1alpha1" {
		t.Errorf("Version = %v", vresp)
	}

	// The SecretProviderClass's parameters, written as for Vault's
	// provider; vaultAddress overrides the provider's --coffer-addr.
	params := map[string]string{
		"roleName":                 "web",
		"vaultAddress":             b.p.addr,
		"vaultKubernetesMountPath": "kubernetes",
		"audience":                 "coffer",
		"objects": `
- objectName: db-password
  secretPath: secret/data/db
  secretKey: password
- objectName: db.json
  secretPath: secret/data/db
- objectName: api/token
  secretPath: legacy/api
  secretKey: token
  filePermission: "0600"
`,
	}
	// The driver's CSIDriver asks for tokens for the class's audience and
	// the API server's own; the provider must pick the first.
	webTokens := map[string]string{"coffer": b.podToken(t, web, "coffer"), "": b.podToken(t, web)}
	start := time.Now()
	files, versions, err := csiMount(cc, params, web, webTokens, nil)
	if err != nil {
		t.Fatalf("Mount for the bound pod: %v", err)
	}
	t.Logf("Mount of 3 objects (login, 3 reads, revoke): %v", time.Since(start).Round(time.Millisecond))
	if f := files["db-password"]; f.contents != "s3cret" || f.mode != 0o644 {
		t.Errorf("db-password = %+v, want s3cret mode 0644", f)
	}
	var whole map[string]any
	if err := json.Unmarshal([]byte(files["db.json"].contents), &whole); err != nil || whole["username"] != "shop" || whole["password"] != "s3cret" || len(whole) != 2 {
		t.Errorf("db.json = %q (%v), want the secret's data as JSON", files["db.json"].contents, err)
	}
	if f := files["api/token"]; f.contents != "hunter2" || f.mode != 0o600 {
		t.Errorf("api/token = %+v, want hunter2 mode 0600", f)
	}
	if len(files) != 3 {
		t.Errorf("got %d files, want 3", len(files))
	}
	if versions["db-password"] != "1" || versions["db.json"] != "1" || versions["api/token"] == "" {
		t.Errorf("object versions = %v, want KV v2 version 1 and a version for the KV v1 object", versions)
	}

	// Rotation: the driver calls Mount again with what the pod has.
	if _, err := b.root.KVv2("secret").Put(cx, "db", map[string]any{"username": "shop", "password": "n3w"}); err != nil {
		t.Fatal(err)
	}
	files2, versions2, err := csiMount(cc, params, web, webTokens, versions)
	if err != nil {
		t.Fatalf("second Mount: %v", err)
	}
	if files2["db-password"].contents != "n3w" || versions2["db-password"] != "2" || versions2["db.json"] != "2" {
		t.Errorf("after the write: db-password %q version %q, db.json version %q; want n3w, 2, 2",
			files2["db-password"].contents, versions2["db-password"], versions2["db.json"])
	}
	if versions2["api/token"] != versions["api/token"] {
		t.Errorf("unchanged KV v1 object's version moved: %q -> %q", versions["api/token"], versions2["api/token"])
	}
	mustWrite(t, b.root, "legacy/api", map[string]any{"token": "p4tched"})
	if files3, versions3, err := csiMount(cc, params, web, webTokens, versions2); err != nil || files3["api/token"].contents != "p4tched" || versions3["api/token"] == versions2["api/token"] {
		t.Errorf("after a KV v1 write: %q version %q (was %q), %v", files3["api/token"].contents, versions3["api/token"], versions2["api/token"], err)
	}

	// Refusals.
	billingTok := b.podToken(t, billing, "coffer")
	_, _, err = csiMount(cc, params, billing, map[string]string{"coffer": billingTok}, nil)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `role "web"`) || !strings.Contains(err.Error(), "shop/billing-0") {
		t.Errorf("Mount for an unbound pod = %v, want PermissionDenied naming the role and the pod", err)
	}
	if err != nil && strings.Contains(err.Error(), billingTok) {
		t.Error("the error holds the pod's token")
	}
	t.Logf("unbound pod: %v", err)
	_, _, err = csiMount(cc, params, web, map[string]string{"": webTokens[""]}, nil)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `audience "coffer"`) {
		t.Errorf("Mount without a token for the class's audience = %v, want InvalidArgument naming it", err)
	}
	noAud := map[string]string{}
	for k, v := range params {
		noAud[k] = v
	}
	delete(noAud, "audience")
	_, _, err = csiMount(cc, noAud, web, map[string]string{"": webTokens[""]}, nil)
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("Mount with a token of the API server's audience for a role bound to \"coffer\" = %v, want PermissionDenied", err)
	}
	denied := map[string]string{}
	for k, v := range params {
		denied[k] = v
	}
	denied["objects"] = "- objectName: other\n  secretPath: secret/data/other\n"
	if _, _, err := csiMount(cc, denied, web, webTokens, nil); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `object "other"`) {
		t.Errorf("Mount of a path outside the policy = %v, want PermissionDenied naming the object", err)
	}

	// Each mount's token is revoked: only the root token is left.
	waitFor(t, "the mounts' tokens revoked", 10*time.Second, func() bool {
		s, err := b.root.Logical().List("auth/token/accessors")
		if err != nil || s == nil {
			t.Fatalf("LIST auth/token/accessors = %v, %v", s, err)
		}
		keys, _ := s.Data["keys"].([]any)
		return len(keys) == 1
	})

	out := prov.out.String()
	for _, s := range []string{webTokens["coffer"], billingTok, "s3cret", "n3w", "hunter2", "p4tched"} {
		if strings.Contains(out, s) {
			t.Errorf("the provider's output contains a token or a secret value")
		}
	}
	if tokenRE.MatchString(out) {
		t.Error("the provider's output contains a coffer token")
	}
}
