package core

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/coffer-dev/coffer/internal/audit"
	"github.com/coffer-dev/coffer/internal/barrier"
	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/policy"
	"github.com/coffer-dev/coffer/internal/token"
)

// unauthenticated lists the paths a request may call without a token;
// a "*" suffix is a prefix.
var unauthenticated = []string{
	"sys/wrapping/lookup",
	"sys/wrapping/unwrap", // authenticated by the wrapping token itself
}

// sudoPaths need the sudo capability on top of the operation's.
var sudoPaths = []string{
	"sys/seal",
	"sys/rotate",
	"sys/step-down",
	"auth/token/accessors/",
	"auth/token/create-orphan",
	"sys/storage/",
	"sys/raw/",
	"sys/audit",
	"sys/audit/",
	"sys/audit-hash/",
	"sys/access",
	"sys/declarative/owned",
	"sys/leases/revoke-prefix/",
	"sys/leases/revoke-force/",
	"sys/leases/lookup/",
	"sys/revoke-prefix/",
}

func matchAny(list []string, path string) bool {
	for _, p := range list {
		if path == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(path, p)) {
			return true
		}
	}
	return false
}

// CleanPath validates a request path: no empty, "." or ".." segments (an
// unclean path could otherwise name one thing to the policy check and
// another to the engine), no leading slash. A trailing slash is kept (it
// matters for LIST).
func CleanPath(p string) (string, error) {
	p = strings.TrimPrefix(p, "/")
	trimmed := strings.TrimSuffix(p, "/")
	if trimmed == "" {
		return "", logical.Errorf(logical.NotFound, "missing request path")
	}
	for _, seg := range strings.Split(trimmed, "/") {
		switch seg {
		case "", ".", "..":
			return "", logical.Errorf(logical.Invalid, "invalid request path: empty, '.' and '..' segments are not allowed")
		}
	}
	if strings.ContainsAny(p, "\x00\\") {
		return "", logical.Errorf(logical.Invalid, "invalid request path: control or backslash characters are not allowed")
	}
	return p, nil
}

// HandleRequest runs req through the pipeline: authenticate, authorize,
// route, respond (and wrap, when asked). req.Path is the full logical path
// ("secret/data/app"). Errors are *logical.Error for the client; anything
// else is an internal error whose details belong in the log only.
func (c *Core) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	start := c.cfg.Now()
	resp, err := c.handle(ctx, req)
	c.metrics.observe(req.Operation, err, time.Since(start))
	if err == nil {
		c.afterRequest(ctx, req)
	}
	return resp, err
}

func (c *Core) handle(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	st := c.state
	if st == nil {
		return nil, logical.ErrSealed
	}
	in := audit.NewInput(req)
	resp, logged, err := c.serve(ctx, st, req, in)
	if logged {
		return resp, err
	}
	if in.Err != nil {
		// Refused before the engine: recorded as a response with its error.
		if aerr := st.audit.LogResponse(ctx, in, nil, err); aerr != nil {
			return nil, fmt.Errorf("core: audit: %w", aerr)
		}
		return nil, err
	}
	if aerr := st.audit.LogResponse(ctx, in, resp, err); aerr != nil {
		// Fail closed: no device recorded it, so no data leaves.
		return nil, fmt.Errorf("core: audit: %w", aerr)
	}
	return resp, err
}

