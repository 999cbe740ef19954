package token

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/coffer-dev/coffer/internal/auth/tokenparams"
	"github.com/coffer-dev/coffer/internal/logical"
)

// SudoPaths are the paths of this mount (relative, Vault's glob syntax)
// that need the sudo capability; the core checks it before routing.
var SudoPaths = []string{"accessors/*", "accessors", "revoke-orphan", "revoke-orphan/*"}

// HandleRequest serves Vault's auth/token/ API; req.Path is relative to
// the mount ("create", "lookup-self", "roles/ci"). The caller's own token
// arrives in req.ClientToken. Errors are *logical.Error; storage failures
// are returned wrapped, for the core to log and turn into a 500.
func (s *Store) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	path := strings.Trim(req.Path, "/")
	op := req.Operation
	write := op == logical.UpdateOperation || op == logical.CreateOperation
	switch {
	case path == "create" || path == "create-orphan" || strings.HasPrefix(path, "create/"):
		if !write {
			return nil, logical.ErrUnsupportedOperation
		}
		return s.handleCreate(ctx, req, path)
	case path == "lookup":
		if !write && op != logical.ReadOperation {
			return nil, logical.ErrUnsupportedOperation
		}
		return s.handleLookup(ctx, req)
	case path == "lookup-self":
		if !write && op != logical.ReadOperation {
			return nil, logical.ErrUnsupportedOperation
		}
		e, err := s.caller(ctx, req)
		if err != nil {
			return nil, err
		}
		return &logical.Response{Data: s.lookupData(e, req.ClientToken)}, nil
	case path == "lookup-accessor":
		if !write {
			return nil, logical.ErrUnsupportedOperation
		}
		return s.handleLookupAccessor(ctx, req)
	case path == "renew" || path == "renew-self" || path == "renew-accessor":
		if !write {
			return nil, logical.ErrUnsupportedOperation
		}
		return s.handleRenew(ctx, req, path)
	case path == "revoke" || path == "revoke-self" || path == "revoke-orphan" || path == "revoke-accessor":
		if !write {
			return nil, logical.ErrUnsupportedOperation
		}
		return nil, s.handleRevoke(ctx, req, path)
	case path == "roles":
		if op != logical.ListOperation {
			return nil, logical.ErrUnsupportedOperation
		}
		return s.handleListRoles(ctx)
	case strings.HasPrefix(path, "roles/"):
		return s.handleRole(ctx, req, strings.TrimPrefix(path, "roles/"))
	case path == "accessors":
		if op != logical.ListOperation {
			return nil, logical.ErrUnsupportedOperation
		}
		keys, err := s.Accessors(ctx)
		if err != nil {
			return nil, err
		}
		return listResponse(keys), nil
	}
	return nil, logical.ErrUnsupportedPath(req.Path)
}

func listResponse(keys []string) *logical.Response {
	if len(keys) == 0 {
		return nil
	}
	return &logical.Response{Data: map[string]any{"keys": keys}}
}

// caller returns the entry of the request's own token.
func (s *Store) caller(ctx context.Context, req *logical.Request) (*Entry, error) {
	e, err := s.Lookup(ctx, req.ClientToken)
	if errors.Is(err, ErrNotFound) {
		return nil, logical.ErrPermissionDenied
	}
	return e, err
}

func (s *Store) handleCreate(ctx context.Context, req *logical.Request, path string) (*logical.Response, error) {
	parent, err := s.caller(ctx, req)
	if err != nil {
		return nil, err
	}
	var cr CreateRequest
	if err := req.Decode(&cr); err != nil {
		return nil, err
	}
	cr.Path = "auth/token/" + path
	switch {
	case path == "create-orphan":
		cr.orphan = true
	case strings.HasPrefix(path, "create/"):
		cr.RoleName = strings.TrimPrefix(path, "create/")
		role, err := s.Role(ctx, cr.RoleName)
		if err != nil {
			return nil, err
		}
		if role == nil {
			return nil, invalid("unknown role %s", cr.RoleName)
		}
		if role.PathSuffix != "" {
			cr.Path += "/" + role.PathSuffix
		}
	case cr.RoleName != "":
		cr.Path = "auth/token/create/" + cr.RoleName
	}
	token, e, err := s.Create(ctx, parent, cr)
	if errors.Is(err, ErrNotFound) {
		return nil, logical.ErrPermissionDenied
	}
	if err != nil {
		return nil, err
	}
	return &logical.Response{Auth: s.auth(e, token)}, nil
}

// auth is the "auth" block for a created or renewed token.
func (s *Store) auth(e *Entry, token string) *logical.Auth {
	return &logical.Auth{
		ClientToken:   token,
		Accessor:      e.Accessor,
		Policies:      e.Policies,
		TokenPolicies: e.Policies,
		Metadata:      e.Meta,
		LeaseDuration: int64(e.TTL(s.now()).Round(time.Second) / time.Second),
		Renewable:     e.Renewable,
		EntityID:      e.EntityID,
		TokenType:     "service",
		Orphan:        e.Orphan(),
		NumUses:       e.NumUses,
	}
}

