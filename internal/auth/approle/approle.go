// Package approle is Vault's AppRole auth method: a machine logs in with
// a role ID (which names its role, and is not secret) and a secret ID
// (issued to it, used a limited number of times, for a limited time, from
// given addresses).
//
// Paths, relative to the mount (auth/approle/ by default), with Vault's
// fields:
//
//	role                                   LIST the role names
//	role/<name>                            create/update, read, delete a role
//	role/<name>/role-id                    read, or set a custom role ID
//	role/<name>/secret-id                  generate a secret ID (write); LIST accessors
//	role/<name>/custom-secret-id           store a caller-chosen secret ID
//	role/<name>/secret-id/lookup           look up a secret ID's properties
//	role/<name>/secret-id/destroy          destroy a secret ID (write or delete)
//	role/<name>/secret-id-accessor/lookup  the same by accessor
//	role/<name>/secret-id-accessor/destroy
//	tidy/secret-id                         remove expired secret IDs now
//	login                                  unauthenticated: role_id, secret_id
//
// Secret IDs are stored under their SHA-256, never in clear, and never
// appear in errors or logs. A failed login says only "invalid role or
// secret ID" (400, as Vault), or "permission denied" (403) for a client
// outside the bound CIDRs.
package approle

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coffer-dev/coffer/internal/auth/authbase"
	"github.com/coffer-dev/coffer/internal/auth/tokenparams"
	"github.com/coffer-dev/coffer/internal/logical"
)

// Backend is the AppRole auth method. It is safe for concurrent use.
type Backend struct {
	s    logical.Storage
	now  func() time.Time
	rand io.Reader
	log  *slog.Logger

	// mu serializes every read-modify-write of roles and secret IDs (a
	// secret ID's remaining uses above all). Only the active node writes,
	// so an in-process lock is enough.
	mu sync.Mutex
}

// Config configures New.
type Config struct {
	Storage logical.Storage  // required
	Now     func() time.Time // nil: time.Now
	Rand    io.Reader        // nil: crypto/rand.Reader
	Logger  *slog.Logger     // nil: discard
}

// New returns the AppRole backend over cfg.Storage.
func New(cfg Config) (*Backend, error) {
	if cfg.Storage == nil {
		return nil, errors.New("approle: storage is required")
	}
	b := &Backend{s: cfg.Storage, now: cfg.Now, rand: cfg.Rand, log: cfg.Logger}
	if b.now == nil {
		b.now = time.Now
	}
	if b.rand == nil {
		b.rand = rand.Reader
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	return b, nil
}

// Factory builds the AppRole backend for an "approle" mount.
func Factory(ctx context.Context, cfg logical.BackendConfig) (logical.Backend, error) {
	return New(Config{Storage: cfg.Storage, Now: cfg.Now, Logger: cfg.Logger})
}

// UnauthenticatedPaths implements logical.Unauthenticated.
func (b *Backend) UnauthenticatedPaths() []string { return []string{"login"} }

// RoleInfo describes a role for sys/access.
// RoleInfo is logical.RoleInfo, so Roles implements logical.RoleLister.
type RoleInfo = logical.RoleInfo

// Roles returns every role with its token policies, sorted by name.
func (b *Backend) Roles(ctx context.Context) ([]RoleInfo, error) {
	return authbase.Roles(ctx, b.s, "role/", func(r *role) []string { return r.Token.Policies })
}

// role is a stored role.
type role struct {
	RoleID             string             `json:"role_id"`
	BindSecretID       bool               `json:"bind_secret_id"`
	SecretIDBoundCIDRs []string           `json:"secret_id_bound_cidrs"`
	SecretIDNumUses    int                `json:"secret_id_num_uses"`
	SecretIDTTL        time.Duration      `json:"secret_id_ttl"`
	LocalSecretIDs     bool               `json:"local_secret_ids"`
	Token              tokenparams.Params `json:"token"`
}

// secretID is a stored secret ID, under its hash.
type secretID struct {
	Accessor        string            `json:"accessor"`
	NumUses         int               `json:"num_uses"` // 0: unlimited
	TTL             time.Duration     `json:"ttl"`
	CreationTime    time.Time         `json:"creation_time"`
	ExpirationTime  time.Time         `json:"expiration_time"` // zero: never
	LastUpdatedTime time.Time         `json:"last_updated_time"`
	Metadata        map[string]string `json:"metadata"`
	CIDRList        []string          `json:"cidr_list"`
	TokenBoundCIDRs []string          `json:"token_bound_cidrs"`
}

var nameRE = regexp.MustCompile(`^[\w. -]+$`)

// validName reports whether name is a valid role name (Vault's character
// set, under 4096 bytes).
func validName(name string) bool { return len(name) < 4096 && nameRE.MatchString(name) }

// hashID returns the storage name of a role or secret ID.
func hashID(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

func (b *Backend) uuid() (string, error) {
	var u [16]byte
	if _, err := io.ReadFull(b.rand, u[:]); err != nil {
		return "", fmt.Errorf("approle: randomness: %w", err)
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:]), nil
}

func putOp(key string, v any) (logical.Op, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return logical.Op{}, fmt.Errorf("approle: encode entry: %w", err)
	}
	return logical.Op{Key: key, Value: raw}, nil
}

