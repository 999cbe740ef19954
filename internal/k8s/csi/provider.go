// Package csi is `coffer csi-provider`: a provider for the Secrets Store
// CSI Driver (v1alpha1.CSIDriverProvider over gRPC on a unix socket). For
// each Mount it logs in to Coffer's kubernetes auth method with the pod's
// own service-account token (the driver passes it when its CSIDriver has
// tokenRequests), reads the objects the SecretProviderClass lists, and
// returns them as files with their versions, so the driver can write
// them to the pod's volume and rotate them. No Kubernetes Secret is made.
//
// The SecretProviderClass parameters follow Vault's provider, so a class
// ports by changing the provider name:
//
//	parameters:
//	  roleName: web
//	  vaultAddress: https://coffer.coffer.svc:8200   # or cofferAddress
//	  vaultKubernetesMountPath: kubernetes           # or authMountPath
//	  audience: coffer                               # token audience, optional
//	  objects: |
//	    - objectName: db-password
//	      secretPath: secret/data/db
//	      secretKey: password
package csi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/yaml"

	"github.com/coffer-dev/coffer/api"
	"github.com/coffer-dev/coffer/internal/version"
)

// Options configure Run.
type Options struct {
	// Endpoint is the socket (--endpoint), "unix:///path" or a path.
	// "": unix:///etc/kubernetes/secrets-store-csi-providers/coffer.sock.
	Endpoint string
	// Address is the default Coffer URL (--coffer-addr) when a class sets
	// none. "": https://coffer.coffer.svc:8200.
	Address string
	// CACert is a PEM file of CAs for the server (--ca-cert). "": system.
	CACert string
	// Logger receives the logs. nil: discard.
	Logger *slog.Logger
}

// DefaultEndpoint is where the driver looks for providers.
const DefaultEndpoint = "unix:///etc/kubernetes/secrets-store-csi-providers/coffer.sock"

// Run serves the provider on its unix socket until ctx is done, then
// stops gracefully, removes the socket and returns nil.
func Run(ctx context.Context, opts Options) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ep := opts.Endpoint
	if ep == "" {
		ep = DefaultEndpoint
	}
	sock := strings.TrimPrefix(ep, "unix://")
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("csi: remove stale socket: %w", err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("csi: %w", err)
	}
	defer os.Remove(sock)
	p := &Provider{Address: opts.Address, CACert: opts.CACert, Logger: opts.Logger}
	srv := NewServer(p)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	opts.Logger.Info("csi provider listening", "socket", sock)
	select {
	case err := <-errc:
		return fmt.Errorf("csi: %w", err)
	case <-ctx.Done():
	}
	srv.GracefulStop()
	return nil
}

// NewServer returns a gRPC server with p registered as
// v1alpha1.CSIDriverProvider, using the hand-written codec.
func NewServer(p *Provider) *grpc.Server {
	s := grpc.NewServer(grpc.ForceServerCodec(codec{}))
	s.RegisterService(&serviceDesc, p)
	return s
}

// ClientCodec is the dial option a Go client of this service needs.
func ClientCodec() grpc.DialOption {
	return grpc.WithDefaultCallOptions(grpc.ForceCodec(codec{}))
}

type providerServer interface {
	Version(context.Context, *VersionRequest) (*VersionResponse, error)
	Mount(context.Context, *MountRequest) (*MountResponse, error)
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: "v1alpha1.CSIDriverProvider",
	HandlerType: (*providerServer)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Version", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(VersionRequest)
			if err := dec(in); err != nil {
				return nil, err
			}
			return srv.(providerServer).Version(ctx, in)
		}},
		{MethodName: "Mount", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(MountRequest)
			if err := dec(in); err != nil {
				return nil, err
			}
			return srv.(providerServer).Mount(ctx, in)
		}},
	},
	Metadata: "provider/v1alpha1/service.proto",
}

// Invoke calls method ("Version" or "Mount") on a connection: a small
// client for tests and tools.
func Invoke(ctx context.Context, cc *grpc.ClientConn, method string, in, out any) error {
	return cc.Invoke(ctx, "/v1alpha1.CSIDriverProvider/"+method, in, out, grpc.ForceCodec(codec{}))
}

