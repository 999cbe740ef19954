package database

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/jackc/pgx/v5"
)

// dbConfig is a stored connection (config/<name>).
type dbConfig struct {
	PluginName             string        `json:"plugin_name"`
	ConnectionURL          string        `json:"connection_url"`
	Username               string        `json:"username"`
	Password               string        `json:"password"`
	AllowedRoles           []string      `json:"allowed_roles"`
	PasswordAuthentication string        `json:"password_authentication"`
	VerifyConnection       bool          `json:"verify_connection"`
	MaxOpenConnections     int           `json:"max_open_connections"`
	MaxIdleConnections     int           `json:"max_idle_connections"`
	MaxConnectionLifetime  time.Duration `json:"max_connection_lifetime"`
	RootRotationStatements []string      `json:"root_rotation_statements"`
	// PendingPassword is the new root password while rotate-root runs: if
	// the process dies between ALTER ROLE and storing the config, the next
	// connection tries it and keeps whichever works.
	PendingPassword string `json:"pending_password,omitempty"`
}

// configRequest is the body of a config write; nil fields keep their
// stored values on update.
type configRequest struct {
	PluginName             *string             `json:"plugin_name"`
	ConnectionURL          *string             `json:"connection_url"`
	Username               *string             `json:"username"`
	Password               *string             `json:"password"`
	AllowedRoles           *logical.StringList `json:"allowed_roles"`
	PasswordAuthentication *string             `json:"password_authentication"`
	VerifyConnection       *logical.Bool       `json:"verify_connection"`
	MaxOpenConnections     *logical.Int        `json:"max_open_connections"`
	MaxIdleConnections     *logical.Int        `json:"max_idle_connections"`
	MaxConnectionLifetime  *logical.Duration   `json:"max_connection_lifetime"`
	RootRotationStatements *statements         `json:"root_rotation_statements"`
	PasswordPolicy         string              `json:"password_policy"`
	UsernameTemplate       string              `json:"username_template"`
}

// scram reports whether passwords are sent as SCRAM verifiers.
func (c *dbConfig) scram() bool { return c.PasswordAuthentication == "scram-sha-256" }

// passwordFor returns what {{password}} stands for: pw itself, or its SCRAM
// verifier.
func (c *dbConfig) passwordFor(pw string) (string, error) {
	if c.scram() {
		return scramVerifier(pw)
	}
	return pw, nil
}

func (b *Backend) loadConfig(ctx context.Context, name string) (*dbConfig, error) {
	var c dbConfig
	found, err := b.getJSON(ctx, configPrefix+name, &c)
	if err != nil || !found {
		return nil, err
	}
	return &c, nil
}

// connConfig returns pgx's configuration for c logging in with password.
// {{username}} and {{password}} in the URL stand for c.Username and
// password; the values are set on the parsed configuration, never pasted
// into the URL, so no character in them needs escaping.
func (b *Backend) connConfig(c *dbConfig, password string) (*pgx.ConnConfig, error) {
	raw := c.ConnectionURL
	hasUser := strings.Contains(raw, "{{username}}")
	hasPass := strings.Contains(raw, "{{password}}")
	raw = strings.ReplaceAll(raw, "{{username}}", "coffer-username")
	raw = strings.ReplaceAll(raw, "{{password}}", "coffer-password")
	pc, err := pgx.ParseConfig(raw)
	if err != nil {
		return nil, dbError("invalid connection_url", err, password, c.Password, urlPassword(c.ConnectionURL))
	}
	if hasUser {
		pc.User = c.Username
	}
	if hasPass {
		pc.Password = password
	}
	if pc.ConnectTimeout == 0 || pc.ConnectTimeout > b.connectTimeout {
		pc.ConnectTimeout = b.connectTimeout
	}
	if pc.RuntimeParams == nil {
		pc.RuntimeParams = map[string]string{}
	}
	if pc.RuntimeParams["application_name"] == "" {
		pc.RuntimeParams["application_name"] = "coffer"
	}
	return pc, nil
}

// urlPassword returns a password written inline in a connection URL.
func urlPassword(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return ""
	}
	pw, _ := u.User.Password()
	if pw == "{{password}}" {
		return ""
	}
	return pw
}

// redactedURL returns the connection URL as shown on read: an inline
// password (other than the {{password}} template) becomes "*****", in URL
// and in key=value form.
func redactedURL(raw string) string {
	if i := strings.Index(raw, "://"); i >= 0 {
		rest := raw[i+3:]
		end := strings.IndexAny(rest, "/?")
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
			if colon := strings.Index(rest[:at], ":"); colon >= 0 && rest[colon+1:at] != "{{password}}" {
				return raw[:i+3] + rest[:colon+1] + "*****" + rest[at:]
			}
		}
		return raw
	}
	return dsnPassword.ReplaceAllStringFunc(raw, func(m string) string {
		if strings.HasSuffix(m, "{{password}}") {
			return m
		}
		return "password=*****"
	})
}