func (b *Backend) role(ctx context.Context, name string) (*role, error) {
	return authbase.Get[role](ctx, b.s, "role/"+name)
}

// HandleRequest implements logical.Backend.
func (b *Backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	p := strings.Trim(req.Path, "/")
	switch {
	case p == "login":
		return b.login(ctx, req)
	case p == "role":
		if req.Operation != logical.ListOperation {
			return nil, logical.ErrUnsupportedOperation
		}
		return authbase.List(ctx, b.s, "role/")
	case p == "tidy/secret-id":
		if req.Operation != logical.UpdateOperation && req.Operation != logical.CreateOperation {
			return nil, logical.ErrUnsupportedOperation
		}
		n, err := b.Tidy(ctx)
		if err != nil {
			return nil, err
		}
		return &logical.Response{Data: map[string]any{"removed": n}}, nil
	case strings.HasPrefix(p, "role/"):
		name, rest, _ := strings.Cut(strings.TrimPrefix(p, "role/"), "/")
		if !validName(name) {
			return nil, logical.Errorf(logical.Invalid, "invalid role name")
		}
		return b.roleRequest(ctx, req, name, rest)
	}
	return nil, logical.ErrUnsupportedPath(req.Path)
}

// Exists implements logical.ExistenceChecker for role/<name>, so that
// policies may tell creating a role from updating it.
func (b *Backend) Exists(ctx context.Context, req *logical.Request) (ok, exists bool, err error) {
	p := strings.Trim(req.Path, "/")
	name, ok := strings.CutPrefix(p, "role/")
	if !ok || strings.Contains(name, "/") || !validName(name) {
		return false, false, nil
	}
	r, err := b.role(ctx, name)
	return true, r != nil, err
}

func (b *Backend) roleRequest(ctx context.Context, req *logical.Request, name, rest string) (*logical.Response, error) {
	op := req.Operation
	switch rest {
	case "":
		switch {
		case authbase.IsWrite(op):
			return b.writeRole(ctx, req, name)
		case op == logical.ReadOperation:
			return b.readRole(ctx, name)
		case op == logical.DeleteOperation:
			return nil, b.deleteRole(ctx, name)
		}
	case "role-id":
		switch {
		case op == logical.ReadOperation:
			r, err := b.role(ctx, name)
			if err != nil || r == nil {
				return nil, err
			}
			return &logical.Response{Data: map[string]any{"role_id": r.RoleID}}, nil
		case authbase.IsWrite(op):
			return nil, b.setRoleID(ctx, req, name)
		}
	case "secret-id":
		switch {
		case authbase.IsWrite(op):
			return b.generateSecretID(ctx, req, name, false)
		case op == logical.ListOperation:
			return b.listAccessors(ctx, name)
		}
	case "custom-secret-id":
		if authbase.IsWrite(op) {
			return b.generateSecretID(ctx, req, name, true)
		}
	case "secret-id/lookup", "secret-id-accessor/lookup":
		if authbase.IsWrite(op) {
			return b.lookupSecretID(ctx, req, name, rest == "secret-id-accessor/lookup")
		}
	case "secret-id/destroy", "secret-id-accessor/destroy":
		if authbase.IsWrite(op) || op == logical.DeleteOperation {
			return nil, b.destroySecretID(ctx, req, name, rest == "secret-id-accessor/destroy")
		}
	default:
		return nil, logical.ErrUnsupportedPath(req.Path)
	}
	return nil, logical.ErrUnsupportedOperation
}

