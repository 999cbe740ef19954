package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/coffer-dev/coffer/internal/auth/tokenparams"
	"github.com/coffer-dev/coffer/internal/logical"
)

// Role is a token role (auth/token/roles/<name>): a template for tokens
// created through create/<name>.
type Role struct {
	Name               string   `json:"name"`
	AllowedPolicies    []string `json:"allowed_policies"`
	DisallowedPolicies []string `json:"disallowed_policies"`
	Orphan             bool     `json:"orphan"`
	Renewable          bool     `json:"renewable"`
	PathSuffix         string   `json:"path_suffix"`
	// TokenPeriod makes tokens periodic.
	TokenPeriod          time.Duration `json:"token_period"`
	TokenExplicitMaxTTL  time.Duration `json:"token_explicit_max_ttl"`
	TokenTTL             time.Duration `json:"token_ttl"`
	TokenMaxTTL          time.Duration `json:"token_max_ttl"`
	TokenNoDefaultPolicy bool          `json:"token_no_default_policy"`
	TokenNumUses         int           `json:"token_num_uses"`
	// TokenBoundCIDRs (canonical blocks) bind every token created through
	// the role, replacing the parent's; empty binds them to none.
	TokenBoundCIDRs []string `json:"token_bound_cidrs,omitempty"`
}

func validRoleName(name string) bool {
	return name != "" && !strings.ContainsAny(name, "/ \t\r\n") && name != "." && name != ".."
}

// Role returns the named role, or nil if there is none.
func (s *Store) Role(ctx context.Context, name string) (*Role, error) {
	if !validRoleName(name) {
		return nil, nil
	}
	b, err := s.store.Get(ctx, rolePrefix+name)
	if errors.Is(err, logical.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("token: get role: %w", err)
	}
	var r Role
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("token: decode role: %w", err)
	}
	return &r, nil
}

func (s *Store) putRole(ctx context.Context, r *Role) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("token: encode role: %w", err)
	}
	if err := s.store.Put(ctx, rolePrefix+r.Name, b); err != nil {
		return fmt.Errorf("token: put role: %w", err)
	}
	return nil
}

// roleRequest is the body of a write to roles/<name>. Fields left out keep
// their current value (or Vault's default for a new role).
type roleRequest struct {
	AllowedPolicies      *logical.StringList `json:"allowed_policies"`
	DisallowedPolicies   *logical.StringList `json:"disallowed_policies"`
	Orphan               *logical.Bool       `json:"orphan"`
	Renewable            *logical.Bool       `json:"renewable"`
	PathSuffix           *string             `json:"path_suffix"`
	TokenPeriod          *logical.Duration   `json:"token_period"`
	Period               *logical.Duration   `json:"period"`
	TokenExplicitMaxTTL  *logical.Duration   `json:"token_explicit_max_ttl"`
	ExplicitMaxTTL       *logical.Duration   `json:"explicit_max_ttl"`
	TokenTTL             *logical.Duration   `json:"token_ttl"`
	TokenMaxTTL          *logical.Duration   `json:"token_max_ttl"`
	TokenNoDefaultPolicy *logical.Bool       `json:"token_no_default_policy"`
	TokenNumUses         *logical.Int        `json:"token_num_uses"`
	TokenType            *string             `json:"token_type"`
	TokenBoundCIDRs      *logical.StringList `json:"token_bound_cidrs"`
	BoundCIDRs           *logical.StringList `json:"bound_cidrs"` // deprecated alias
}

