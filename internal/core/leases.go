package core

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/coffer-dev/coffer/internal/lease"
	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/token"
)

// Leases of dynamic secrets. An engine asks for one by setting
// Response.Secret; the core registers it with the lease manager (kind
// "secret"), remembers which token created it, and hands the engine back
// its internal data when the lease is renewed or revoked.

// secretLeaseKind is the lease manager's kind for dynamic secrets.
const secretLeaseKind = "secret"

// tokenLeasesPrefix indexes leases by the accessor of the token that
// created them, so revoking a token revokes its leases.
const tokenLeasesPrefix = "sys/token-leases/"

// secretLeaseData is what a secret lease keeps (lease.Lease.Data).
type secretLeaseData struct {
	MountUUID     string          `json:"mount_uuid"`
	MountPath     string          `json:"mount_path"`
	Path          string          `json:"path"` // relative to the mount
	TTL           time.Duration   `json:"ttl"`
	MaxTTL        time.Duration   `json:"max_ttl"`
	Renewable     bool            `json:"renewable"`
	TokenAccessor string          `json:"token_accessor,omitempty"`
	Internal      json.RawMessage `json:"internal,omitempty"`
}

// leaseTTLs applies the mount's defaults and caps to what an engine asked.
func leaseTTLs(m *mount, ttl, maxTTL time.Duration) (time.Duration, time.Duration) {
	def, max := m.entry.Config.DefaultLeaseTTL, m.entry.Config.MaxLeaseTTL
	if def == 0 {
		def = defaultMaxTTL
	}
	if max == 0 {
		max = defaultMaxTTL
	}
	if maxTTL == 0 || maxTTL > max {
		maxTTL = max
	}
	if ttl == 0 {
		ttl = def
	}
	if ttl > maxTTL {
		ttl = maxTTL
	}
	return ttl, maxTTL
}

// registerSecret puts resp under a lease and sets resp.Lease.
func (c *Core) registerSecret(ctx context.Context, st *unsealed, m *mount, path, rel string, caller *token.Entry, resp *logical.Response) error {
	if _, ok := m.backend.(logical.SecretEngine); !ok {
		return fmt.Errorf("core: engine %q returned a leased secret but cannot revoke it", m.entry.Type)
	}
	ttl, maxTTL := leaseTTLs(m, resp.Secret.TTL, resp.Secret.MaxTTL)
	suffix, err := randomBase62(c.cfg.Rand, 24)
	if err != nil {
		return err
	}
	id := strings.TrimSuffix(path, "/") + "/" + suffix
	now := c.cfg.Now()
	d := secretLeaseData{
		MountUUID: m.entry.UUID, MountPath: m.entry.Path, Path: rel,
		TTL: ttl, MaxTTL: maxTTL, Renewable: resp.Secret.Renewable,
		Internal: resp.Secret.InternalData,
	}
	if caller != nil {
		d.TokenAccessor = caller.Accessor
	}
	raw, err := json.Marshal(d)
	if err != nil {
		return err
	}
	// Index first: an index entry without its lease is harmless, a lease
	// its token cannot find is not.
	if d.TokenAccessor != "" {
		if err := c.barrier.Put(ctx, tokenLeaseKey(d.TokenAccessor, id), []byte(id)); err != nil {
			return fmt.Errorf("core: index lease: %w", err)
		}
	}
	if err := st.leases.Register(ctx, &lease.Lease{
		ID: id, Kind: secretLeaseKind, Path: strings.TrimSuffix(path, "/"),
		IssueTime: now, ExpireTime: now.Add(ttl), Data: raw,
	}); err != nil {
		return fmt.Errorf("core: register lease: %w", err)
	}
	resp.Lease = &logical.Lease{ID: id, Duration: ttl, Renewable: resp.Secret.Renewable}
	resp.Secret = nil
	return nil
}

func tokenLeaseKey(accessor, leaseID string) string {
	sum := sha256.Sum256([]byte(leaseID))
	return tokenLeasesPrefix + accessor + "/" + hex.EncodeToString(sum[:16])
}

