package csi

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// fakeCoffer is a fake Coffer HTTP API standing in for the kubernetes
// auth method (issue 5) until the real one is wired: it accepts the
// token "pod-jwt" for role "web" only, and serves one KV v2 secret.
func fakeCoffer(t *testing.T) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/auth/kubernetes/login":
			var b map[string]string
			json.NewDecoder(r.Body).Decode(&b)
			if b["jwt"] != "pod-jwt" || b["role"] != "web" {
				w.WriteHeader(http.StatusForbidden)
				w.Write([]byte(`{"errors":["permission denied"]}`))
				return
			}
			w.Write([]byte(`{"auth":{"client_token":"t1","lease_duration":60}}`))
		case "/v1/secret/data/db":
			if r.Header.Get("X-Vault-Token") != "t1" {
				w.WriteHeader(http.StatusForbidden)
				w.Write([]byte(`{"errors":["permission denied"]}`))
				return
			}
			w.Write([]byte(`{"data":{"data":{"password":"hunter2","port":5432},"metadata":{"version":3}}}`))
		case "/v1/auth/token/revoke-self":
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"errors":[]}`))
		}
	}))
}

func attrs(role string, extra map[string]string) string {
	m := map[string]string{
		"roleName":                                 role,
		"csi.storage.k8s.io/pod.name":              "web-0",
		"csi.storage.k8s.io/pod.namespace":         "team-a",
		"csi.storage.k8s.io/serviceAccount.tokens": `{"":{"token":"pod-jwt","expirationTimestamp":"2030-01-01T00:00:00Z"}}`,
		"objects": "- objectName: db-password\n  secretPath: secret/data/db\n  secretKey: password\n- objectName: conf/db.json\n  secretPath: secret/data/db\n  filePermission: \"0600\"\n",
	}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// TestMountOverGRPC runs the provider on a unix socket and calls it with
// a gRPC client, as the driver does.
func TestMountOverGRPC(t *testing.T) {
	srv := fakeCoffer(t)
	defer srv.Close()
	sock := filepath.Join(t.TempDir(), "coffer.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Options{Endpoint: "unix://" + sock, Address: srv.URL}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	var cc *grpc.ClientConn
	var err error
	cc, err = grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()), ClientCodec())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()

	var ver VersionResponse
	for i := 0; ; i++ { // the socket appears when Run has listened
		if err = Invoke(cctx, cc, "Version", &VersionRequest{Version: "v1alpha1"}, &ver); err == nil || i > 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || ver.RuntimeName != "coffer" || ver.Version != "v1alpha1" {
		t.Fatalf("Version = %+v, %v", ver, err)
	}

	var out MountResponse
	if err := Invoke(cctx, cc, "Mount", &MountRequest{Attributes: attrs("web", nil), TargetPath: "/var/lib/kubelet/pods/x", Permission: "420", Secrets: "{}"}, &out); err != nil {
		t.Fatalf("Mount: %v", err)
	}
	if len(out.Files) != 2 || out.Files[0].Path != "db-password" || string(out.Files[0].Contents) != "hunter2" || out.Files[0].Mode != 0o644 {
		t.Fatalf("files = %+v", out.Files)
	}
	if out.Files[1].Path != "conf/db.json" || out.Files[1].Mode != 0o600 || !bytes.Contains(out.Files[1].Contents, []byte(`"port":5432`)) {
		t.Errorf("second file = %+v", out.Files[1])
	}
	if len(out.ObjectVersion) != 2 || out.ObjectVersion[0] != (ObjectVersion{ID: "db-password", Version: "3"}) {
		t.Errorf("versions = %+v", out.ObjectVersion)
	}

	err = Invoke(cctx, cc, "Mount", &MountRequest{Attributes: attrs("admin", nil)}, &out)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `role "admin"`) || !strings.Contains(err.Error(), "team-a/web-0") {
		t.Errorf("unbound role: err = %v, want PermissionDenied naming the role and pod", err)
	}
}

func TestMountRefusesBadRequests(t *testing.T) {
	p := &Provider{Address: "http://127.0.0.1:1"}
	for name, tc := range map[string]struct{ attrs, perm, want string }{
		"not JSON":            {"{", "", "not a JSON object"},
		"no role":             {attrs("", nil), "", "no roleName"},
		"no objects":          {attrs("web", map[string]string{"objects": ""}), "", "no objects"},
		"objects not YAML":    {attrs("web", map[string]string{"objects": "- [a"}), "", "YAML"},
		"escaping name":       {attrs("web", map[string]string{"objects": "- objectName: ../x\n  secretPath: a"}), "", "relative path"},
		"absolute name":       {attrs("web", map[string]string{"objects": "- objectName: /etc/x\n  secretPath: a"}), "", "relative path"},
		"duplicate name":      {attrs("web", map[string]string{"objects": "- objectName: x\n  secretPath: a\n- objectName: x\n  secretPath: b"}), "", "twice"},
		"no path":             {attrs("web", map[string]string{"objects": "- objectName: x"}), "", "secretPath is required"},
		"bad permission":      {attrs("web", nil), "rw", "not a file mode"},
		"no token":            {attrs("web", map[string]string{"csi.storage.k8s.io/serviceAccount.tokens": ""}), "", "tokenRequests"},
		"no token for aud":    {attrs("web", map[string]string{"audience": "coffer"}), "", `audience "coffer"`},
		"bad file permission": {attrs("web", map[string]string{"objects": "- objectName: x\n  secretPath: a\n  filePermission: \"999\""}), "", "not octal"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := p.Mount(context.Background(), &MountRequest{Attributes: tc.attrs, Permission: tc.perm})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Mount = %v, want InvalidArgument mentioning %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "pod-jwt") {
				t.Error("the error contains the token")
			}
		})
	}
}

// TestWireFormat pins the encoding to protobuf's: field numbers and wire
// types of service.proto.
func TestWireFormat(t *testing.T) {
	f := File{Path: "a", Mode: 420, Contents: []byte("x")}
	if got := hex.EncodeToString(f.marshal(nil)); got != "0a0161"+"10a403"+"1a0178" {
		t.Errorf("File = %s", got)
	}
	req := MountRequest{Attributes: "{}", Secrets: "s", TargetPath: "/t", Permission: "420", CurrentObjectVersion: []ObjectVersion{{ID: "i", Version: "1"}}}
	want := "0a027b7d" + "120173" + "1a022f74" + "2203343230" + "2a06" + "0a0169" + "120131"
	if got := hex.EncodeToString(req.marshal(nil)); got != want {
		t.Errorf("MountRequest = %s, want %s", got, want)
	}
	var back MountRequest
	if err := back.unmarshal(req.marshal(nil)); err != nil || back.TargetPath != "/t" || len(back.CurrentObjectVersion) != 1 || back.CurrentObjectVersion[0].Version != "1" {
		t.Errorf("round trip = %+v, %v", back, err)
	}
	// Unknown fields are skipped.
	withUnknown, _ := hex.DecodeString("0a027b7d" + "f80101")
	if err := back.unmarshal(withUnknown); err != nil {
		t.Errorf("unknown varint field: %v", err)
	}
}

func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte{0x0a, 0x01, 'a', 0x2a, 0x03, 0x0a, 0x01, 'i'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var req MountRequest
		if req.unmarshal(b) != nil {
			return
		}
		var again MountRequest
		if err := again.unmarshal(req.marshal(nil)); err != nil || again.Attributes != req.Attributes || len(again.CurrentObjectVersion) != len(req.CurrentObjectVersion) {
			t.Fatalf("re-encoding changed the message: %v", err)
		}
		var resp MountResponse
		_ = resp.unmarshal(b)
	})
}
