package token

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/coffer-dev/coffer/internal/auth/tokenparams"
	"github.com/coffer-dev/coffer/internal/lease"
	"github.com/coffer-dev/coffer/internal/logical"
)

// CreateRequest is the body of auth/token/create (and create-orphan,
// create/<role>), with Vault's field names and lenient types.
type CreateRequest struct {
	// ID asks for a given token value; root parents only.
	ID string `json:"id"`
	// RoleName creates the token through a role.
	RoleName        string             `json:"role_name"`
	Policies        logical.StringList `json:"policies"`
	Meta            map[string]string  `json:"meta"`
	NoParent        logical.Bool       `json:"no_parent"`
	NoDefaultPolicy logical.Bool       `json:"no_default_policy"`
	// Renewable: nil is true.
	Renewable      *logical.Bool    `json:"renewable"`
	TTL            logical.Duration `json:"ttl"`
	Lease          logical.Duration `json:"lease"` // deprecated alias of ttl
	Type           string           `json:"type"`
	ExplicitMaxTTL logical.Duration `json:"explicit_max_ttl"`
	DisplayName    string           `json:"display_name"`
	NumUses        logical.Int      `json:"num_uses"`
	Period         logical.Duration `json:"period"`
	// Path is the request path recorded in the token; empty is
	// "auth/token/create". Not read from the body.
	Path string `json:"-"`
	// BoundCIDRs binds an orphan created without a role to these CIDR
	// blocks (or bare addresses); the core sets them from a login's
	// token_bound_cidrs. Not read from the body: as in Vault, a token
	// created through the API gets bound CIDRs only from its role or,
	// without a role, from its parent.
	BoundCIDRs []string `json:"-"`
	// orphan is set by the create-orphan endpoint.
	orphan bool
}

func invalid(format string, args ...any) error {
	return logical.Errorf(logical.Invalid, format, args...)
}

var displayNameSanitize = regexp.MustCompile(`[^a-zA-Z0-9-]`)