// serve runs req through the pipeline. Errors before the engine set in.Err;
// once the request is authorized it is recorded (in) before the engine
// sees it.
//
// logged reports that serve recorded the response itself: disabling an
// audit device records its answer first, while the device still exists,
// so turning off the last working device cannot fail closed after the fact.
func (c *Core) serve(ctx context.Context, st *unsealed, req *logical.Request, in *audit.Input) (resp *logical.Response, logged bool, err error) {
	refuse := func(err error) (*logical.Response, bool, error) {
		in.Err = err
		return nil, false, err
	}
	path, err := CleanPath(req.Path)
	if err != nil {
		return refuse(err)
	}
	req.Path = path
	in.Path = path
	m, rel := st.mounts.table.route(path)
	if m != nil {
		in.MountPoint, in.MountType = m.entry.Path, m.entry.Type
	}

	var entry *token.Entry
	if !c.unauthenticated(m, path, rel) {
		entry, err = c.authenticate(ctx, st, req.ClientToken, req.RemoteAddr)
		if err != nil {
			return refuse(err)
		}
		req.Caller = entry.Caller()
		in.Caller = req.Caller
	}

	// A write is a create when the engine says the path does not exist.
	if req.Operation == logical.UpdateOperation && m != nil {
		if ec, ok := m.backend.(logical.ExistenceChecker); ok {
			sub := *req
			sub.Path = rel
			sub.MountPoint = m.entry.Path
			checked, exists, err := ec.Exists(ctx, &sub)
			if err != nil {
				return refuse(err)
			}
			if checked && !exists {
				req.Operation = logical.CreateOperation
				in.Operation = req.Operation
			}
		}
	}

	if entry != nil {
		if err := c.authorize(ctx, st, entry, req.Operation, path); err != nil {
			return refuse(err)
		}
	}
	if m == nil {
		return refuse(&logical.Error{Code: logical.NotFound, Message: fmt.Sprintf("no handler for route %q. route entry not found.", path)})
	}
	if err := st.audit.LogRequest(ctx, in); err != nil {
		return nil, false, fmt.Errorf("core: audit: %w", err)
	}
	if entry != nil {
		if err := st.tokens.Use(ctx, entry); err != nil {
			return nil, false, fmt.Errorf("core: use token: %w", err)
		}
	}
	sub := *req
	sub.Path = rel
	sub.MountPoint = m.entry.Path
	if path == "sys/audit" || strings.HasPrefix(path, "sys/audit/") || strings.HasPrefix(path, "sys/audit-hash/") {
		sub.Path = strings.TrimPrefix(path, "sys/")
		if req.Operation == logical.DeleteOperation && strings.HasPrefix(path, "sys/audit/") {
			if err := st.audit.LogResponse(ctx, in, nil, nil); err != nil {
				return nil, true, fmt.Errorf("core: audit: %w", err)
			}
			resp, err := st.audit.HandleRequest(ctx, &sub)
			return resp, true, err
		}
		resp, err = st.audit.HandleRequest(ctx, &sub)
	} else {
		resp, err = m.backend.HandleRequest(ctx, &sub)
	}
	if err != nil {
		return nil, false, mapStorageError(err)
	}
	if req.Operation != logical.ReadOperation && req.Operation != logical.ListOperation {
		c.publishWrite(m, path, rel, req.Operation, resp)
	}
	if resp == nil {
		return nil, false, nil
	}
	if resp.MountType == "" {
		resp.MountType = m.entry.Type
	}
	if resp.Auth != nil && resp.Auth.ClientToken == "" && m.entry.Type != "token" {
		if err := c.mintLoginToken(ctx, st, m, path, resp.Auth); err != nil {
			return nil, false, err
		}
	}
	if resp.Secret != nil {
		if err := c.registerSecret(ctx, st, m, path, rel, entry, resp); err != nil {
			return nil, false, err
		}
	}
	if req.WrapTTL > 0 && resp.WrapInfo == nil {
		resp, err = c.wrapResponse(ctx, st, path, resp, req.WrapTTL)
		return resp, false, err
	}
	return resp, false, nil
}

// unauthenticated reports whether path may be called without a token: a
// core path (unwrapping), or a path its auth method declares (logins).
func (c *Core) unauthenticated(m *mount, path, rel string) bool {
	if matchAny(unauthenticated, strings.TrimSuffix(path, "/")) {
		return true
	}
	if m == nil || !strings.HasPrefix(m.entry.Path, "auth/") {
		return false
	}
	u, ok := m.backend.(logical.Unauthenticated)
	if !ok {
		return false
	}
	for _, p := range u.UnauthenticatedPaths() {
		if rel == p || (strings.HasSuffix(p, "*") && strings.HasPrefix(rel, strings.TrimSuffix(p, "*"))) {
			return true
		}
	}
	return false
}