// apply merges the request into r and validates the result.
func (q *roleRequest) apply(r *Role) error {
	if q.AllowedPolicies != nil {
		r.AllowedPolicies = sanitizePolicies(*q.AllowedPolicies)
	}
	if q.DisallowedPolicies != nil {
		r.DisallowedPolicies = sanitizePolicies(*q.DisallowedPolicies)
	}
	if q.Orphan != nil {
		r.Orphan = bool(*q.Orphan)
	}
	if q.Renewable != nil {
		r.Renewable = bool(*q.Renewable)
	}
	if q.PathSuffix != nil {
		p := strings.Trim(*q.PathSuffix, "/")
		if strings.Contains(p, "..") || strings.ContainsAny(p, " \t\r\n") {
			return invalid("path_suffix must not contain '..' or whitespace")
		}
		r.PathSuffix = p
	}
	setDur := func(dst *time.Duration, srcs ...*logical.Duration) {
		for _, s := range srcs {
			if s != nil {
				*dst = time.Duration(*s)
				return
			}
		}
	}
	setDur(&r.TokenPeriod, q.TokenPeriod, q.Period)
	setDur(&r.TokenExplicitMaxTTL, q.TokenExplicitMaxTTL, q.ExplicitMaxTTL)
	setDur(&r.TokenTTL, q.TokenTTL)
	setDur(&r.TokenMaxTTL, q.TokenMaxTTL)
	if q.TokenNoDefaultPolicy != nil {
		r.TokenNoDefaultPolicy = bool(*q.TokenNoDefaultPolicy)
	}
	if q.TokenNumUses != nil {
		if *q.TokenNumUses < 0 {
			return invalid("token_num_uses cannot be negative")
		}
		r.TokenNumUses = int(*q.TokenNumUses)
	}
	for _, v := range []*logical.StringList{q.TokenBoundCIDRs, q.BoundCIDRs} {
		if v != nil {
			cidrs, err := tokenparams.ParseCIDRs("token_bound_cidrs", *v)
			if err != nil {
				return err
			}
			r.TokenBoundCIDRs = cidrs
			break
		}
	}
	if q.TokenType != nil {
		switch *q.TokenType {
		case "", "service", "default", "default-service":
		default:
			return invalid("token_type %q is not supported; only service tokens are", *q.TokenType)
		}
	}
	if r.TokenMaxTTL > 0 && r.TokenTTL > r.TokenMaxTTL {
		return invalid("token_ttl cannot be greater than token_max_ttl")
	}
	return nil
}

// data is the role as roles/<name> returns it.
func (r *Role) data() map[string]any {
	nonNil := func(l []string) []string {
		if l == nil {
			return []string{}
		}
		return l
	}
	secs := func(d time.Duration) int64 { return int64(d / time.Second) }
	d := map[string]any{
		"name":                    r.Name,
		"allowed_policies":        nonNil(r.AllowedPolicies),
		"disallowed_policies":     nonNil(r.DisallowedPolicies),
		"orphan":                  r.Orphan,
		"renewable":               r.Renewable,
		"path_suffix":             r.PathSuffix,
		"period":                  secs(r.TokenPeriod),
		"token_period":            secs(r.TokenPeriod),
		"explicit_max_ttl":        secs(r.TokenExplicitMaxTTL),
		"token_explicit_max_ttl":  secs(r.TokenExplicitMaxTTL),
		"token_ttl":               secs(r.TokenTTL),
		"token_max_ttl":           secs(r.TokenMaxTTL),
		"token_no_default_policy": r.TokenNoDefaultPolicy,
		"token_num_uses":          r.TokenNumUses,
		"token_type":              "default-service",
	}
	if len(r.TokenBoundCIDRs) > 0 {
		// As Vault: present only when set.
		d["token_bound_cidrs"] = tokenparams.FormatCIDRs(r.TokenBoundCIDRs)
	}
	return d
}

// Roles lists the token roles with the policies their tokens may get
// (allowed_policies), for sys/access. It implements logical.RoleLister.
func (s *Store) Roles(ctx context.Context) ([]logical.RoleInfo, error) {
	names, err := s.store.List(ctx, rolePrefix)
	if err != nil {
		return nil, err
	}
	out := make([]logical.RoleInfo, 0, len(names))
	for _, n := range names {
		if strings.HasSuffix(n, "/") {
			continue
		}
		r, err := s.Role(ctx, n)
		if err != nil {
			return nil, err
		}
		if r == nil {
			continue
		}
		out = append(out, logical.RoleInfo{Name: r.Name, Policies: r.AllowedPolicies})
	}
	return out, nil
}
