package database

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/jackc/pgx/v5"
)

// role is a stored dynamic role (role/<name>).
type role struct {
	DBName     string        `json:"db_name"`
	Creation   []string      `json:"creation_statements"`
	Revocation []string      `json:"revocation_statements"`
	Renew      []string      `json:"renew_statements"`
	Rollback   []string      `json:"rollback_statements"`
	DefaultTTL time.Duration `json:"default_ttl"`
	MaxTTL     time.Duration `json:"max_ttl"`
}

type roleRequest struct {
	DBName         *string           `json:"db_name"`
	Creation       *statements       `json:"creation_statements"`
	Revocation     *statements       `json:"revocation_statements"`
	Renew          *statements       `json:"renew_statements"`
	Rollback       *statements       `json:"rollback_statements"`
	DefaultTTL     *logical.Duration `json:"default_ttl"`
	MaxTTL         *logical.Duration `json:"max_ttl"`
	CredentialType string            `json:"credential_type"`
}

// fallbackTTL is the lease of creds whose role has no default_ttl (Vault's
// system default); the core may cap it further with the mount's maximum.
const fallbackTTL = 768 * time.Hour

func (b *Backend) loadRole(ctx context.Context, name string) (*role, error) {
	var r role
	found, err := b.getJSON(ctx, rolePrefix+name, &r)
	if err != nil || !found {
		return nil, err
	}
	return &r, nil
}

func (b *Backend) readRole(ctx context.Context, name string) (*logical.Response, error) {
	r, err := b.loadRole(ctx, name)
	if err != nil || r == nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{
		"db_name":               r.DBName,
		"creation_statements":   orEmpty(r.Creation),
		"revocation_statements": orEmpty(r.Revocation),
		"renew_statements":      orEmpty(r.Renew),
		"rollback_statements":   orEmpty(r.Rollback),
		"default_ttl":           int64(r.DefaultTTL / time.Second),
		"max_ttl":               int64(r.MaxTTL / time.Second),
		"credential_type":       "password",
	}}, nil
}

func (b *Backend) writeRole(ctx context.Context, req *logical.Request, name string) error {
	var in roleRequest
	if err := req.Decode(&in); err != nil {
		return err
	}
	if in.CredentialType != "" && in.CredentialType != "password" {
		return logical.Errorf(logical.Invalid, "credential_type %q is not supported: only password", in.CredentialType)
	}
	var st staticRole
	if found, err := b.getJSON(ctx, staticPrefix+name, &st); err != nil {
		return err
	} else if found {
		return logical.Errorf(logical.Invalid, "role and static role names must be unique: static role %q exists", name)
	}
	r, err := b.loadRole(ctx, name)
	if err != nil {
		return err
	}
	if r == nil {
		r = &role{}
	}
	if in.DBName != nil {
		r.DBName = *in.DBName
	}
	if in.Creation != nil {
		r.Creation = *in.Creation
	}
	if in.Revocation != nil {
		r.Revocation = *in.Revocation
	}
	if in.Renew != nil {
		r.Renew = *in.Renew
	}
	if in.Rollback != nil {
		r.Rollback = *in.Rollback
	}
	if in.DefaultTTL != nil {
		r.DefaultTTL = time.Duration(*in.DefaultTTL)
	}
	if in.MaxTTL != nil {
		r.MaxTTL = time.Duration(*in.MaxTTL)
	}
	switch {
	case r.DBName == "":
		return logical.Errorf(logical.Invalid, "db_name is required")
	case len(r.Creation) == 0:
		return logical.Errorf(logical.Invalid, "creation_statements are required")
	case r.MaxTTL > 0 && r.DefaultTTL > r.MaxTTL:
		return logical.Errorf(logical.Invalid, "default_ttl cannot be greater than max_ttl")
	}
	return b.putJSON(ctx, rolePrefix+name, r)
}

// secretData is the lease's InternalData of dynamic credentials.
type secretData struct {
	Username string `json:"username"`
	DBName   string `json:"db_name"`
	Role     string `json:"role"`
}

// allowed returns an Invalid error unless connection c lets role use it.
func allowed(c *dbConfig, dbName, roleName string) error {
	if !globMatch(c.AllowedRoles, roleName) {
		return logical.Errorf(logical.Invalid, "role %q is not in the allowed_roles of database connection %q", roleName, dbName)
	}
	return nil
}