// mintLoginToken creates the token an auth method's login asked for and
// completes the auth block. Login tokens are orphans (no parent: the
// identity, not a token, vouched for them), capped by the mount's TTLs.
func (c *Core) mintLoginToken(ctx context.Context, st *unsealed, m *mount, path string, a *logical.Auth) error {
	ttl, maxTTL := leaseTTLs(m, a.TTL, a.MaxTTL)
	renewable := logical.Bool(a.Renewable)
	display := strings.TrimSuffix(strings.TrimPrefix(m.entry.Path, "auth/"), "/")
	if a.DisplayName != "" {
		display += "-" + a.DisplayName
	}
	tok, e, err := st.tokens.Create(ctx, nil, token.CreateRequest{
		Policies:       a.Policies,
		Meta:           a.Metadata,
		TTL:            logical.Duration(ttl),
		ExplicitMaxTTL: logical.Duration(maxTTL),
		Period:         logical.Duration(a.Period),
		DisplayName:    display,
		NumUses:        logical.Int(a.NumUses),
		Renewable:      &renewable,
		Path:           path,
		BoundCIDRs:     a.BoundCIDRs,
	})
	if err != nil {
		return fmt.Errorf("core: mint login token: %w", err)
	}
	a.ClientToken = tok
	a.Accessor = e.Accessor
	a.Policies = e.Policies
	a.TokenPolicies = e.Policies
	a.Metadata = e.Meta
	a.LeaseDuration = int64(e.TTL(c.cfg.Now()).Round(time.Second) / time.Second)
	a.Renewable = e.Renewable
	a.Orphan = true
	a.TokenType = "service"
	return nil
}

// authenticate resolves a token used from remote (the client's
// "ip:port") to its entry. A missing, unknown or expired token is
// "permission denied", as in Vault, and so is a token with bound CIDRs
// used from outside them: the same error, so the refusal tells nothing
// about the token. An empty remote (a caller that does not know the
// client's address) is outside every bound CIDR.
func (c *Core) authenticate(ctx context.Context, st *unsealed, tok, remote string) (*token.Entry, error) {
	if tok == "" {
		return nil, logical.ErrPermissionDenied
	}
	entry, err := st.tokens.Lookup(ctx, tok)
	if errors.Is(err, token.ErrNotFound) {
		return nil, logical.ErrPermissionDenied
	}
	if err != nil {
		return nil, fmt.Errorf("core: look up token: %w", err)
	}
	if !entry.AllowsRemote(remote) {
		return nil, logical.ErrPermissionDenied
	}
	return entry, nil
}

// authorize checks op on path against the entry's policies.
func (c *Core) authorize(ctx context.Context, st *unsealed, entry *token.Entry, op logical.Operation, path string) error {
	if entry.IsRoot() {
		return nil
	}
	acl, err := st.policies.ACL(ctx, entry.Policies)
	if err != nil {
		return fmt.Errorf("core: load policies: %w", err)
	}
	allowed, sudo := acl.AllowedOperation(op, path)
	if !allowed {
		return denied(string(op), path)
	}
	if matchAny(sudoPaths, path) && !sudo {
		return denied("sudo", path)
	}
	return nil
}

// denied is a 403 whose first message is Vault's "permission denied"
// (clients match on it) and whose second says what was missing — a
// capability and a path, never a value.
func denied(capability, path string) error {
	return &logical.Error{Code: logical.PermissionDenied, Message: "permission denied",
		Messages: []string{"permission denied", fmt.Sprintf("missing %q on %q", capability, path)}}
}

// mapStorageError turns a sealed barrier into the API's sealed error.
func mapStorageError(err error) error {
	if errors.Is(err, barrier.ErrSealed) {
		return logical.ErrSealed
	}
	return err
}

// Capabilities returns tok's capabilities on each path.
func (c *Core) capabilities(ctx context.Context, st *unsealed, e *token.Entry, paths []string) (map[string][]string, error) {
	var acl *policy.ACL
	if !e.IsRoot() {
		var err error
		acl, err = st.policies.ACL(ctx, e.Policies)
		if err != nil {
			return nil, err
		}
	}
	out := make(map[string][]string, len(paths))
	for _, p := range paths {
		p = strings.TrimPrefix(p, "/")
		if acl == nil {
			out[p] = []string{"root"}
			continue
		}
		out[p] = acl.Capabilities(p)
	}
	return out, nil
}
