// Package userpass is Vault's userpass auth method: users with a password,
// stored as a bcrypt hash, who log in at login/<username>.
//
// Paths, relative to the mount (auth/userpass/ by default):
//
//	users                      LIST the user names
//	users/<name>               create/update (password, token_*), read, delete
//	users/<name>/password      change the password
//	users/<name>/policies      change token_policies
//	login/<name>               unauthenticated: password
//
// User names are case-insensitive (stored lower-cased), as in Vault. A
// failed login says only "invalid username or password" (400, as Vault)
// and takes as long for an unknown user as for a wrong password.
//
// Logins are rate limited per user and per client address (see Lockout):
// a locked user or address gets a RateLimited error (429) with the time
// left (Retry-After), before any password is checked. The mount options
// lockout_threshold, lockout_duration, lockout_counter_reset and
// lockout_disable (the names of Vault's user_lockout_config) set it.
package userpass

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/coffer-dev/coffer/internal/auth/authbase"
	"github.com/coffer-dev/coffer/internal/auth/tokenparams"
	"github.com/coffer-dev/coffer/internal/logical"
)

// Backend is the userpass auth method. It is safe for concurrent use.
type Backend struct {
	s     logical.Storage
	now   func() time.Time
	log   *slog.Logger
	cost  int
	limit *limiter
	dummy []byte // a hash compared against for unknown users

	mu sync.Mutex // serializes read-modify-write of users
}

// Config configures New.
type Config struct {
	Storage logical.Storage  // required
	Now     func() time.Time // nil: time.Now
	Logger  *slog.Logger     // nil: discard
	// BcryptCost is the cost of new password hashes; zero:
	// bcrypt.DefaultCost. Existing hashes keep their cost.
	BcryptCost int
	// Lockout is the login rate limit; its zero value takes the defaults.
	Lockout Lockout
}

// New returns the userpass backend over cfg.Storage.
func New(cfg Config) (*Backend, error) {
	if cfg.Storage == nil {
		return nil, errors.New("userpass: storage is required")
	}
	b := &Backend{s: cfg.Storage, now: cfg.Now, log: cfg.Logger, cost: cfg.BcryptCost, limit: newLimiter(cfg.Lockout)}
	if b.now == nil {
		b.now = time.Now
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.cost == 0 {
		b.cost = bcrypt.DefaultCost
	}
	if b.cost < bcrypt.MinCost || b.cost > bcrypt.MaxCost {
		return nil, fmt.Errorf("userpass: bcrypt cost %d out of range", b.cost)
	}
	var err error
	if b.dummy, err = bcrypt.GenerateFromPassword([]byte("no such user"), b.cost); err != nil {
		return nil, fmt.Errorf("userpass: %w", err)
	}
	return b, nil
}

// Factory builds the userpass backend for a "userpass" mount, reading the
// lockout options from cfg.Options.
func Factory(ctx context.Context, cfg logical.BackendConfig) (logical.Backend, error) {
	l, err := LockoutFromOptions(cfg.Options)
	if err != nil {
		return nil, err
	}
	return New(Config{Storage: cfg.Storage, Now: cfg.Now, Logger: cfg.Logger, Lockout: l})
}

// LockoutFromOptions reads lockout_threshold, lockout_duration,
// lockout_counter_reset and lockout_disable from mount options. Missing
// options take the defaults; a malformed one is an Invalid error.
func LockoutFromOptions(opts map[string]string) (Lockout, error) {
	var l Lockout
	if v, ok := opts["lockout_threshold"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return l, logical.Errorf(logical.Invalid, "lockout_threshold must be a non-negative integer")
		}
		l.Threshold = n
	}
	for name, dst := range map[string]*time.Duration{"lockout_duration": &l.Duration, "lockout_counter_reset": &l.CounterReset} {
		if v, ok := opts[name]; ok {
			d, err := logical.ParseDuration(v)
			if err != nil {
				return l, logical.Errorf(logical.Invalid, "%s must be a duration", name)
			}
			*dst = d
		}
	}
	if v, ok := opts["lockout_disable"]; ok {
		d, err := strconv.ParseBool(v)
		if err != nil {
			return l, logical.Errorf(logical.Invalid, "lockout_disable must be a boolean")
		}
		l.Disable = d
	}
	return l, nil
}

// UnauthenticatedPaths implements logical.Unauthenticated.
func (b *Backend) UnauthenticatedPaths() []string { return []string{"login/*"} }

// RoleInfo describes a user for sys/access.
// RoleInfo is logical.RoleInfo, so Roles implements logical.RoleLister.
type RoleInfo = logical.RoleInfo

// Roles returns every user with its token policies, sorted by name.
func (b *Backend) Roles(ctx context.Context) ([]RoleInfo, error) {
	return authbase.Roles(ctx, b.s, "user/", func(u *user) []string { return u.Token.Policies })
}

// user is a stored user.
type user struct {
	Hash  []byte             `json:"password_hash"`
	Token tokenparams.Params `json:"token"`
}

var nameRE = regexp.MustCompile(`^[\w.@+-]+$`)

func validName(n string) bool { return len(n) < 4096 && nameRE.MatchString(n) }

func (b *Backend) user(ctx context.Context, name string) (*user, error) {
	return authbase.Get[user](ctx, b.s, "user/"+name)
}