// Provider implements the service.
type Provider struct {
	// Address is the Coffer URL when the class names none.
	Address string
	// CACert is a PEM file of CAs for the server. "": system pool.
	CACert string
	// Logger receives the logs. nil: discard.
	Logger *slog.Logger
}

// Version answers the driver's version probe.
func (p *Provider) Version(context.Context, *VersionRequest) (*VersionResponse, error) {
	return &VersionResponse{Version: "v1alpha1", RuntimeName: "coffer", RuntimeVersion: version.Version}, nil
}

type object struct {
	ObjectName     string `json:"objectName"`
	SecretPath     string `json:"secretPath"`
	SecretKey      string `json:"secretKey"`
	FilePermission string `json:"filePermission"`
}

// Mount logs in with the pod's token and returns the class's objects.
// Errors are gRPC InvalidArgument (a bad class or request),
// PermissionDenied (login or read refused) or Unavailable; their
// messages name the object and never hold a value or token.
func (p *Provider) Mount(ctx context.Context, req *MountRequest) (*MountResponse, error) {
	var attrs map[string]string
	if err := json.Unmarshal([]byte(req.Attributes), &attrs); err != nil {
		return nil, status.Error(codes.InvalidArgument, "attributes are not a JSON object of strings")
	}
	pod := attrs["csi.storage.k8s.io/pod.namespace"] + "/" + attrs["csi.storage.k8s.io/pod.name"]
	role := attrs["roleName"]
	if role == "" {
		return nil, status.Error(codes.InvalidArgument, "the SecretProviderClass sets no roleName")
	}
	var objs []object
	if err := yaml.Unmarshal([]byte(attrs["objects"]), &objs); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "objects is not a YAML list: %v", err)
	}
	if len(objs) == 0 {
		return nil, status.Error(codes.InvalidArgument, "the SecretProviderClass lists no objects")
	}
	mode := int32(0o644)
	if req.Permission != "" {
		n, err := strconv.ParseInt(req.Permission, 10, 32)
		if err != nil || n < 0 || n > 0o777 {
			return nil, status.Errorf(codes.InvalidArgument, "permission %q is not a file mode", req.Permission)
		}
		mode = int32(n)
	}
	seen := map[string]bool{}
	for i, o := range objs {
		clean := path.Clean(o.ObjectName)
		if o.ObjectName == "" || clean != o.ObjectName || path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
			return nil, status.Errorf(codes.InvalidArgument, "object %d: objectName %q must be a relative path inside the volume", i+1, o.ObjectName)
		}
		if seen[clean] {
			return nil, status.Errorf(codes.InvalidArgument, "object %d: objectName %q is listed twice", i+1, o.ObjectName)
		}
		seen[clean] = true
		if strings.Trim(o.SecretPath, "/") == "" {
			return nil, status.Errorf(codes.InvalidArgument, "object %q: secretPath is required", o.ObjectName)
		}
		if o.FilePermission != "" {
			if _, err := strconv.ParseUint(o.FilePermission, 8, 32); err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "object %q: filePermission %q is not octal", o.ObjectName, o.FilePermission)
			}
		}
	}
	jwt, err := podToken(attrs)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	addr := attrs["cofferAddress"]
	if addr == "" {
		addr = attrs["vaultAddress"]
	}
	if addr == "" {
		addr = p.Address
	}
	if addr == "" {
		addr = "https://coffer.coffer.svc:8200"
	}
	mount := attrs["authMountPath"]
	if mount == "" {
		mount = attrs["vaultKubernetesMountPath"]
	}
	if mount == "" {
		mount = "kubernetes"
	}
	mount = strings.Trim(strings.TrimPrefix(strings.Trim(mount, "/"), "auth/"), "/")
	c, err := api.NewClient(api.Config{Address: addr, CACert: p.CACert})
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	lr, err := c.Write(ctx, "auth/"+mount+"/login", map[string]any{"role": role, "jwt": jwt})
	if err != nil {
		return nil, status.Errorf(grpcCode(err), "login to auth/%s as role %q for pod %s failed: %v", mount, role, pod, err)
	}
	if lr.Auth == nil || lr.Auth.ClientToken == "" {
		return nil, status.Errorf(codes.Unavailable, "login to auth/%s returned no token", mount)
	}
	c = c.WithToken(lr.Auth.ClientToken)
	// The token is only for this mount; revoke it when done.
	defer c.Write(context.WithoutCancel(ctx), "auth/token/revoke-self", nil)

	out := &MountResponse{}
	for _, o := range objs {
		r, err := c.Read(ctx, strings.Trim(o.SecretPath, "/"))
		if err != nil {
			return nil, status.Errorf(grpcCode(err), "object %q: read %s: %v", o.ObjectName, o.SecretPath, err)
		}
		data, ver := r.Data, ""
		if d, ok := data["data"].(map[string]any); ok {
			if md, ok := data["metadata"].(map[string]any); ok {
				data, ver = d, fmt.Sprint(md["version"])
			}
		}
		var contents []byte
		if o.SecretKey != "" {
			v, ok := data[o.SecretKey]
			if !ok {
				return nil, status.Errorf(codes.NotFound, "object %q: %s has no key %q", o.ObjectName, o.SecretPath, o.SecretKey)
			}
			if s, ok := v.(string); ok {
				contents = []byte(s)
			} else if contents, err = json.Marshal(v); err != nil {
				return nil, status.Errorf(codes.Internal, "object %q: encode value", o.ObjectName)
			}
		} else if contents, err = json.Marshal(data); err != nil {
			return nil, status.Errorf(codes.Internal, "object %q: encode data", o.ObjectName)
		}
		if ver == "" || ver == "<nil>" {
			sum := sha256.Sum256(contents)
			ver = hex.EncodeToString(sum[:8])
		}
		fm := mode
		if o.FilePermission != "" {
			n, _ := strconv.ParseUint(o.FilePermission, 8, 32)
			fm = int32(n)
		}
		out.Files = append(out.Files, File{Path: path.Clean(o.ObjectName), Mode: fm, Contents: contents})
		out.ObjectVersion = append(out.ObjectVersion, ObjectVersion{ID: o.ObjectName, Version: ver})
	}
	if p.Logger != nil {
		p.Logger.Info("mounted", "pod", pod, "role", role, "objects", len(out.Files))
	}
	return out, nil
}

