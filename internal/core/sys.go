package core

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/token"
)

// sysBackend serves the enveloped sys/ endpoints. The bare-JSON ones
// (seal-status, health, init, unseal, leader, generate-root, rekey) are
// served by httpapi through the Core's methods, because their shapes are
// not Vault's envelope.
type sysBackend struct {
	c  *Core
	st *unsealed
}

func (s *sysBackend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	p := req.Path
	switch {
	case p == "mounts":
		return s.listMounts(req, false)
	case p == "auth":
		return s.listMounts(req, true)
	case strings.HasPrefix(p, "mounts/") && strings.HasSuffix(p, "/tune"):
		return s.tune(ctx, req, mountPath(strings.TrimSuffix(strings.TrimPrefix(p, "mounts/"), "/tune")))
	case strings.HasPrefix(p, "mounts/"):
		return s.mount(ctx, req, mountPath(strings.TrimPrefix(p, "mounts/")))
	case strings.HasPrefix(p, "auth/") && strings.HasSuffix(p, "/tune"):
		return s.tune(ctx, req, "auth/"+mountPath(strings.TrimSuffix(strings.TrimPrefix(p, "auth/"), "/tune")))
	case strings.HasPrefix(p, "auth/"):
		return s.authMount(ctx, req, mountPath(strings.TrimPrefix(p, "auth/")))
	case strings.HasPrefix(p, "leases/"):
		return s.c.leasesHandle(ctx, s.st, req, strings.TrimPrefix(p, "leases/"))
	case p == "renew" || strings.HasPrefix(p, "renew/") || p == "revoke" || strings.HasPrefix(p, "revoke/"):
		return s.c.leasesHandle(ctx, s.st, req, p)
	case p == "internal/ui/mounts" || strings.HasPrefix(p, "internal/ui/mounts/"):
		return s.uiMount(req, strings.TrimPrefix(strings.TrimPrefix(p, "internal/ui/mounts"), "/"))
	case p == "policies/acl" || strings.HasPrefix(p, "policies/acl/") || p == "policy" || strings.HasPrefix(p, "policy/") || p == "policies/acl/":
		return s.st.policies.HandleRequest(ctx, req)
	case p == "capabilities" || p == "capabilities-self" || p == "capabilities-accessor":
		return s.capabilities(ctx, req)
	case p == "declarative/owned":
		return s.declarativeOwned(ctx, req)
	case p == "access":
		return s.access(ctx, req)
	case p == "rotate":
		return s.rotate(ctx, req)
	case p == "key-status":
		return s.keyStatus(req)
	case strings.HasPrefix(p, "wrapping/"):
		return s.c.wrapping(ctx, s.st, req)
	}
	return nil, &logical.Error{Code: logical.NotFound, Message: "no handler for route \"sys/" + p + "\". route entry not found."}
}

func mountPath(p string) string {
	p = strings.Trim(p, "/")
	if p == "" {
		return ""
	}
	return p + "/"
}

// mountInfo is Vault's JSON for one mount in sys/mounts and sys/auth.
func mountInfo(e MountEntry) map[string]any {
	var opts any
	if len(e.Options) > 0 {
		opts = e.Options
	}
	return map[string]any{
		"accessor":    e.Accessor,
		"description": e.Description,
		"type":        e.Type,
		"uuid":        e.UUID,
		"local":       e.Local,
		"seal_wrap":   e.SealWrap,
		"options":     opts,
		"config": map[string]any{
			"default_lease_ttl": int64(e.Config.DefaultLeaseTTL / time.Second),
			"max_lease_ttl":     int64(e.Config.MaxLeaseTTL / time.Second),
			"force_no_cache":    false,
		},
		"external_entropy_access": false,
		"plugin_version":          "",
		"running_plugin_version":  "",
		"running_sha256":          "",
	}
}

func (s *sysBackend) listMounts(req *logical.Request, auth bool) (*logical.Response, error) {
	if req.Operation != logical.ReadOperation {
		return nil, logical.ErrUnsupportedOperation
	}
	data := map[string]any{}
	for _, e := range s.st.mounts.table.entries() {
		isAuth := strings.HasPrefix(e.Path, "auth/")
		if isAuth != auth {
			continue
		}
		data[strings.TrimPrefix(e.Path, "auth/")] = mountInfo(e)
	}
	return &logical.Response{Data: data, Inline: true}, nil
}

type enableMountRequest struct {
	Type        string            `json:"type"`
	Description string            `json:"description"`
	Options     map[string]string `json:"options"`
	Config      struct {
		DefaultLeaseTTL logical.Duration `json:"default_lease_ttl"`
		MaxLeaseTTL     logical.Duration `json:"max_lease_ttl"`
	} `json:"config"`
	Local    logical.Bool `json:"local"`
	SealWrap logical.Bool `json:"seal_wrap"`
}