type roleRequest struct {
	BindSecretID       *logical.Bool       `json:"bind_secret_id"`
	SecretIDBoundCIDRs *logical.StringList `json:"secret_id_bound_cidrs"`
	SecretIDNumUses    *logical.Int        `json:"secret_id_num_uses"`
	SecretIDTTL        *logical.Duration   `json:"secret_id_ttl"`
	LocalSecretIDs     *logical.Bool       `json:"local_secret_ids"`
	RoleID             *string             `json:"role_id"`
	tokenparams.Request
}

func (b *Backend) writeRole(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	var in roleRequest
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	r, err := b.role(ctx, name)
	if err != nil {
		return nil, err
	}
	created := r == nil
	if created {
		r = &role{BindSecretID: true}
	}
	if in.BindSecretID != nil {
		r.BindSecretID = bool(*in.BindSecretID)
	}
	if in.SecretIDBoundCIDRs != nil {
		if r.SecretIDBoundCIDRs, err = tokenparams.ParseCIDRs("secret_id_bound_cidrs", *in.SecretIDBoundCIDRs); err != nil {
			return nil, err
		}
	}
	if in.SecretIDNumUses != nil {
		if *in.SecretIDNumUses < 0 {
			return nil, logical.Errorf(logical.Invalid, "secret_id_num_uses cannot be negative")
		}
		r.SecretIDNumUses = int(*in.SecretIDNumUses)
	}
	if in.SecretIDTTL != nil {
		r.SecretIDTTL = time.Duration(*in.SecretIDTTL)
	}
	if in.LocalSecretIDs != nil {
		if !created && bool(*in.LocalSecretIDs) != r.LocalSecretIDs {
			return nil, logical.Errorf(logical.Invalid, "local_secret_ids can only be set at role creation")
		}
		r.LocalSecretIDs = bool(*in.LocalSecretIDs)
	}
	if err := in.Apply(&r.Token); err != nil {
		return nil, err
	}
	if !r.BindSecretID && len(r.SecretIDBoundCIDRs) == 0 && len(r.Token.BoundCIDRs) == 0 {
		return nil, logical.Errorf(logical.Invalid, "at least one constraint should be enabled on the role")
	}
	var ops []logical.Op
	oldID := r.RoleID
	if in.RoleID != nil {
		if strings.TrimSpace(*in.RoleID) == "" {
			return nil, logical.Errorf(logical.Invalid, "role_id cannot be empty")
		}
		r.RoleID = *in.RoleID
	} else if created {
		if r.RoleID, err = b.uuid(); err != nil {
			return nil, err
		}
	}
	if r.RoleID != oldID {
		idOps, err := b.roleIDOpsLocked(ctx, name, oldID, r.RoleID)
		if err != nil {
			return nil, err
		}
		ops = append(ops, idOps...)
	}
	op, err := putOp("role/"+name, r)
	if err != nil {
		return nil, err
	}
	if err := b.s.Apply(ctx, append(ops, op)); err != nil {
		return nil, fmt.Errorf("approle: write role: %w", err)
	}
	return nil, nil
}

// roleIDOpsLocked returns the writes that move the role ID index of name
// from oldID to newID, refusing an ID another role has.
func (b *Backend) roleIDOpsLocked(ctx context.Context, name, oldID, newID string) ([]logical.Op, error) {
	var owner string
	ok, err := authbase.GetJSON(ctx, b.s, "role-id/"+hashID(newID), &owner)
	if err != nil {
		return nil, err
	}
	if ok && owner != name {
		return nil, logical.Errorf(logical.Invalid, "role_id already in use")
	}
	var ops []logical.Op
	if oldID != "" {
		ops = append(ops, logical.Op{Key: "role-id/" + hashID(oldID), Delete: true})
	}
	op, err := putOp("role-id/"+hashID(newID), name)
	if err != nil {
		return nil, err
	}
	return append(ops, op), nil
}