// HandleRequest implements logical.Backend.
func (b *Backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	p := strings.Trim(req.Path, "/")
	if p == "users" {
		if req.Operation != logical.ListOperation {
			return nil, logical.ErrUnsupportedOperation
		}
		return authbase.List(ctx, b.s, "user/")
	}
	if name, ok := strings.CutPrefix(p, "login/"); ok {
		if !authbase.IsWrite(req.Operation) {
			return nil, logical.ErrUnsupportedOperation
		}
		return b.login(ctx, req, strings.ToLower(name))
	}
	rest, ok := strings.CutPrefix(p, "users/")
	if !ok {
		return nil, logical.ErrUnsupportedPath(req.Path)
	}
	name, sub, _ := strings.Cut(rest, "/")
	name = strings.ToLower(name)
	if !validName(name) {
		return nil, logical.Errorf(logical.Invalid, "invalid username")
	}
	switch {
	case sub == "" && authbase.IsWrite(req.Operation):
		return nil, b.writeUser(ctx, req, name, false)
	case sub == "" && req.Operation == logical.ReadOperation:
		u, err := b.user(ctx, name)
		if err != nil || u == nil {
			return nil, err
		}
		d := map[string]any{}
		u.Token.Fill(d)
		return &logical.Response{Data: d}, nil
	case sub == "" && req.Operation == logical.DeleteOperation:
		b.mu.Lock()
		defer b.mu.Unlock()
		if err := b.s.Delete(ctx, "user/"+name); err != nil {
			return nil, fmt.Errorf("userpass: delete user: %w", err)
		}
		return nil, nil
	case (sub == "password" || sub == "policies") && authbase.IsWrite(req.Operation):
		return nil, b.writeUser(ctx, req, name, true)
	case sub == "" || sub == "password" || sub == "policies":
		return nil, logical.ErrUnsupportedOperation
	}
	return nil, logical.ErrUnsupportedPath(req.Path)
}

// Exists implements logical.ExistenceChecker for users/<name>.
func (b *Backend) Exists(ctx context.Context, req *logical.Request) (ok, exists bool, err error) {
	name, found := strings.CutPrefix(strings.Trim(req.Path, "/"), "users/")
	if !found || strings.Contains(name, "/") {
		return false, false, nil
	}
	name = strings.ToLower(name)
	if !validName(name) {
		return false, false, nil
	}
	u, err := b.user(ctx, name)
	return true, u != nil, err
}

type userRequest struct {
	Password *string `json:"password"`
	tokenparams.Request
}

// writeUser creates or updates a user; mustExist is set for the
// password and policies sub-paths.
func (b *Backend) writeUser(ctx context.Context, req *logical.Request, name string, mustExist bool) error {
	var in userRequest
	if err := req.Decode(&in); err != nil {
		return err
	}
	// Hash before taking the lock: bcrypt is slow on purpose.
	var hash []byte
	if in.Password != nil {
		if *in.Password == "" {
			return logical.Errorf(logical.Invalid, "password cannot be empty")
		}
		var err error
		hash, err = bcrypt.GenerateFromPassword([]byte(*in.Password), b.cost)
		if errors.Is(err, bcrypt.ErrPasswordTooLong) {
			return logical.Errorf(logical.Invalid, "password is longer than 72 bytes")
		}
		if err != nil {
			return fmt.Errorf("userpass: hash password: %w", err)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	u, err := b.user(ctx, name)
	if err != nil {
		return err
	}
	if u == nil {
		if mustExist {
			return logical.Errorf(logical.Invalid, "username does not exist")
		}
		if hash == nil {
			return logical.Errorf(logical.Invalid, "missing password")
		}
		u = &user{}
	}
	if hash != nil {
		u.Hash = hash
	}
	if err := in.Apply(&u.Token); err != nil {
		return err
	}
	return authbase.PutJSON(ctx, b.s, "user/"+name, u)
}

// errInvalid is every login failure about the credentials themselves.
var errInvalid = logical.Errorf(logical.Invalid, "invalid username or password")

func rateLimited(d time.Duration) error {
	return &logical.Error{Code: logical.RateLimited, RetryAfter: d,
		Message: fmt.Sprintf("too many failed login attempts; try again in %s", d.Round(time.Second))}
}

func (b *Backend) login(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	var in struct {
		Password string `json:"password"`
	}
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	if in.Password == "" {
		return nil, logical.Errorf(logical.Invalid, "missing password")
	}
	now := b.now()
	ukey := "u:" + name
	akey := "a:" + addrKey(req.RemoteAddr)
	if d := max(b.limit.blocked(ukey, b.limit.cfg.Threshold, now), b.limit.blocked(akey, 4*b.limit.cfg.Threshold, now)); d > 0 {
		return nil, rateLimited(d)
	}
	var u *user
	var err error
	if validName(name) {
		if u, err = b.user(ctx, name); err != nil {
			return nil, err
		}
	}
	hash := b.dummy
	if u != nil {
		hash = u.Hash
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(in.Password)) != nil || u == nil {
		b.limit.fail(ukey, now)
		b.limit.fail(akey, now)
		b.log.InfoContext(ctx, "userpass login failed", "remote", req.RemoteAddr)
		return nil, errInvalid
	}
	b.limit.clear(ukey)
	auth, err := u.Token.Auth(req.RemoteAddr)
	if err != nil {
		return nil, err
	}
	auth.Metadata = map[string]string{"username": name}
	auth.DisplayName = name
	auth.Alias = name
	return &logical.Response{Auth: auth}, nil
}

// addrKey is the rate-limit key of a client address: its IP, or the
// string itself when it has none.
func addrKey(remote string) string {
	if a, err := tokenparams.RemoteAddr(remote); err == nil {
		return a.String()
	}
	return remote
}

// Periodic implements logical.Periodic: it forgets stale failure counts.
func (b *Backend) Periodic(ctx context.Context) error {
	b.limit.prune(b.now())
	return nil
}