// sanitizePolicies trims, lower-cases, de-duplicates and sorts names.
func sanitizePolicies(in []string) []string {
	var out []string
	for _, p := range in {
		p = strings.ToLower(strings.TrimSpace(p))
		if p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

func subset(super, sub []string) bool {
	for _, p := range sub {
		if !slices.Contains(super, p) {
			return false
		}
	}
	return true
}

// Create makes a token, a child of parent, or a system token when parent
// is nil (the root token; the core's own). It returns the token, which is
// stored nowhere, and its entry. Vault's rules apply: a non-root parent
// may give only a subset of its policies, "default" is added unless
// NoDefaultPolicy, "root" stands alone, id/no_parent/period need a root
// parent, the TTL is capped by the mount's max TTL, the explicit max TTL
// and (unless orphan) the parent's remaining life, and a root-policy
// token without TTL never expires. Bound CIDRs come, as in Vault, from
// the role when there is one (even none), else from the parent for a
// child and from req.BoundCIDRs for an orphan; a token that never expires
// is bound to none. Invalid requests are *logical.Error with code Invalid.
func (s *Store) Create(ctx context.Context, parent *Entry, req CreateRequest) (string, *Entry, error) {
	now := s.now()
	parentRoot := parent == nil || parent.IsRoot()

	var role *Role
	if req.RoleName != "" {
		r, err := s.Role(ctx, req.RoleName)
		if err != nil {
			return "", nil, err
		}
		if r == nil {
			return "", nil, invalid("unknown role %s", req.RoleName)
		}
		role = r
	}
	switch req.Type {
	case "", "service", "default":
	case "batch":
		return "", nil, invalid("batch tokens are not supported")
	default:
		return "", nil, invalid("invalid 'token_type' value")
	}
	if req.NumUses < 0 {
		return "", nil, invalid("number of uses cannot be negative")
	}
	if req.ID != "" {
		if !parentRoot {
			return "", nil, invalid("root or sudo privileges required to specify token id")
		}
		for _, p := range []string{"s.", "b.", "hvs.", "hvb.", "hvr."} {
			if strings.HasPrefix(req.ID, p) {
				return "", nil, invalid("custom token ID cannot have the %q prefix", p)
			}
		}
		if strings.ContainsAny(req.ID, " \t\r\n") {
			return "", nil, invalid("custom token ID cannot contain whitespace")
		}
		if _, err := s.get(ctx, hashToken(req.ID)); err == nil {
			return "", nil, invalid("cannot use a token ID that is in use")
		}
	}

	orphan := parent == nil || req.orphan || (role != nil && role.Orphan)
	if req.NoParent {
		if !parentRoot {
			return "", nil, invalid("root or sudo privileges required to create orphan token")
		}
		orphan = true
	}

	// Policies.
	pols := sanitizePolicies(req.Policies)
	addDefault := !bool(req.NoDefaultPolicy)
	switch {
	case role != nil && len(role.AllowedPolicies) > 0:
		allowed := append(slices.Clone(role.AllowedPolicies), "default")
		if len(pols) == 0 {
			pols = slices.DeleteFunc(sanitizePolicies(role.AllowedPolicies), func(p string) bool { return slices.Contains(role.DisallowedPolicies, p) })
		}
		if !subset(allowed, pols) {
			return "", nil, invalid("token policies (%v) must be subset of the role's allowed policies (%v)", pols, role.AllowedPolicies)
		}
	default:
		if len(pols) == 0 && parent != nil {
			pols = sanitizePolicies(parent.Policies)
			if role != nil {
				pols = slices.DeleteFunc(pols, func(p string) bool { return slices.Contains(role.DisallowedPolicies, p) })
			}
		}
		if !parentRoot && !subset(parent.Policies, pols) {
			return "", nil, invalid("child policies must be subset of parent")
		}
		if !parentRoot && role == nil && !slices.Contains(parent.Policies, "default") {
			addDefault = false
		}
	}
	if role != nil {
		if role.TokenNoDefaultPolicy {
			addDefault = false
		}
		for _, p := range pols {
			if slices.Contains(role.DisallowedPolicies, p) {
				return "", nil, invalid("token policy %q is disallowed by this role", p)
			}
		}
		if slices.Contains(role.DisallowedPolicies, "default") {
			addDefault = false
		}
	}
	if !addDefault {
		pols = slices.DeleteFunc(pols, func(p string) bool { return p == "default" })
	}
	if slices.Contains(pols, "root") {
		pols = []string{"root"}
	} else if addDefault && !slices.Contains(pols, "default") {
		pols = sanitizePolicies(append(pols, "default"))
	}
	if len(pols) == 0 {
		return "", nil, invalid("token must have at least one policy")
	}
	isRoot := slices.Contains(pols, "root")

	// Number of uses.
	numUses := int(req.NumUses)
	if role != nil && role.TokenNumUses > 0 && (numUses == 0 || numUses > role.TokenNumUses) {
		numUses = role.TokenNumUses
	}

	// TTLs.
	maxTTL := s.maxTTL
	explicit := time.Duration(req.ExplicitMaxTTL)
	period := time.Duration(req.Period)
	ttl := time.Duration(req.TTL)
	if ttl == 0 {
		ttl = time.Duration(req.Lease)
	}
	if period > 0 && !parentRoot && role == nil {
		return "", nil, invalid("root or sudo privileges required to create periodic token")
	}
	if role != nil {
		if role.TokenMaxTTL > 0 && role.TokenMaxTTL < maxTTL {
			maxTTL = role.TokenMaxTTL
		}
		if role.TokenExplicitMaxTTL > 0 && (explicit == 0 || role.TokenExplicitMaxTTL < explicit) {
			explicit = role.TokenExplicitMaxTTL
		}
		if role.TokenPeriod > 0 {
			period = role.TokenPeriod
		}
		if ttl == 0 {
			ttl = role.TokenTTL
		}
	}
	switch {
	case period > 0:
		ttl = period
	case ttl == 0 && isRoot && explicit == 0:
		// A root token without TTL never expires.
	default:
		if ttl == 0 {
			ttl = min(s.defaultTTL, maxTTL)
		}
		ttl = min(ttl, maxTTL)
	}
	if explicit > 0 && (ttl == 0 || ttl > explicit) {
		ttl = explicit
	}
	if !orphan && parent != nil && !parent.ExpireTime.IsZero() {
		left := parent.ExpireTime.Sub(now)
		if left <= 0 {
			return "", nil, ErrNotFound
		}
		if ttl == 0 || ttl > left {
			ttl = left
		}
	}
	renewable := req.Renewable == nil || bool(*req.Renewable)
	if role != nil && !role.Renewable {
		renewable = false
	}
	if ttl == 0 {
		renewable = false
	}

	// Bound CIDRs, as in Vault: a role's replace the parent's (a role may
	// widen them); without a role a child keeps its parent's and an orphan
	// takes the request's.
	var cidrs []string
	switch {
	case role != nil:
		cidrs = slices.Clone(role.TokenBoundCIDRs)
	case !orphan:
		cidrs = slices.Clone(parent.BoundCIDRs)
	default:
		c, err := tokenparams.ParseCIDRs("bound_cidrs", req.BoundCIDRs)
		if err != nil {
			return "", nil, err
		}
		cidrs = c
	}
	if ttl == 0 {
		// As Vault: a token that never expires is not CIDR-bound.
		cidrs = nil
	}

	display := "token"
	if req.DisplayName != "" {
		display = strings.TrimSuffix(displayNameSanitize.ReplaceAllString("token-"+req.DisplayName, "-"), "-")
	}
	path := req.Path
	if path == "" {
		path = "auth/token/create"
	}
	var meta map[string]string
	if len(req.Meta) > 0 {
		meta = make(map[string]string, len(req.Meta))
		for k, v := range req.Meta {
			meta[k] = v
		}
	}

	token := req.ID
	if token == "" {
		r, err := s.randomString(24)
		if err != nil {
			return "", nil, err
		}
		token = "hvs." + r
	}
	accessor, err := s.randomString(24)
	if err != nil {
		return "", nil, err
	}
	cubby, err := s.randomString(24)
	if err != nil {
		return "", nil, err
	}
	e := &Entry{
		ID:             hashToken(token),
		Accessor:       accessor,
		Policies:       pols,
		Path:           path,
		Meta:           meta,
		DisplayName:    display,
		NumUses:        numUses,
		CreationTime:   now,
		CreationTTL:    ttl,
		ExplicitMaxTTL: explicit,
		MaxTTL:         maxTTL,
		Period:         period,
		Renewable:      renewable,
		CubbyholeID:    cubby,
		Type:           "service",
		BoundCIDRs:     cidrs,
	}
	if role != nil {
		e.Role = role.Name
	}
	if ttl > 0 {
		e.ExpireTime = now.Add(ttl)
	}
	if !orphan {
		e.Parent = parent.ID
		// The parent must still be alive now that we hang a child on it.
		if _, err := s.live(ctx, parent.ID); err != nil {
			return "", nil, err
		}
	}
	if err := s.save(ctx, e); err != nil {
		return "", nil, err
	}
	return token, e, nil
}

// save registers the lease of a new entry, then stores the entry with its
// accessor and children index entries in one Apply. A crash in between
// leaves only a lease whose revoker finds nothing to do.
func (s *Store) save(ctx context.Context, e *Entry) error {
	lid := leaseID(e.ID)
	if !e.ExpireTime.IsZero() {
		data, _ := json.Marshal(leaseData{ID: e.ID})
		if err := s.leases.Register(ctx, &lease.Lease{
			ID: lid, Kind: LeaseKind, Path: e.Path,
			IssueTime: e.CreationTime, ExpireTime: e.ExpireTime, Data: data,
		}); err != nil {
			return fmt.Errorf("token: register lease: %w", err)
		}
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("token: encode entry: %w", err)
	}
	ops := []logical.Op{
		{Key: idPrefix + e.ID, Value: b},
		{Key: accessorPrefix + e.Accessor, Value: []byte(e.ID)},
	}
	if e.Parent != "" {
		ops = append(ops, logical.Op{Key: parentPrefix + e.Parent + "/" + e.ID, Value: []byte{}})
	}
	if err := s.store.Apply(ctx, ops); err != nil {
		if !e.ExpireTime.IsZero() {
			if ferr := s.leases.Forget(ctx, lid); ferr != nil {
				s.log.WarnContext(ctx, "token: could not drop the lease of a token that was not stored", "lease_id", lid, "error", ferr)
			}
		}
		return fmt.Errorf("token: store entry: %w", err)
	}
	return nil
}

// leaseData is the Data of a token's lease.
type leaseData struct {
	ID string `json:"token_id"`
}
