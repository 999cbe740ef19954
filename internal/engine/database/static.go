package database

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/jackc/pgx/v5"
)

// StrategyAlternating is Coffer's rotation strategy for two users taking
// turns (see docs/database.md).
const StrategyAlternating = "alternating"

// minRotationPeriod is Vault's lower bound for rotation_period.
const minRotationPeriod = 5 * time.Second

// staticRole is a stored static role with its current credentials
// (static-role/<name>).
type staticRole struct {
	DBName             string        `json:"db_name"`
	Username           string        `json:"username"`
	AlternateUsername  string        `json:"alternate_username,omitempty"`
	RotationStrategy   string        `json:"rotation_strategy,omitempty"`
	RotationPeriod     time.Duration `json:"rotation_period"`
	RotationStatements []string      `json:"rotation_statements"`

	// Current is the user handed out by static-creds: Username, or with
	// the alternating strategy whichever of the two was rotated last.
	Current string `json:"current"`
	// Passwords holds each user's password, by user name.
	Passwords    map[string]string `json:"passwords"`
	LastRotation time.Time         `json:"last_rotation"`
}

type staticRoleRequest struct {
	DBName             *string           `json:"db_name"`
	Username           *string           `json:"username"`
	AlternateUsername  *string           `json:"alternate_username"`
	RotationStrategy   *string           `json:"rotation_strategy"`
	RotationPeriod     *logical.Duration `json:"rotation_period"`
	RotationStatements *statements       `json:"rotation_statements"`
	RotationSchedule   string            `json:"rotation_schedule"`
	CredentialType     string            `json:"credential_type"`
}

// next returns the user the next rotation changes.
func (r *staticRole) next() string {
	if r.RotationStrategy != StrategyAlternating || r.Current != r.Username {
		return r.Username
	}
	return r.AlternateUsername
}

func (b *Backend) loadStatic(ctx context.Context, name string) (*staticRole, error) {
	var r staticRole
	found, err := b.getJSON(ctx, staticPrefix+name, &r)
	if err != nil || !found {
		return nil, err
	}
	return &r, nil
}

func (b *Backend) readStaticRole(ctx context.Context, name string) (*logical.Response, error) {
	r, err := b.loadStatic(ctx, name)
	if err != nil || r == nil {
		return nil, err
	}
	data := map[string]any{
		"db_name":             r.DBName,
		"username":            r.Username,
		"rotation_period":     int64(r.RotationPeriod / time.Second),
		"rotation_statements": orEmpty(r.RotationStatements),
		"last_vault_rotation": r.LastRotation.Format(time.RFC3339Nano),
		"credential_type":     "password",
		"rotation_strategy":   r.RotationStrategy,
	}
	if r.AlternateUsername != "" {
		data["alternate_username"] = r.AlternateUsername
	}
	return &logical.Response{Data: data}, nil
}

// writeStaticRole creates or updates a static role. Creating one rotates
// its user's password at once (and, with the alternating strategy, the
// alternate user's, which is not handed out until the next rotation), so
// nobody knows the passwords the users had before.
func (b *Backend) writeStaticRole(ctx context.Context, req *logical.Request, name string) error {
	var in staticRoleRequest
	if err := req.Decode(&in); err != nil {
		return err
	}
	if in.RotationSchedule != "" {
		return logical.Errorf(logical.Invalid, "rotation_schedule is not supported: use rotation_period")
	}
	if in.CredentialType != "" && in.CredentialType != "password" {
		return logical.Errorf(logical.Invalid, "credential_type %q is not supported: only password", in.CredentialType)
	}
	if r, err := b.loadRole(ctx, name); err != nil {
		return err
	} else if r != nil {
		return logical.Errorf(logical.Invalid, "role and static role names must be unique: role %q exists", name)
	}
	b.staticMu.Lock()
	defer b.staticMu.Unlock()
	old, err := b.loadStatic(ctx, name)
	if err != nil {
		return err
	}
	r := &staticRole{}
	if old != nil {
		*r = *old
		if in.Username != nil && *in.Username != old.Username {
			return logical.Errorf(logical.Invalid, "cannot update static role username")
		}
	}
	if in.DBName != nil {
		r.DBName = *in.DBName
	}
	if in.Username != nil {
		r.Username = *in.Username
	}
	if in.AlternateUsername != nil {
		r.AlternateUsername = *in.AlternateUsername
	}
	if in.RotationStrategy != nil {
		r.RotationStrategy = *in.RotationStrategy
	}
	if in.RotationPeriod != nil {
		r.RotationPeriod = time.Duration(*in.RotationPeriod)
	}
	if in.RotationStatements != nil {
		r.RotationStatements = *in.RotationStatements
	}
	switch {
	case r.DBName == "":
		return logical.Errorf(logical.Invalid, "db_name is required")
	case r.Username == "":
		return logical.Errorf(logical.Invalid, "username is required")
	case r.RotationPeriod < minRotationPeriod:
		return logical.Errorf(logical.Invalid, "rotation_period must be at least 5s")
	case r.RotationStrategy != "" && r.RotationStrategy != StrategyAlternating:
		return logical.Errorf(logical.Invalid, "rotation_strategy must be empty or %q, not %q", StrategyAlternating, r.RotationStrategy)
	case r.RotationStrategy == StrategyAlternating && (r.AlternateUsername == "" || r.AlternateUsername == r.Username):
		return logical.Errorf(logical.Invalid, "rotation_strategy %q needs an alternate_username different from username", StrategyAlternating)
	case r.RotationStrategy == "" && r.AlternateUsername != "":
		return logical.Errorf(logical.Invalid, "alternate_username needs rotation_strategy %q", StrategyAlternating)
	case old != nil && old.AlternateUsername != "" && r.AlternateUsername != old.AlternateUsername:
		return logical.Errorf(logical.Invalid, "cannot update static role alternate_username")
	}
	if old != nil && (old.RotationStrategy == "") != (r.RotationStrategy == "") {
		return logical.Errorf(logical.Invalid, "cannot change a static role's rotation_strategy; delete and recreate it")
	}
	_, c, err := b.getPool(ctx, r.DBName)
	if err != nil {
		return err
	}
	if err := allowed(c, r.DBName, name); err != nil {
		return err
	}
	if old != nil {
		return b.putJSON(ctx, staticPrefix+name, r)
	}
	users := []string{r.Username}
	if r.RotationStrategy == StrategyAlternating {
		users = append(users, r.AlternateUsername)
	}
	r.Passwords = map[string]string{}
	if err := b.setPasswordsLocked(ctx, r, users); err != nil {
		return err
	}
	r.Current, r.LastRotation = r.Username, b.now()
	return b.putJSON(ctx, staticPrefix+name, r)
}