// leasedSecret finds the engine that issued l and what it needs to know.
func (c *Core) leasedSecret(st *unsealed, l *lease.Lease) (logical.SecretEngine, *logical.LeasedSecret, *secretLeaseData, error) {
	var d secretLeaseData
	if err := json.Unmarshal(l.Data, &d); err != nil {
		return nil, nil, nil, fmt.Errorf("core: decode lease: %w", err)
	}
	var eng logical.SecretEngine
	for _, e := range st.mounts.table.entries() {
		if e.UUID == d.MountUUID {
			if m := st.mounts.table.get(e.Path); m != nil {
				eng, _ = m.backend.(logical.SecretEngine)
			}
		}
	}
	return eng, &logical.LeasedSecret{
		LeaseID: l.ID, Path: d.Path, IssueTime: l.IssueTime, ExpireTime: l.ExpireTime,
		TTL: d.TTL, MaxTTL: d.MaxTTL, InternalData: d.Internal,
	}, &d, nil
}

// revokeSecretLease is the lease manager's revoker for dynamic secrets.
func (c *Core) revokeSecretLease(ctx context.Context, st *unsealed, l *lease.Lease) error {
	eng, s, d, err := c.leasedSecret(st, l)
	if err != nil {
		return err
	}
	if eng == nil {
		// The mount is gone, and with it whatever it could revoke.
		c.logger.Warn("lease of an unmounted engine dropped", "lease_id", l.ID)
		return nil
	}
	if err := eng.RevokeSecret(ctx, s); err != nil {
		return err
	}
	if d.TokenAccessor != "" {
		if err := c.barrier.Delete(ctx, tokenLeaseKey(d.TokenAccessor, l.ID)); err != nil {
			c.logger.Warn("could not drop a lease's token index", "lease_id", l.ID, "err", err)
		}
	}
	return nil
}