// podToken picks the pod's service-account token from the attribute
// csi.storage.k8s.io/serviceAccount.tokens ({"<audience>": {"token": ...}}):
// the one for attrs["audience"] when set, else the only one.
func podToken(attrs map[string]string) (string, error) {
	raw := attrs["csi.storage.k8s.io/serviceAccount.tokens"]
	if raw == "" {
		return "", errors.New("the request carries no service-account token: set tokenRequests in the secrets-store.csi.k8s.io CSIDriver")
	}
	var toks map[string]struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(raw), &toks); err != nil {
		return "", errors.New("csi.storage.k8s.io/serviceAccount.tokens is not valid JSON")
	}
	if aud, ok := attrs["audience"]; ok {
		if t := toks[aud].Token; t != "" {
			return t, nil
		}
		return "", fmt.Errorf("no service-account token for audience %q: add it to the CSIDriver's tokenRequests", aud)
	}
	if len(toks) != 1 {
		return "", fmt.Errorf("%d service-account tokens; set the audience parameter to choose one", len(toks))
	}
	for _, t := range toks {
		if t.Token != "" {
			return t.Token, nil
		}
	}
	return "", errors.New("the service-account token is empty")
}

func grpcCode(err error) codes.Code {
	var ae *api.Error
	switch {
	case errors.Is(err, api.ErrPermissionDenied):
		return codes.PermissionDenied
	case errors.Is(err, api.ErrNotFound):
		return codes.NotFound
	case errors.As(err, &ae) && ae.StatusCode == 400:
		return codes.PermissionDenied // a refused login (wrong role, bad token) is a 400 in Vault
	}
	return codes.Unavailable
}