// setPasswordsLocked gives each of users a new random password in one
// transaction and records them in r.Passwords. The caller holds staticMu.
func (b *Backend) setPasswordsLocked(ctx context.Context, r *staticRole, users []string) error {
	p, c, err := b.getPool(ctx, r.DBName)
	if err != nil {
		return err
	}
	stmts := r.RotationStatements
	if len(stmts) == 0 {
		stmts = []string{defaultRootRotation}
	}
	pws := make(map[string]string, len(users))
	var secrets []string
	err = p.tx(ctx, func(tx pgx.Tx) error {
		for _, u := range users {
			pw := newPassword()
			sqlPw, err := c.passwordFor(pw)
			if err != nil {
				return err
			}
			pws[u] = pw
			secrets = append(secrets, pw, sqlPw)
			for _, s := range stmts {
				if _, err := tx.Exec(ctx, render(s, templateFields(u, sqlPw, time.Time{}))); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return dbError(fmt.Sprintf("error setting the password of %s", strings.Join(users, ", ")), err, secrets...)
	}
	for u, pw := range pws {
		r.Passwords[u] = pw
	}
	return nil
}

func (b *Backend) deleteStaticRole(ctx context.Context, name string) error {
	b.staticMu.Lock()
	defer b.staticMu.Unlock()
	return b.deleteEntry(ctx, staticPrefix+name)
}

func (b *Backend) staticCreds(ctx context.Context, name string) (*logical.Response, error) {
	r, err := b.loadStatic(ctx, name)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, logical.Errorf(logical.Invalid, "unknown static role: %s", name)
	}
	ttl := r.LastRotation.Add(r.RotationPeriod).Sub(b.now())
	return &logical.Response{Data: map[string]any{
		"username":            r.Current,
		"password":            r.Passwords[r.Current],
		"last_vault_rotation": r.LastRotation.Format(time.RFC3339Nano),
		"rotation_period":     int64(r.RotationPeriod / time.Second),
		"ttl":                 max(int64(ttl/time.Second), 0),
	}}, nil
}

// rotateStatic rotates the static role name now: the user next() names
// gets a new password and becomes the one handed out. With the
// alternating strategy that is the user not handed out so far, so the
// credentials handed out before keep working until the rotation after.
func (b *Backend) rotateStatic(ctx context.Context, name string, now time.Time) error {
	b.staticMu.Lock()
	defer b.staticMu.Unlock()
	r, err := b.loadStatic(ctx, name)
	if err != nil {
		return err
	}
	if r == nil {
		return logical.Errorf(logical.Invalid, "unknown static role: %s", name)
	}
	return b.rotateLocked(ctx, name, r, now)
}

func (b *Backend) rotateLocked(ctx context.Context, name string, r *staticRole, now time.Time) error {
	target := r.next()
	if r.Passwords == nil {
		r.Passwords = map[string]string{}
	}
	if err := b.setPasswordsLocked(ctx, r, []string{target}); err != nil {
		return err
	}
	r.Current, r.LastRotation = target, now
	if err := b.putJSON(ctx, staticPrefix+name, r); err != nil {
		// The user's password changed but is not stored: the role still
		// looks due, so the next Periodic rotates it again.
		return err
	}
	b.log.InfoContext(ctx, "database static role rotated", "role", name, "username", target)
	return nil
}

// RotateDue rotates every static role whose rotation_period has passed at
// now. It goes on after a failure and returns all failures joined; a role
// that failed stays due and is retried on the next call.
func (b *Backend) RotateDue(ctx context.Context, now time.Time) error {
	names, err := b.storage.List(ctx, staticPrefix)
	if err != nil {
		return fmt.Errorf("database: list static roles: %w", err)
	}
	var errs []error
	for _, name := range names {
		if strings.HasSuffix(name, "/") {
			continue
		}
		if err := b.rotateIfDue(ctx, name, now); err != nil {
			b.log.WarnContext(ctx, "database static role rotation failed", "role", name, "error", err)
			errs = append(errs, fmt.Errorf("static role %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func (b *Backend) rotateIfDue(ctx context.Context, name string, now time.Time) error {
	b.staticMu.Lock()
	defer b.staticMu.Unlock()
	r, err := b.loadStatic(ctx, name)
	if err != nil || r == nil {
		return err
	}
	if now.Before(r.LastRotation.Add(r.RotationPeriod)) {
		return nil
	}
	return b.rotateLocked(ctx, name, r, now)
}

// Periodic implements logical.Periodic: RotateDue at the Backend's clock.
func (b *Backend) Periodic(ctx context.Context) error {
	return b.RotateDue(ctx, b.now())
}