// revokeTokenLeases revokes every lease created by the token with this
// accessor (when the token is revoked).
func (c *Core) revokeTokenLeases(ctx context.Context, st *unsealed, accessor string) error {
	dir := tokenLeasesPrefix + accessor + "/"
	keys, err := c.barrier.List(ctx, dir)
	if err != nil {
		return err
	}
	for _, k := range keys {
		raw, err := c.barrier.Get(ctx, dir+k)
		if errors.Is(err, logical.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if err := st.leases.Revoke(ctx, string(raw)); err != nil && !errors.Is(err, lease.ErrNotFound) {
			return fmt.Errorf("core: revoke lease of a revoked token: %w", err)
		}
		if err := c.barrier.Delete(ctx, dir+k); err != nil {
			return err
		}
	}
	return nil
}

type leaseRequest struct {
	LeaseID   string           `json:"lease_id"`
	Increment logical.Duration `json:"increment"`
	Sync      *logical.Bool    `json:"sync"`
}

// leasesHandle serves sys/leases/* (and the legacy sys/renew, sys/revoke).
func (c *Core) leasesHandle(ctx context.Context, st *unsealed, req *logical.Request, p string) (*logical.Response, error) {
	var r leaseRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	// The lease ID may be in the path (sys/leases/renew/<id>).
	op, rest, _ := strings.Cut(p, "/")
	if rest != "" && r.LeaseID == "" && op != "revoke-prefix" && op != "revoke-force" && op != "lookup" {
		r.LeaseID = rest
	}
	switch {
	case op == "lookup" && req.Operation == logical.ListOperation:
		keys, err := st.leases.List(ctx, rest)
		if err != nil {
			return nil, err
		}
		if len(keys) == 0 {
			return nil, &logical.Error{Code: logical.NotFound, Messages: []string{}}
		}
		return &logical.Response{Data: map[string]any{"keys": keys}}, nil
	case op == "lookup":
		l, err := c.lookupLease(ctx, st, r.LeaseID)
		if err != nil {
			return nil, err
		}
		var d secretLeaseData
		_ = json.Unmarshal(l.Data, &d)
		ttl := int64(0)
		var expire any
		if !l.ExpireTime.IsZero() {
			ttl = int64(max(l.ExpireTime.Sub(c.cfg.Now()), 0).Round(time.Second) / time.Second)
			expire = l.ExpireTime.UTC().Format(time.RFC3339Nano)
		}
		var last any
		if !l.LastRenewal.IsZero() {
			last = l.LastRenewal.UTC().Format(time.RFC3339Nano)
		}
		return &logical.Response{Data: map[string]any{
			"id": l.ID, "issue_time": l.IssueTime.UTC().Format(time.RFC3339Nano),
			"expire_time": expire, "last_renewal": last, "renewable": d.Renewable, "ttl": ttl,
		}}, nil
	case op == "renew":
		return c.renewLease(ctx, st, r.LeaseID, time.Duration(r.Increment))
	case op == "revoke":
		if _, err := c.lookupLease(ctx, st, r.LeaseID); err != nil {
			return nil, err
		}
		if err := st.leases.Revoke(ctx, r.LeaseID); err != nil {
			return nil, fmt.Errorf("core: revoke lease: %w", err)
		}
		return nil, nil
	case op == "revoke-prefix":
		if rest == "" {
			return nil, logical.Errorf(logical.Invalid, "missing prefix")
		}
		if err := st.leases.RevokePrefix(ctx, rest); err != nil {
			return nil, fmt.Errorf("core: revoke prefix: %w", err)
		}
		return nil, nil
	case op == "revoke-force":
		if rest == "" {
			return nil, logical.Errorf(logical.Invalid, "missing prefix")
		}
		return nil, c.forgetPrefix(ctx, st, rest)
	case op == "tidy":
		return &logical.Response{Warnings: []string{"nothing to tidy: leases are removed as they are revoked"}}, nil
	}
	return nil, &logical.Error{Code: logical.NotFound, Message: "no handler for route \"sys/leases/" + p + "\". route entry not found."}
}

func (c *Core) lookupLease(ctx context.Context, st *unsealed, id string) (*lease.Lease, error) {
	if id == "" {
		return nil, logical.Errorf(logical.Invalid, "missing lease_id")
	}
	l, err := st.leases.Lookup(ctx, id)
	if errors.Is(err, lease.ErrNotFound) || (err == nil && l.Kind != secretLeaseKind) {
		return nil, logical.Errorf(logical.Invalid, "invalid lease")
	}
	return l, err
}

// renewLease extends a dynamic secret's lease through its engine, capped
// at the lease's max TTL from its issue time.
func (c *Core) renewLease(ctx context.Context, st *unsealed, id string, inc time.Duration) (*logical.Response, error) {
	l, err := c.lookupLease(ctx, st, id)
	if err != nil {
		return nil, err
	}
	eng, s, d, err := c.leasedSecret(st, l)
	if err != nil {
		return nil, err
	}
	if !d.Renewable {
		return nil, logical.Errorf(logical.Invalid, "lease is not renewable")
	}
	if eng == nil {
		return nil, logical.Errorf(logical.Invalid, "the engine that issued this lease is no longer mounted")
	}
	if inc <= 0 {
		inc = d.TTL
	}
	now := c.cfg.Now()
	limit := l.IssueTime.Add(d.MaxTTL)
	if now.Add(inc).After(limit) {
		inc = limit.Sub(now)
	}
	warnings := []string(nil)
	if inc <= 0 {
		return nil, logical.Errorf(logical.Invalid, "lease has reached its max TTL and cannot be renewed")
	}
	granted, err := eng.RenewSecret(ctx, s, inc)
	if err != nil {
		return nil, err
	}
	if granted <= 0 || granted > inc {
		granted = inc
	}
	if granted < inc {
		warnings = append(warnings, fmt.Sprintf("TTL of %q exceeded the effective max_ttl; TTL value is capped accordingly", inc))
	}
	if err := st.leases.Renew(ctx, id, now.Add(granted)); err != nil {
		return nil, fmt.Errorf("core: renew lease: %w", err)
	}
	return &logical.Response{
		Lease:    &logical.Lease{ID: id, Duration: granted, Renewable: true},
		Warnings: warnings,
	}, nil
}

// forgetPrefix removes leases under prefix without asking their engines
// (revoke-force: for an engine that can no longer revoke).
func (c *Core) forgetPrefix(ctx context.Context, st *unsealed, prefix string) error {
	keys, err := st.leases.List(ctx, strings.TrimSuffix(prefix, "/")+"/")
	if err != nil {
		return err
	}
	for _, k := range keys {
		if strings.HasSuffix(k, "/") {
			if err := c.forgetPrefix(ctx, st, strings.TrimSuffix(prefix, "/")+"/"+k); err != nil {
				return err
			}
			continue
		}
		if err := st.leases.Forget(ctx, strings.TrimSuffix(prefix, "/")+"/"+k); err != nil {
			return err
		}
	}
	return nil
}
