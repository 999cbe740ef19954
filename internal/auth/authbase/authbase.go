// Package authbase is the scaffolding the auth methods (approle, jwt,
// kubernetes, userpass) share: their roles and users are JSON entries in
// the mount's logical.Storage, listed by a LIST request and reported to
// sys/access; and the methods laid out as Vault's jwt and kubernetes are
// (config, role, role/<name>, login) route requests with a Router.
//
// Nothing here holds state or locks: each method keeps serializing its
// own read-modify-writes. Errors from storage are wrapped with the key
// (role and user names, never a secret) and returned as they are, so the
// core answers them with a 500.
package authbase

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/coffer-dev/coffer/internal/logical"
)

// GetJSON decodes the entry at key into v. It reports false, leaving v
// unchanged, when there is no such entry.
func GetJSON(ctx context.Context, s logical.Storage, key string, v any) (bool, error) {
	raw, err := s.Get(ctx, key)
	if errors.Is(err, logical.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("auth: read %s: %w", key, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("auth: decode %s: %w", key, err)
	}
	return true, nil
}

// Get returns the entry at key decoded as a T, or nil and no error when
// there is no such entry.
func Get[T any](ctx context.Context, s logical.Storage, key string) (*T, error) {
	var v T
	ok, err := GetJSON(ctx, s, key, &v)
	if !ok || err != nil {
		return nil, err
	}
	return &v, nil
}

// PutJSON stores v, encoded as JSON, at key.
func PutJSON(ctx context.Context, s logical.Storage, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("auth: encode %s: %w", key, err)
	}
	if err := s.Put(ctx, key, raw); err != nil {
		return fmt.Errorf("auth: write %s: %w", key, err)
	}
	return nil
}

// List answers a LIST of the entries under prefix (which ends in "/"):
// their names under "keys", or a nil response, which the core turns into
// Vault's 404, when there are none.
func List(ctx context.Context, s logical.Storage, prefix string) (*logical.Response, error) {
	keys, err := s.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("auth: list %s: %w", prefix, err)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	return &logical.Response{Data: map[string]any{"keys": keys}}, nil
}

// Roles returns, sorted by name, every entry of type T under prefix with
// the token policies policies reads from it: an auth method's
// logical.RoleLister. An entry deleted while listing is left out; any
// other error ends the listing.
func Roles[T any](ctx context.Context, s logical.Storage, prefix string, policies func(*T) []string) ([]logical.RoleInfo, error) {
	names, err := s.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("auth: list %s: %w", prefix, err)
	}
	var out []logical.RoleInfo
	for _, n := range names {
		v, err := Get[T](ctx, s, prefix+n)
		if err != nil {
			return nil, err
		}
		if v != nil {
			out = append(out, logical.RoleInfo{Name: n, Policies: policies(v)})
		}
	}
	return out, nil
}

// IsWrite reports whether op writes: create or update.
func IsWrite(op logical.Operation) bool {
	return op == logical.CreateOperation || op == logical.UpdateOperation
}

var nameRE = regexp.MustCompile(`^[\w.-]+$`)

// ValidName reports whether name is a valid role name: Vault's
// [A-Za-z0-9_.-]+, under 4096 bytes.
func ValidName(name string) bool { return len(name) < 4096 && nameRE.MatchString(name) }

// Router routes the requests of an auth method laid out as Vault's jwt and
// kubernetes methods are, relative to the mount:
//
//	login        create/update: Login
//	config       create/update: WriteConfig; read: ReadConfig
//	role         LIST the role names
//	role/<name>  create/update: WriteRole; read: ReadRole; delete
//
// Roles are stored as "role/<name>" in Storage; deleting a missing role
// is not an error. A role name that is not ValidName is an Invalid error
// before any handler runs. Every field is required.
type Router struct {
	Storage     logical.Storage
	Login       func(ctx context.Context, req *logical.Request) (*logical.Response, error)
	ReadConfig  func(ctx context.Context) (*logical.Response, error)
	WriteConfig func(ctx context.Context, req *logical.Request) error
	ReadRole    func(ctx context.Context, name string) (*logical.Response, error)
	WriteRole   func(ctx context.Context, req *logical.Request, name string) error
}

// HandleRequest implements logical.Backend. An operation a path does not
// take is logical.ErrUnsupportedOperation; an unknown path,
// logical.ErrUnsupportedPath.
func (r *Router) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	p := strings.Trim(req.Path, "/")
	op := req.Operation
	switch {
	case p == "login":
		if IsWrite(op) {
			return r.Login(ctx, req)
		}
	case p == "config":
		switch {
		case IsWrite(op):
			return nil, r.WriteConfig(ctx, req)
		case op == logical.ReadOperation:
			return r.ReadConfig(ctx)
		}
	case p == "role":
		if op == logical.ListOperation {
			return List(ctx, r.Storage, "role/")
		}
	case strings.HasPrefix(p, "role/"):
		name := strings.TrimPrefix(p, "role/")
		if !ValidName(name) {
			return nil, logical.Errorf(logical.Invalid, "invalid role name")
		}
		switch {
		case IsWrite(op):
			return nil, r.WriteRole(ctx, req, name)
		case op == logical.ReadOperation:
			return r.ReadRole(ctx, name)
		case op == logical.DeleteOperation:
			if err := r.Storage.Delete(ctx, "role/"+name); err != nil {
				return nil, fmt.Errorf("auth: delete role: %w", err)
			}
			return nil, nil
		}
	default:
		return nil, logical.ErrUnsupportedPath(req.Path)
	}
	return nil, logical.ErrUnsupportedOperation
}

// Exists implements logical.ExistenceChecker for role/<name>, so that
// policies may tell creating a role from updating it; other paths are not
// checked (ok is false).
func (r *Router) Exists(ctx context.Context, req *logical.Request) (ok, exists bool, err error) {
	name, found := strings.CutPrefix(strings.Trim(req.Path, "/"), "role/")
	if !found || !ValidName(name) {
		return false, false, nil
	}
	_, err = r.Storage.Get(ctx, "role/"+name)
	if errors.Is(err, logical.ErrNotFound) {
		return true, false, nil
	}
	if err != nil {
		return true, false, fmt.Errorf("auth: read role/%s: %w", name, err)
	}
	return true, true, nil
}