// creds creates a new database user for role name and returns it under a
// lease. The creation statements run in one transaction: on any error
// nothing is left in the database and the error carries PostgreSQL's
// message (without the password).
func (b *Backend) creds(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	r, err := b.loadRole(ctx, name)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, logical.Errorf(logical.Invalid, "unknown role: %s", name)
	}
	p, c, err := b.getPool(ctx, r.DBName)
	if err != nil {
		return nil, err
	}
	if err := allowed(c, r.DBName, name); err != nil {
		return nil, err
	}
	ttl := r.DefaultTTL
	if ttl == 0 {
		ttl = fallbackTTL
	}
	if r.MaxTTL > 0 && ttl > r.MaxTTL {
		ttl = r.MaxTTL
	}
	now := b.now()
	display := ""
	if req.Caller != nil {
		display = req.Caller.DisplayName
	}
	user, pw := newUsername(display, name, now), newPassword()
	sqlPw, err := c.passwordFor(pw)
	if err != nil {
		return nil, err
	}
	fields := templateFields(user, sqlPw, now.Add(ttl))
	err = p.tx(ctx, func(tx pgx.Tx) error {
		for _, s := range r.Creation {
			if _, err := tx.Exec(ctx, render(s, fields)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, dbError("error creating database user", err, pw, sqlPw)
	}
	internal, err := json.Marshal(secretData{Username: user, DBName: r.DBName, Role: name})
	if err != nil {
		return nil, fmt.Errorf("database: encode lease data: %w", err)
	}
	return &logical.Response{
		Data:   map[string]any{"username": user, "password": pw},
		Secret: &logical.SecretLease{TTL: ttl, MaxTTL: r.MaxTTL, Renewable: true, InternalData: internal},
	}, nil
}

const (
	defaultRenew = `ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}'`
	// defaultRevoke gives what the user owns to the engine's user, drops
	// its privileges in the connection's database and drops it.
	defaultRevoke = `REASSIGN OWNED BY "{{name}}" TO CURRENT_USER; DROP OWNED BY "{{name}}"; DROP ROLE IF EXISTS "{{name}}"`
)

func decodeSecret(s *logical.LeasedSecret) (secretData, error) {
	var d secretData
	if err := json.Unmarshal(s.InternalData, &d); err != nil || d.Username == "" || d.DBName == "" {
		return d, fmt.Errorf("database: lease %s has no database user in its internal data", s.LeaseID)
	}
	return d, nil
}

// RevokeSecret implements logical.SecretEngine: it stops the user logging
// in, terminates its sessions, then runs the role's revocation statements
// (default: reassign what it owns, drop its privileges and the role), all
// in one transaction. A user that no longer exists is already revoked, so
// a retried revoke succeeds.
func (b *Backend) RevokeSecret(ctx context.Context, s *logical.LeasedSecret) error {
	d, err := decodeSecret(s)
	if err != nil {
		return err
	}
	p, _, err := b.getPool(ctx, d.DBName)
	if err != nil {
		return err
	}
	stmts := []string{defaultRevoke}
	if r, err := b.loadRole(ctx, d.Role); err != nil {
		return err
	} else if r != nil && len(r.Revocation) > 0 {
		stmts = r.Revocation
	}
	err = p.tx(ctx, func(tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE rolname = $1`, d.Username).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `ALTER ROLE `+pgx.Identifier{d.Username}.Sanitize()+` NOLOGIN`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()`, d.Username); err != nil {
			return err
		}
		for _, st := range stmts {
			if _, err := tx.Exec(ctx, render(st, templateFields(d.Username, "", time.Time{}))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return dbError(fmt.Sprintf("error revoking database user %q", d.Username), err)
	}
	b.log.InfoContext(ctx, "database user revoked", "lease_id", s.LeaseID, "username", d.Username)
	return nil
}

// RenewSecret implements logical.SecretEngine: it grants increment (0: the
// role's default_ttl, else the TTL last granted), capped so the lease ends
// no later than max_ttl after IssueTime (the role's, else the lease's),
// and moves the user's VALID UNTIL (or runs the role's renew statements).
// A lease already at its max_ttl is an Invalid error.
func (b *Backend) RenewSecret(ctx context.Context, s *logical.LeasedSecret, increment time.Duration) (time.Duration, error) {
	d, err := decodeSecret(s)
	if err != nil {
		return 0, err
	}
	r, err := b.loadRole(ctx, d.Role)
	if err != nil {
		return 0, err
	}
	ttl, maxTTL := increment, s.MaxTTL
	if r != nil {
		if ttl == 0 {
			ttl = r.DefaultTTL
		}
		if r.MaxTTL > 0 {
			maxTTL = r.MaxTTL
		}
	}
	if ttl == 0 {
		ttl = s.TTL
	}
	if ttl == 0 {
		ttl = fallbackTTL
	}
	now := b.now()
	if maxTTL > 0 {
		left := s.IssueTime.Add(maxTTL).Sub(now)
		if left <= 0 {
			return 0, logical.Errorf(logical.Invalid, "lease %s has reached its max_ttl and cannot be renewed", s.LeaseID)
		}
		ttl = min(ttl, left)
	}
	p, _, err := b.getPool(ctx, d.DBName)
	if err != nil {
		return 0, err
	}
	stmts := []string{defaultRenew}
	if r != nil && len(r.Renew) > 0 {
		stmts = r.Renew
	}
	fields := templateFields(d.Username, "", now.Add(ttl))
	err = p.tx(ctx, func(tx pgx.Tx) error {
		for _, st := range stmts {
			if _, err := tx.Exec(ctx, render(st, fields)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, dbError(fmt.Sprintf("error renewing database user %q", d.Username), err)
	}
	return ttl, nil
}