var dsnPassword = regexp.MustCompile(`password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

func (b *Backend) newPool(c *dbConfig, password string) (*pool, error) {
	pc, err := b.connConfig(c, password)
	if err != nil {
		return nil, err
	}
	return newPool(pc, c.MaxOpenConnections, c.MaxIdleConnections, c.MaxConnectionLifetime), nil
}

// getPool returns the open pool of connection name and its config,
// opening the pool on first use. It returns an Invalid error when there is
// no such connection.
func (b *Backend) getPool(ctx context.Context, name string) (*pool, *dbConfig, error) {
	c, err := b.loadConfig(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	if c == nil {
		return nil, nil, logical.Errorf(logical.Invalid, "database connection %q does not exist", name)
	}
	b.mu.Lock()
	p := b.pools[name]
	b.mu.Unlock()
	if p != nil {
		return p, c, nil
	}
	if c.PendingPassword != "" {
		if err := b.settlePending(ctx, name, c); err != nil {
			return nil, nil, err
		}
	}
	p, err = b.newPool(c, c.Password)
	if err != nil {
		return nil, nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if cur := b.pools[name]; cur != nil {
		p.close()
		return cur, c, nil
	}
	b.pools[name] = p
	return p, c, nil
}

// settlePending resolves a root rotation that was interrupted: whichever of
// the old and pending passwords logs in becomes the stored one.
func (b *Backend) settlePending(ctx context.Context, name string, c *dbConfig) error {
	b.cfgMu.Lock()
	defer b.cfgMu.Unlock()
	for _, pw := range []string{c.PendingPassword, c.Password} {
		p, err := b.newPool(c, pw)
		if err != nil {
			return err
		}
		err = p.ping(ctx)
		p.close()
		if err == nil {
			c.Password, c.PendingPassword = pw, ""
			return b.putJSON(ctx, configPrefix+name, c)
		}
	}
	return logical.Errorf(logical.Invalid, "database connection %q: neither the stored nor the pending root password logs in", name)
}

// dropPool closes and forgets the pool of connection name.
func (b *Backend) dropPool(name string) {
	b.mu.Lock()
	p := b.pools[name]
	delete(b.pools, name)
	b.mu.Unlock()
	if p != nil {
		p.close()
	}
}

// setPool installs p as the pool of name, closing the previous one.
func (b *Backend) setPool(name string, p *pool) {
	b.mu.Lock()
	old := b.pools[name]
	b.pools[name] = p
	b.mu.Unlock()
	if old != nil {
		old.close()
	}
}

func (b *Backend) readConfig(ctx context.Context, name string) (*logical.Response, error) {
	c, err := b.loadConfig(ctx, name)
	if err != nil || c == nil {
		return nil, err
	}
	details := map[string]any{
		"connection_url":          redactedURL(c.ConnectionURL),
		"username":                c.Username,
		"password_authentication": c.PasswordAuthentication,
		"max_open_connections":    c.MaxOpenConnections,
		"max_idle_connections":    c.MaxIdleConnections,
		"max_connection_lifetime": c.MaxConnectionLifetime.String(),
	}
	return &logical.Response{Data: map[string]any{
		"plugin_name":                        c.PluginName,
		"plugin_version":                     "",
		"connection_details":                 details,
		"allowed_roles":                      orEmpty(c.AllowedRoles),
		"root_credentials_rotate_statements": orEmpty(c.RootRotationStatements),
		"password_policy":                    "",
		"verify_connection":                  c.VerifyConnection,
	}}, nil
}

func (b *Backend) writeConfig(ctx context.Context, req *logical.Request, name string) error {
	var in configRequest
	if err := req.Decode(&in); err != nil {
		return err
	}
	if in.PasswordPolicy != "" {
		return logical.Errorf(logical.Invalid, "password_policy is not supported: Coffer generates 24-character alphanumeric passwords")
	}
	if in.UsernameTemplate != "" {
		return logical.Errorf(logical.Invalid, "username_template is not supported: usernames are v-<display>-<role>-<random>-<unix>")
	}
	b.cfgMu.Lock()
	defer b.cfgMu.Unlock()
	old, err := b.loadConfig(ctx, name)
	if err != nil {
		return err
	}
	c := dbConfig{VerifyConnection: true, PasswordAuthentication: "password", MaxOpenConnections: 4}
	if old != nil {
		c = *old
		c.PendingPassword = ""
	}
	if in.PluginName != nil {
		c.PluginName = *in.PluginName
	}
	if c.PluginName == "" {
		return logical.Errorf(logical.Invalid, "plugin_name must be provided")
	}
	if c.PluginName != PluginName {
		return logical.Errorf(logical.Invalid, "plugin_name %q is not supported: Coffer serves only %q", c.PluginName, PluginName)
	}
	if in.ConnectionURL != nil {
		c.ConnectionURL = *in.ConnectionURL
	}
	if c.ConnectionURL == "" {
		return logical.Errorf(logical.Invalid, "connection_url must be provided")
	}
	if in.Username != nil {
		c.Username = *in.Username
	}
	if in.Password != nil {
		c.Password = *in.Password
	}
	if strings.Contains(c.ConnectionURL, "{{username}}") && c.Username == "" {
		return logical.Errorf(logical.Invalid, "connection_url uses {{username}} but username is empty")
	}
	if strings.Contains(c.ConnectionURL, "{{password}}") && c.Password == "" {
		return logical.Errorf(logical.Invalid, "connection_url uses {{password}} but password is empty")
	}
	if in.AllowedRoles != nil {
		c.AllowedRoles = *in.AllowedRoles
	}
	if in.PasswordAuthentication != nil {
		c.PasswordAuthentication = *in.PasswordAuthentication
		if c.PasswordAuthentication == "" {
			c.PasswordAuthentication = "password"
		}
	}
	if !slices.Contains([]string{"password", "scram-sha-256"}, c.PasswordAuthentication) {
		return logical.Errorf(logical.Invalid, "password_authentication must be password or scram-sha-256, not %q", c.PasswordAuthentication)
	}
	if in.VerifyConnection != nil {
		c.VerifyConnection = bool(*in.VerifyConnection)
	}
	if in.MaxOpenConnections != nil {
		c.MaxOpenConnections = int(*in.MaxOpenConnections)
	}
	if in.MaxIdleConnections != nil {
		c.MaxIdleConnections = int(*in.MaxIdleConnections)
	}
	if c.MaxOpenConnections < 0 || c.MaxIdleConnections < 0 {
		return logical.Errorf(logical.Invalid, "max_open_connections and max_idle_connections must not be negative")
	}
	if in.MaxConnectionLifetime != nil {
		c.MaxConnectionLifetime = time.Duration(*in.MaxConnectionLifetime)
	}
	if in.RootRotationStatements != nil {
		c.RootRotationStatements = *in.RootRotationStatements
	}

	p, err := b.newPool(&c, c.Password)
	if err != nil {
		return err
	}
	if c.VerifyConnection {
		if err := p.ping(ctx); err != nil {
			p.close()
			return dbError("error creating database object: error verifying connection", err, c.Password, urlPassword(c.ConnectionURL))
		}
	}
	if err := b.putJSON(ctx, configPrefix+name, &c); err != nil {
		p.close()
		return err
	}
	b.setPool(name, p)
	return nil
}

func (b *Backend) deleteConfig(ctx context.Context, name string) error {
	b.cfgMu.Lock()
	defer b.cfgMu.Unlock()
	if err := b.deleteEntry(ctx, configPrefix+name); err != nil {
		return err
	}
	b.dropPool(name)
	return nil
}

// reset closes the connection pool of name; the next use reopens it with
// the stored configuration.
func (b *Backend) reset(ctx context.Context, name string) error {
	b.cfgMu.Lock()
	defer b.cfgMu.Unlock()
	c, err := b.loadConfig(ctx, name)
	if err != nil {
		return err
	}
	if c == nil {
		return logical.Errorf(logical.Invalid, "database connection %q does not exist", name)
	}
	b.dropPool(name)
	return nil
}

const defaultRootRotation = `ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}'`