func (b *Backend) setRoleID(ctx context.Context, req *logical.Request, name string) error {
	var in struct {
		RoleID string `json:"role_id"`
	}
	if err := req.Decode(&in); err != nil {
		return err
	}
	if strings.TrimSpace(in.RoleID) == "" {
		return logical.Errorf(logical.Invalid, "missing role_id")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	r, err := b.role(ctx, name)
	if err != nil {
		return err
	}
	if r == nil {
		return logical.Errorf(logical.Invalid, "role %q does not exist", name)
	}
	if r.RoleID == in.RoleID {
		return nil
	}
	ops, err := b.roleIDOpsLocked(ctx, name, r.RoleID, in.RoleID)
	if err != nil {
		return err
	}
	r.RoleID = in.RoleID
	op, err := putOp("role/"+name, r)
	if err != nil {
		return err
	}
	if err := b.s.Apply(ctx, append(ops, op)); err != nil {
		return fmt.Errorf("approle: write role: %w", err)
	}
	return nil
}

func (b *Backend) readRole(ctx context.Context, name string) (*logical.Response, error) {
	r, err := b.role(ctx, name)
	if err != nil || r == nil {
		return nil, err
	}
	cidrs := r.SecretIDBoundCIDRs
	if cidrs == nil {
		cidrs = []string{}
	}
	d := map[string]any{
		"bind_secret_id":        r.BindSecretID,
		"secret_id_bound_cidrs": cidrs,
		"secret_id_num_uses":    r.SecretIDNumUses,
		"secret_id_ttl":         int64(r.SecretIDTTL / time.Second),
		"local_secret_ids":      r.LocalSecretIDs,
	}
	r.Token.Fill(d)
	return &logical.Response{Data: d}, nil
}

func (b *Backend) deleteRole(ctx context.Context, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, err := b.role(ctx, name)
	if err != nil || r == nil {
		return err
	}
	ops := []logical.Op{{Key: "role/" + name, Delete: true}, {Key: "role-id/" + hashID(r.RoleID), Delete: true}}
	accs, err := b.s.List(ctx, "accessor/"+name+"/")
	if err != nil {
		return fmt.Errorf("approle: list secret IDs: %w", err)
	}
	for _, a := range accs {
		var h string
		if ok, err := authbase.GetJSON(ctx, b.s, "accessor/"+name+"/"+a, &h); err != nil {
			return err
		} else if ok {
			ops = append(ops, logical.Op{Key: "secret-id/" + name + "/" + h, Delete: true})
		}
		ops = append(ops, logical.Op{Key: "accessor/" + name + "/" + a, Delete: true})
	}
	if err := b.s.Apply(ctx, ops); err != nil {
		return fmt.Errorf("approle: delete role: %w", err)
	}
	return nil
}

type secretIDRequest struct {
	SecretID        string              `json:"secret_id"`
	Metadata        string              `json:"metadata"`
	CIDRList        *logical.StringList `json:"cidr_list"`
	TokenBoundCIDRs *logical.StringList `json:"token_bound_cidrs"`
	NumUses         *logical.Int        `json:"num_uses"`
	TTL             *logical.Duration   `json:"ttl"`
}

// subset reports whether every block of sub lies within one of super
// (an empty super allows everything).
func subset(sub, super []string) bool {
	if len(super) == 0 {
		return true
	}
	for _, s := range sub {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return false
		}
		in := false
		for _, t := range super {
			q, err := netip.ParsePrefix(t)
			if err == nil && q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	return true
}

func (b *Backend) generateSecretID(ctx context.Context, req *logical.Request, name string, custom bool) (*logical.Response, error) {
	var in secretIDRequest
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	if custom && in.SecretID == "" {
		return nil, logical.Errorf(logical.Invalid, "missing secret_id")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	r, err := b.role(ctx, name)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, logical.Errorf(logical.Invalid, "role %q does not exist", name)
	}
	if !r.BindSecretID {
		return nil, logical.Errorf(logical.Invalid, "bind_secret_id is not set on the role")
	}
	e := secretID{NumUses: r.SecretIDNumUses, TTL: r.SecretIDTTL, Metadata: map[string]string{}}
	if in.Metadata != "" {
		if err := json.Unmarshal([]byte(in.Metadata), &e.Metadata); err != nil {
			return nil, logical.Errorf(logical.Invalid, "metadata must be a JSON object of strings")
		}
	}
	if in.CIDRList != nil {
		if e.CIDRList, err = tokenparams.ParseCIDRs("cidr_list", *in.CIDRList); err != nil {
			return nil, err
		}
		if !subset(e.CIDRList, r.SecretIDBoundCIDRs) {
			return nil, logical.Errorf(logical.Invalid, "cidr_list must be a subset of the role's secret_id_bound_cidrs")
		}
	}
	if in.TokenBoundCIDRs != nil {
		if e.TokenBoundCIDRs, err = tokenparams.ParseCIDRs("token_bound_cidrs", *in.TokenBoundCIDRs); err != nil {
			return nil, err
		}
		if !subset(e.TokenBoundCIDRs, r.Token.BoundCIDRs) {
			return nil, logical.Errorf(logical.Invalid, "token_bound_cidrs must be a subset of the role's token_bound_cidrs")
		}
	}
	if in.NumUses != nil {
		n := int(*in.NumUses)
		if n < 0 || (r.SecretIDNumUses > 0 && (n == 0 || n > r.SecretIDNumUses)) {
			return nil, logical.Errorf(logical.Invalid, "num_uses cannot be negative or exceed the role's secret_id_num_uses")
		}
		e.NumUses = n
	}
	if in.TTL != nil {
		t := time.Duration(*in.TTL)
		if r.SecretIDTTL > 0 && (t == 0 || t > r.SecretIDTTL) {
			return nil, logical.Errorf(logical.Invalid, "ttl cannot be longer than the role's secret_id_ttl")
		}
		e.TTL = t
	}
	id := in.SecretID
	if !custom {
		if id, err = b.uuid(); err != nil {
			return nil, err
		}
	}
	key := "secret-id/" + name + "/" + hashID(id)
	var dup secretID
	if ok, err := authbase.GetJSON(ctx, b.s, key, &dup); err != nil {
		return nil, err
	} else if ok {
		return nil, logical.Errorf(logical.Invalid, "secret_id already in use")
	}
	if e.Accessor, err = b.uuid(); err != nil {
		return nil, err
	}
	now := b.now().UTC()
	e.CreationTime, e.LastUpdatedTime = now, now
	if e.TTL > 0 {
		e.ExpirationTime = now.Add(e.TTL)
	}
	op1, err := putOp(key, e)
	if err != nil {
		return nil, err
	}
	op2, err := putOp("accessor/"+name+"/"+e.Accessor, hashID(id))
	if err != nil {
		return nil, err
	}
	if err := b.s.Apply(ctx, []logical.Op{op1, op2}); err != nil {
		return nil, fmt.Errorf("approle: store secret ID: %w", err)
	}
	return &logical.Response{Data: map[string]any{
		"secret_id":          id,
		"secret_id_accessor": e.Accessor,
		"secret_id_ttl":      int64(e.TTL / time.Second),
		"secret_id_num_uses": e.NumUses,
	}}, nil
}

func (b *Backend) listAccessors(ctx context.Context, name string) (*logical.Response, error) {
	keys, err := b.s.List(ctx, "accessor/"+name+"/")
	if err != nil {
		return nil, fmt.Errorf("approle: list secret IDs: %w", err)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	return &logical.Response{Data: map[string]any{"keys": keys}}, nil
}

// findSecretIDLocked returns the storage key and entry of the secret ID
// (or accessor) given in the request, or an empty key when there is none.
func (b *Backend) findSecretIDLocked(ctx context.Context, req *logical.Request, name string, byAccessor bool) (string, *secretID, error) {
	var in struct {
		SecretID string `json:"secret_id"`
		Accessor string `json:"secret_id_accessor"`
	}
	if err := req.Decode(&in); err != nil {
		return "", nil, err
	}
	var h string
	if byAccessor {
		if in.Accessor == "" || strings.Contains(in.Accessor, "/") {
			return "", nil, logical.Errorf(logical.Invalid, "missing secret_id_accessor")
		}
		ok, err := authbase.GetJSON(ctx, b.s, "accessor/"+name+"/"+in.Accessor, &h)
		if err != nil || !ok {
			return "", nil, err
		}
	} else {
		if in.SecretID == "" {
			return "", nil, logical.Errorf(logical.Invalid, "missing secret_id")
		}
		h = hashID(in.SecretID)
	}
	key := "secret-id/" + name + "/" + h
	var e secretID
	ok, err := authbase.GetJSON(ctx, b.s, key, &e)
	if err != nil || !ok {
		return "", nil, err
	}
	return key, &e, nil
}

func (b *Backend) lookupSecretID(ctx context.Context, req *logical.Request, name string, byAccessor bool) (*logical.Response, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	key, e, err := b.findSecretIDLocked(ctx, req, name, byAccessor)
	if err != nil || key == "" {
		return nil, err
	}
	exp := ""
	if !e.ExpirationTime.IsZero() {
		exp = e.ExpirationTime.Format(time.RFC3339Nano)
	}
	nz := func(l []string) []string {
		if l == nil {
			return []string{}
		}
		return l
	}
	return &logical.Response{Data: map[string]any{
		"secret_id_accessor": e.Accessor,
		"secret_id_num_uses": e.NumUses,
		"secret_id_ttl":      int64(e.TTL / time.Second),
		"creation_time":      e.CreationTime.Format(time.RFC3339Nano),
		"last_updated_time":  e.LastUpdatedTime.Format(time.RFC3339Nano),
		"expiration_time":    exp,
		"metadata":           e.Metadata,
		"cidr_list":          nz(e.CIDRList),
		"token_bound_cidrs":  nz(e.TokenBoundCIDRs),
	}}, nil
}

func (b *Backend) destroySecretID(ctx context.Context, req *logical.Request, name string, byAccessor bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	key, e, err := b.findSecretIDLocked(ctx, req, name, byAccessor)
	if err != nil || key == "" {
		return err
	}
	return b.deleteSecretIDLocked(ctx, name, key, e)
}

func (b *Backend) deleteSecretIDLocked(ctx context.Context, name, key string, e *secretID) error {
	ops := []logical.Op{{Key: key, Delete: true}, {Key: "accessor/" + name + "/" + e.Accessor, Delete: true}}
	if err := b.s.Apply(ctx, ops); err != nil {
		return fmt.Errorf("approle: delete secret ID: %w", err)
	}
	return nil
}

// errInvalid is every login failure about the credentials themselves:
// it does not say which of the two was wrong.
var errInvalid = logical.Errorf(logical.Invalid, "invalid role or secret ID")

func (b *Backend) login(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if !authbase.IsWrite(req.Operation) {
		return nil, logical.ErrUnsupportedOperation
	}
	var in struct {
		RoleID   string `json:"role_id"`
		SecretID string `json:"secret_id"`
	}
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	if in.RoleID == "" {
		return nil, logical.Errorf(logical.Invalid, "missing role_id")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var name string
	ok, err := authbase.GetJSON(ctx, b.s, "role-id/"+hashID(in.RoleID), &name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errInvalid
	}
	r, err := b.role(ctx, name)
	if err != nil {
		return nil, err
	}
	if r == nil || r.RoleID != in.RoleID {
		return nil, errInvalid
	}
	meta := map[string]string{}
	tp := r.Token
	if r.BindSecretID {
		if in.SecretID == "" {
			return nil, logical.Errorf(logical.Invalid, "missing secret_id")
		}
		key := "secret-id/" + name + "/" + hashID(in.SecretID)
		var e secretID
		ok, err := authbase.GetJSON(ctx, b.s, key, &e)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errInvalid
		}
		now := b.now()
		if !e.ExpirationTime.IsZero() && !now.Before(e.ExpirationTime) {
			if err := b.deleteSecretIDLocked(ctx, name, key, &e); err != nil {
				return nil, err
			}
			return nil, errInvalid
		}
		if !tokenparams.RemoteAllowed(e.CIDRList, req.RemoteAddr) || !tokenparams.RemoteAllowed(r.SecretIDBoundCIDRs, req.RemoteAddr) {
			return nil, &logical.Error{Code: logical.PermissionDenied, Message: "permission denied",
				Messages: []string{"permission denied", "source address is not allowed to use this secret ID (secret_id_bound_cidrs)"}}
		}
		switch {
		case e.NumUses == 1:
			if err := b.deleteSecretIDLocked(ctx, name, key, &e); err != nil {
				return nil, err
			}
		case e.NumUses > 1:
			e.NumUses--
			e.LastUpdatedTime = now.UTC()
			op, err := putOp(key, e)
			if err != nil {
				return nil, err
			}
			if err := b.s.Apply(ctx, []logical.Op{op}); err != nil {
				return nil, fmt.Errorf("approle: update secret ID: %w", err)
			}
		}
		for k, v := range e.Metadata {
			meta[k] = v
		}
		if len(e.TokenBoundCIDRs) > 0 {
			tp.BoundCIDRs = e.TokenBoundCIDRs
		}
	} else if !tokenparams.RemoteAllowed(r.SecretIDBoundCIDRs, req.RemoteAddr) {
		return nil, &logical.Error{Code: logical.PermissionDenied, Message: "permission denied",
			Messages: []string{"permission denied", "source address is not allowed (secret_id_bound_cidrs)"}}
	}
	auth, err := tp.Auth(req.RemoteAddr)
	if err != nil {
		return nil, err
	}
	meta["role_name"] = name
	auth.Metadata = meta
	auth.DisplayName = name
	auth.Alias = r.RoleID
	b.log.InfoContext(ctx, "approle login", "role", name, "remote", req.RemoteAddr)
	return &logical.Response{Auth: auth}, nil
}

// Tidy removes expired secret IDs and returns how many. It is safe for
// concurrent use with logins.
func (b *Backend) Tidy(ctx context.Context) (int, error) {
	names, err := b.s.List(ctx, "accessor/")
	if err != nil {
		return 0, fmt.Errorf("approle: tidy: %w", err)
	}
	sort.Strings(names)
	n := 0
	now := b.now()
	for _, dir := range names {
		name := strings.TrimSuffix(dir, "/")
		accs, err := b.s.List(ctx, "accessor/"+name+"/")
		if err != nil {
			return n, fmt.Errorf("approle: tidy: %w", err)
		}
		for _, a := range accs {
			if err := ctx.Err(); err != nil {
				return n, err
			}
			removed, err := b.tidyOne(ctx, name, a, now)
			if err != nil {
				return n, err
			}
			if removed {
				n++
			}
		}
	}
	return n, nil
}

func (b *Backend) tidyOne(ctx context.Context, name, acc string, now time.Time) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var h string
	ok, err := authbase.GetJSON(ctx, b.s, "accessor/"+name+"/"+acc, &h)
	if err != nil || !ok {
		return false, err
	}
	key := "secret-id/" + name + "/" + h
	var e secretID
	ok, err = authbase.GetJSON(ctx, b.s, key, &e)
	if err != nil {
		return false, err
	}
	if !ok { // a dangling accessor
		return true, b.s.Delete(ctx, "accessor/"+name+"/"+acc)
	}
	if e.ExpirationTime.IsZero() || now.Before(e.ExpirationTime) {
		return false, nil
	}
	return true, b.deleteSecretIDLocked(ctx, name, key, &e)
}

// Periodic implements logical.Periodic: it removes expired secret IDs.
func (b *Backend) Periodic(ctx context.Context) error {
	_, err := b.Tidy(ctx)
	return err
}