// reservedMounts cannot be used for new mounts.
var reservedMounts = []string{"sys/", "auth/", "cubbyhole/", "identity/"}

// authMount enables, disables or reads an auth method at auth/<path>.
func (s *sysBackend) authMount(ctx context.Context, req *logical.Request, path string) (*logical.Response, error) {
	if path == "" {
		return nil, logical.Errorf(logical.Invalid, "missing auth method path")
	}
	if path == "token/" {
		if req.Operation == logical.ReadOperation {
			return &logical.Response{Data: mountInfo(s.st.mounts.table.get("auth/token/").entry)}, nil
		}
		return nil, logical.Errorf(logical.Invalid, "the token auth method cannot be changed")
	}
	return s.mountAt(ctx, req, "auth/"+path, s.c.cfg.AuthMethods)
}

func (s *sysBackend) mount(ctx context.Context, req *logical.Request, path string) (*logical.Response, error) {
	for _, res := range reservedMounts {
		if strings.HasPrefix(path, res) && req.Operation != logical.ReadOperation && req.Operation != logical.DeleteOperation {
			return nil, logical.Errorf(logical.Invalid, "cannot mount under reserved path %q", res)
		}
	}
	return s.mountAt(ctx, req, path, s.c.cfg.Engines)
}

func (s *sysBackend) mountAt(ctx context.Context, req *logical.Request, path string, factories map[string]logical.Factory) (*logical.Response, error) {
	if path == "" {
		return nil, logical.Errorf(logical.Invalid, "missing mount path")
	}
	switch req.Operation {
	case logical.ReadOperation:
		m := s.st.mounts.table.get(path)
		if m == nil {
			return nil, logical.Errorf(logical.Invalid, "no mount at %q", path)
		}
		return &logical.Response{Data: mountInfo(m.entry)}, nil
	case logical.DeleteOperation:
		for _, r := range reservedMounts {
			if path == r {
				return nil, logical.Errorf(logical.Invalid, "cannot unmount %q", path)
			}
		}
		// Vault revokes what a mount issued before it goes: dynamic
		// secrets while their engine can still revoke them, and the
		// tokens an auth method minted.
		if s.st.mounts.table.get(path) != nil {
			if err := s.st.leases.RevokePrefix(ctx, strings.TrimSuffix(path, "/")); err != nil {
				return nil, fmt.Errorf("core: revoke leases of %q: %w", path, err)
			}
		}
		return nil, s.st.mounts.disable(ctx, path)
	case logical.CreateOperation, logical.UpdateOperation:
		var r enableMountRequest
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		if r.Type == "" {
			return nil, logical.Errorf(logical.Invalid, "missing mount type")
		}
		switch r.Type {
		case "system", "token", "cubbyhole", "identity":
			return nil, logical.Errorf(logical.Invalid, "cannot mount another %q engine", r.Type)
		}
		// "kv-v2" is Vault's alias for kv with version 2.
		if r.Type == "kv-v2" {
			r.Type = "kv"
			if r.Options == nil {
				r.Options = map[string]string{}
			}
			r.Options["version"] = "2"
		}
		if _, ok := factories[r.Type]; !ok {
			return nil, logical.Errorf(logical.Invalid, "plugin not found in the catalog: %s", r.Type)
		}
		e := MountEntry{
			Path:        path,
			Type:        r.Type,
			Description: r.Description,
			Options:     r.Options,
			Local:       bool(r.Local),
			SealWrap:    bool(r.SealWrap),
			Config: MountConfig{
				DefaultLeaseTTL: time.Duration(r.Config.DefaultLeaseTTL),
				MaxLeaseTTL:     time.Duration(r.Config.MaxLeaseTTL),
			},
		}
		if r.Type == "kv" && e.Options["version"] == "" {
			if e.Options == nil {
				e.Options = map[string]string{}
			}
			e.Options["version"] = "1"
		}
		return nil, s.st.mounts.enable(ctx, e)
	}
	return nil, logical.ErrUnsupportedOperation
}

// defaultMaxTTL is the system-wide default and maximum lease TTL (32 days),
// reported for mounts that set none, as Vault does.
const defaultMaxTTL = 32 * 24 * time.Hour

type tuneRequest struct {
	DefaultLeaseTTL *logical.Duration `json:"default_lease_ttl"`
	MaxLeaseTTL     *logical.Duration `json:"max_lease_ttl"`
	Description     *string           `json:"description"`
	Options         map[string]string `json:"options"`
}