// rotateRoot gives the configured user a new random password, stores it
// and reconnects with it. The new password is never returned.
func (b *Backend) rotateRoot(ctx context.Context, name string) error {
	p, _, err := b.getPool(ctx, name) // settles a pending rotation first
	if err != nil {
		return err
	}
	b.cfgMu.Lock()
	defer b.cfgMu.Unlock()
	c, err := b.loadConfig(ctx, name)
	if err != nil {
		return err
	}
	if c == nil {
		return logical.Errorf(logical.Invalid, "database connection %q does not exist", name)
	}
	if c.Username == "" || !strings.Contains(c.ConnectionURL, "{{password}}") {
		return logical.Errorf(logical.Invalid, "unable to rotate root credentials: the connection needs username and a connection_url with {{password}}")
	}
	pw := newPassword()
	sqlPw, err := c.passwordFor(pw)
	if err != nil {
		return err
	}
	c.PendingPassword = pw
	if err := b.putJSON(ctx, configPrefix+name, c); err != nil {
		return err
	}
	stmts := c.RootRotationStatements
	if len(stmts) == 0 {
		stmts = []string{defaultRootRotation}
	}
	err = p.tx(ctx, func(tx pgx.Tx) error {
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, render(s, templateFields(c.Username, sqlPw, time.Time{}))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		c.PendingPassword = ""
		if perr := b.putJSON(ctx, configPrefix+name, c); perr != nil {
			return fmt.Errorf("database: rotate root of %q failed (%v), and clearing the pending password: %w", name, dbError("", err, pw, sqlPw), perr)
		}
		return dbError("unable to rotate root credentials", err, pw, sqlPw)
	}
	c.Password, c.PendingPassword = pw, ""
	if err := b.putJSON(ctx, configPrefix+name, c); err != nil {
		return err // the pending password is stored; the next use settles it
	}
	np, err := b.newPool(c, pw)
	if err != nil {
		return err
	}
	b.setPool(name, np)
	b.log.InfoContext(ctx, "database root credentials rotated", "connection", name)
	return nil
}