// lookupData is the "data" of lookup and lookup-self, as Vault's.
func (s *Store) lookupData(e *Entry, token string) map[string]any {
	now := s.now()
	var expire any
	if !e.ExpireTime.IsZero() {
		expire = e.ExpireTime.UTC().Format(time.RFC3339Nano)
	}
	d := map[string]any{
		"accessor":         e.Accessor,
		"creation_time":    e.CreationTime.Unix(),
		"creation_ttl":     int64(e.CreationTTL / time.Second),
		"display_name":     e.DisplayName,
		"entity_id":        e.EntityID,
		"expire_time":      expire,
		"explicit_max_ttl": int64(e.ExplicitMaxTTL / time.Second),
		"id":               token,
		"issue_time":       e.CreationTime.UTC().Format(time.RFC3339Nano),
		"meta":             e.Meta,
		"num_uses":         e.NumUses,
		"orphan":           e.Orphan(),
		"path":             e.Path,
		"policies":         e.Policies,
		"renewable":        e.Renewable,
		"ttl":              int64(e.TTL(now) / time.Second),
		"type":             "service",
	}
	if !e.LastRenewal.IsZero() {
		d["last_renewal_time"] = e.LastRenewal.Unix()
		d["last_renewal"] = e.LastRenewal.UTC().Format(time.RFC3339Nano)
	}
	if e.Period > 0 {
		d["period"] = int64(e.Period / time.Second)
	}
	if e.Role != "" {
		d["role"] = e.Role
	}
	if len(e.BoundCIDRs) > 0 {
		// As Vault: present only for a bound token.
		d["bound_cidrs"] = tokenparams.FormatCIDRs(e.BoundCIDRs)
	}
	return d
}

type tokenRequest struct {
	Token string `json:"token"`
}

type accessorRequest struct {
	Accessor string `json:"accessor"`
}

type renewRequest struct {
	Token     string           `json:"token"`
	Accessor  string           `json:"accessor"`
	Increment logical.Duration `json:"increment"`
}

func (s *Store) handleLookup(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	var r tokenRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if r.Token == "" && req.Query != nil {
		r.Token = req.Query.Get("token")
	}
	if r.Token == "" {
		// As Vault: an empty token looks up the caller's own.
		r.Token = req.ClientToken
	}
	e, err := s.Lookup(ctx, r.Token)
	if errors.Is(err, ErrNotFound) {
		return nil, logical.Errorf(logical.PermissionDenied, "bad token")
	}
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: s.lookupData(e, r.Token)}, nil
}

func (s *Store) handleLookupAccessor(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	var r accessorRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	if r.Accessor == "" {
		return nil, invalid("missing accessor")
	}
	e, err := s.LookupAccessor(ctx, r.Accessor)
	if errors.Is(err, ErrNotFound) {
		return nil, invalid("invalid accessor")
	}
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: s.lookupData(e, "")}, nil
}

func (s *Store) handleRenew(ctx context.Context, req *logical.Request, path string) (*logical.Response, error) {
	var r renewRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	var (
		e     *Entry
		err   error
		token string
	)
	switch path {
	case "renew-self":
		e, err = s.caller(ctx, req)
		token = req.ClientToken
	case "renew":
		if r.Token == "" {
			return nil, invalid("missing token")
		}
		e, err = s.Lookup(ctx, r.Token)
		token = r.Token
	case "renew-accessor":
		if r.Accessor == "" {
			return nil, invalid("missing accessor")
		}
		e, err = s.LookupAccessor(ctx, r.Accessor)
		if errors.Is(err, ErrNotFound) {
			return nil, invalid("invalid accessor")
		}
	}
	if errors.Is(err, ErrNotFound) {
		return nil, invalid("token not found")
	}
	if err != nil {
		return nil, err
	}
	e, err = s.Renew(ctx, e, time.Duration(r.Increment))
	if errors.Is(err, ErrNotFound) {
		return nil, invalid("token not found")
	}
	if err != nil {
		return nil, err
	}
	return &logical.Response{Auth: s.auth(e, token)}, nil
}

func (s *Store) handleRevoke(ctx context.Context, req *logical.Request, path string) error {
	switch path {
	case "revoke-self":
		e, err := s.caller(ctx, req)
		if err != nil {
			return err
		}
		return s.RevokeTree(ctx, e)
	case "revoke-accessor":
		var r accessorRequest
		if err := req.Decode(&r); err != nil {
			return err
		}
		if r.Accessor == "" {
			return invalid("missing accessor")
		}
		err := s.RevokeAccessor(ctx, r.Accessor)
		if errors.Is(err, ErrNotFound) {
			return invalid("invalid accessor")
		}
		return err
	}
	var r tokenRequest
	if err := req.Decode(&r); err != nil {
		return err
	}
	if r.Token == "" {
		return invalid("missing token")
	}
	if path == "revoke-orphan" {
		return s.RevokeOrphan(ctx, r.Token)
	}
	return s.Revoke(ctx, r.Token)
}

func (s *Store) handleListRoles(ctx context.Context) (*logical.Response, error) {
	keys, err := s.store.List(ctx, rolePrefix)
	if err != nil {
		return nil, err
	}
	return listResponse(keys), nil
}

func (s *Store) handleRole(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	if name == "" && req.Operation == logical.ListOperation {
		return s.handleListRoles(ctx)
	}
	if !validRoleName(name) {
		return nil, invalid("invalid role name")
	}
	switch req.Operation {
	case logical.ReadOperation:
		r, err := s.Role(ctx, name)
		if err != nil || r == nil {
			return nil, err
		}
		return &logical.Response{Data: r.data()}, nil
	case logical.DeleteOperation:
		if err := s.store.Delete(ctx, rolePrefix+name); err != nil {
			return nil, err
		}
		return nil, nil
	case logical.CreateOperation, logical.UpdateOperation:
		var q roleRequest
		if err := req.Decode(&q); err != nil {
			return nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		r, err := s.Role(ctx, name)
		if err != nil {
			return nil, err
		}
		if r == nil {
			r = &Role{Name: name, Renewable: true}
		}
		if err := q.apply(r); err != nil {
			return nil, err
		}
		return nil, s.putRole(ctx, r)
	}
	return nil, logical.ErrUnsupportedOperation
}
