package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/coffer-dev/coffer/internal/lease"
	"github.com/coffer-dev/coffer/internal/logical"
)

// Revoke revokes a token and all its descendants. Revoking an unknown,
// expired or already revoked token is not an error (as in Vault).
func (s *Store) Revoke(ctx context.Context, token string) error {
	if token == "" {
		return nil
	}
	e, err := s.get(ctx, hashToken(token))
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return s.RevokeTree(ctx, e)
}

// RevokeTree revokes e and all its descendants, children first. e stops
// working at once; its descendants as the walk reaches them. On error
// the tree is partly revoked and RevokeTree can be called again.
func (s *Store) RevokeTree(ctx context.Context, e *Entry) error {
	if err := s.markRevoking(ctx, e.ID); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	return s.revokeTree(ctx, e)
}

// markRevoking makes a token unusable before its revocation begins.
func (s *Store) markRevoking(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.get(ctx, id)
	if err != nil {
		return err
	}
	if cur.Revoking {
		return nil
	}
	cur.Revoking = true
	return s.put(ctx, cur)
}

func (s *Store) revokeTree(ctx context.Context, e *Entry) error {
	children, err := s.children(ctx, e.ID)
	if err != nil {
		return err
	}
	for _, id := range children {
		c, err := s.get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			// A dangling index entry.
			if err := s.store.Delete(ctx, parentPrefix+e.ID+"/"+id); err != nil {
				return fmt.Errorf("token: delete child index: %w", err)
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := s.revokeTree(ctx, c); err != nil {
			return err
		}
	}
	return s.revokeOne(ctx, e)
}

func (s *Store) children(ctx context.Context, id string) ([]string, error) {
	keys, err := s.store.List(ctx, parentPrefix+id+"/")
	if err != nil {
		return nil, fmt.Errorf("token: list children: %w", err)
	}
	return keys, nil
}

// revokeOne runs the hooks for e and deletes it; its children must be gone
// or orphaned already.
func (s *Store) revokeOne(ctx context.Context, e *Entry) error {
	s.hooksMu.RLock()
	hooks := s.hooks
	s.hooksMu.RUnlock()
	for _, fn := range hooks {
		if err := fn(ctx, e); err != nil {
			return fmt.Errorf("token: revoke %s: %w", e.Accessor, err)
		}
	}
	ops := []logical.Op{
		{Key: idPrefix + e.ID, Delete: true},
		{Key: accessorPrefix + e.Accessor, Delete: true},
	}
	if e.Parent != "" {
		ops = append(ops, logical.Op{Key: parentPrefix + e.Parent + "/" + e.ID, Delete: true})
	}
	if err := s.store.Apply(ctx, ops); err != nil {
		return fmt.Errorf("token: delete entry: %w", err)
	}
	if !e.ExpireTime.IsZero() {
		if err := s.leases.Forget(ctx, leaseID(e.ID)); err != nil {
			// The token is gone; the lease's revoker will find nothing.
			s.log.WarnContext(ctx, "token: could not drop the lease of a revoked token", "accessor", e.Accessor, "error", err)
		}
	}
	return nil
}

// RevokeOrphan revokes only the token; its children become orphans.
// Revoking an unknown token is not an error.
func (s *Store) RevokeOrphan(ctx context.Context, token string) error {
	if token == "" {
		return nil
	}
	e, err := s.get(ctx, hashToken(token))
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.markRevoking(ctx, e.ID); err != nil {
		return err
	}
	children, err := s.children(ctx, e.ID)
	if err != nil {
		return err
	}
	for _, id := range children {
		if err := s.orphan(ctx, e.ID, id); err != nil {
			return err
		}
	}
	return s.revokeOne(ctx, e)
}

// orphan detaches child id from parent.
func (s *Store) orphan(ctx context.Context, parent, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ops := []logical.Op{{Key: parentPrefix + parent + "/" + id, Delete: true}}
	c, err := s.get(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return err
	default:
		c.Parent = ""
		b, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("token: encode entry: %w", err)
		}
		ops = append(ops, logical.Op{Key: idPrefix + id, Value: b})
	}
	if err := s.store.Apply(ctx, ops); err != nil {
		return fmt.Errorf("token: orphan child: %w", err)
	}
	return nil
}

// RevokeAccessor revokes the tree of the token with the given accessor.
// It returns ErrNotFound for an unknown accessor.
func (s *Store) RevokeAccessor(ctx context.Context, accessor string) error {
	id, err := s.accessorID(ctx, accessor)
	if err != nil {
		return err
	}
	e, err := s.get(ctx, id)
	if err != nil {
		return err
	}
	return s.RevokeTree(ctx, e)
}

// RevokeLease is the lease manager's revoker for LeaseKind: it revokes the
// token of the lease with its tree, and does nothing if it is gone.
func (s *Store) RevokeLease(ctx context.Context, l *lease.Lease) error {
	var d leaseData
	if err := json.Unmarshal(l.Data, &d); err != nil || d.ID == "" {
		return fmt.Errorf("token: lease %q has no token id", l.ID)
	}
	e, err := s.get(ctx, d.ID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return s.RevokeTree(ctx, e)
}

// Renew extends the life of a live token to now+increment (zero: its
// creation TTL; a periodic token always gets its period), capped by its
// max TTL and explicit max TTL counted from its creation, and returns the
// updated entry. A token that is not renewable, or past its max TTL, is an
// Invalid *logical.Error; a missing token is ErrNotFound.
func (s *Store) Renew(ctx context.Context, e *Entry, increment time.Duration) (*Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.live(ctx, e.ID)
	if err != nil {
		return nil, err
	}
	if !cur.Renewable || cur.ExpireTime.IsZero() {
		return nil, invalid("lease is not renewable")
	}
	now := s.now()
	ttl := increment
	if ttl <= 0 {
		ttl = cur.CreationTTL
	}
	if cur.Period > 0 {
		ttl = cur.Period
	} else if cur.MaxTTL > 0 {
		ttl = min(ttl, cur.CreationTime.Add(cur.MaxTTL).Sub(now))
	}
	if cur.ExplicitMaxTTL > 0 {
		ttl = min(ttl, cur.CreationTime.Add(cur.ExplicitMaxTTL).Sub(now))
	}
	ttl = ttl.Truncate(time.Second)
	if ttl <= 0 {
		return nil, invalid("past the max TTL, cannot renew")
	}
	expire := now.Add(ttl)
	if err := s.leases.Renew(ctx, leaseID(cur.ID), expire); err != nil {
		return nil, fmt.Errorf("token: renew lease: %w", err)
	}
	cur.ExpireTime = expire
	cur.LastRenewal = now
	if err := s.put(ctx, cur); err != nil {
		return nil, err
	}
	return cur, nil
}