func (s *sysBackend) tune(ctx context.Context, req *logical.Request, path string) (*logical.Response, error) {
	switch req.Operation {
	case logical.ReadOperation:
		m := s.st.mounts.table.get(path)
		if m == nil {
			return nil, logical.Errorf(logical.Invalid, "cannot fetch sysview for path %q", path)
		}
		def, max := m.entry.Config.DefaultLeaseTTL, m.entry.Config.MaxLeaseTTL
		if def == 0 {
			def = defaultMaxTTL
		}
		if max == 0 {
			max = defaultMaxTTL
		}
		data := map[string]any{
			"description":       m.entry.Description,
			"default_lease_ttl": int64(def / time.Second),
			"max_lease_ttl":     int64(max / time.Second),
			"force_no_cache":    false,
		}
		if len(m.entry.Options) > 0 {
			data["options"] = m.entry.Options
		}
		return &logical.Response{Data: data, Inline: true}, nil
	case logical.CreateOperation, logical.UpdateOperation:
		var r tuneRequest
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		return nil, s.st.mounts.tune(ctx, path, func(e *MountEntry) error {
			if r.DefaultLeaseTTL != nil {
				e.Config.DefaultLeaseTTL = time.Duration(*r.DefaultLeaseTTL)
			}
			if r.MaxLeaseTTL != nil {
				e.Config.MaxLeaseTTL = time.Duration(*r.MaxLeaseTTL)
			}
			if r.Description != nil {
				e.Description = *r.Description
			}
			if v, ok := r.Options["version"]; ok && e.Type == "kv" && v != e.Options["version"] {
				return logical.Errorf(logical.Invalid, "changing the KV version of a mount is not supported yet")
			}
			return nil
		})
	}
	return nil, logical.ErrUnsupportedOperation
}

// uiMount answers sys/internal/ui/mounts/<path>: which mount serves a
// path, with its type and options (the Vault CLI uses it to tell KV v1 from
// v2). Any token may ask, but only about paths it has some access to.
func (s *sysBackend) uiMount(req *logical.Request, path string) (*logical.Response, error) {
	if path == "" {
		data := map[string]any{"secret": map[string]any{}, "auth": map[string]any{}}
		secret := data["secret"].(map[string]any)
		auth := data["auth"].(map[string]any)
		for _, e := range s.st.mounts.table.entries() {
			if strings.HasPrefix(e.Path, "auth/") {
				auth[strings.TrimPrefix(e.Path, "auth/")] = mountInfo(e)
			} else {
				secret[e.Path] = mountInfo(e)
			}
		}
		return &logical.Response{Data: data}, nil
	}
	m, _ := s.st.mounts.table.route(path)
	if m == nil {
		return nil, logical.ErrPermissionDenied
	}
	info := mountInfo(m.entry)
	info["path"] = m.entry.Path
	info["deprecation_status"] = "supported"
	return &logical.Response{Data: info}, nil
}

type capabilitiesRequest struct {
	Token    string             `json:"token"`
	Accessor string             `json:"accessor"`
	Path     logical.StringList `json:"path"`
	Paths    logical.StringList `json:"paths"`
}

func (s *sysBackend) capabilities(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	var r capabilitiesRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	paths := append(r.Paths, r.Path...)
	if len(paths) == 0 {
		return nil, logical.Errorf(logical.Invalid, "missing paths")
	}
	var (
		e   *token.Entry
		err error
	)
	switch req.Path {
	case "capabilities-self":
		e, err = s.st.tokens.Lookup(ctx, req.ClientToken)
	case "capabilities":
		if r.Token == "" {
			return nil, logical.Errorf(logical.Invalid, "missing token")
		}
		e, err = s.st.tokens.Lookup(ctx, r.Token)
	case "capabilities-accessor":
		if r.Accessor == "" {
			return nil, logical.Errorf(logical.Invalid, "missing accessor")
		}
		e, err = s.st.tokens.LookupAccessor(ctx, r.Accessor)
	}
	if errors.Is(err, token.ErrNotFound) {
		return nil, logical.Errorf(logical.Invalid, "invalid token")
	}
	if err != nil {
		return nil, err
	}
	caps, err := s.c.capabilities(ctx, s.st, e, paths)
	if err != nil {
		return nil, err
	}
	data := make(map[string]any, len(caps)+1)
	for p, c := range caps {
		data[p] = c
	}
	if len(paths) == 1 {
		data["capabilities"] = caps[strings.TrimPrefix(paths[0], "/")]
	}
	return &logical.Response{Data: data, Inline: true}, nil
}

func (s *sysBackend) rotate(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if req.Operation != logical.UpdateOperation && req.Operation != logical.CreateOperation {
		return nil, logical.ErrUnsupportedOperation
	}
	if _, err := s.c.barrier.Rotate(ctx); err != nil {
		return nil, err
	}
	return nil, nil
}

func (s *sysBackend) keyStatus(req *logical.Request) (*logical.Response, error) {
	if req.Operation != logical.ReadOperation {
		return nil, logical.ErrUnsupportedOperation
	}
	ks, err := s.c.barrier.KeyStatus()
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{
		"term":         ks.Term,
		"install_time": ks.InstallTime.UTC().Format(time.RFC3339Nano),
		"encryptions":  ks.Encryptions,
	}, Inline: true}, nil
}
