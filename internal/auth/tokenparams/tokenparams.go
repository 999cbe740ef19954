// Package tokenparams holds Vault's common token parameters of an auth
// method's role or user (Vault's "tokenutil"): token_policies, token_ttl,
// token_max_ttl, token_explicit_max_ttl, token_period, token_num_uses,
// token_bound_cidrs, token_no_default_policy and token_type, with their
// deprecated aliases (policies, ttl, max_ttl, period, bound_cidrs).
//
// An auth method stores a Params in each role, embeds a Request in the
// role's write request and calls Apply, answers reads with Fill, and
// builds a login's logical.Auth with Auth, which refuses a login from
// outside token_bound_cidrs and carries them into the Auth so that the
// core binds the minted token to them (the core then refuses the token on
// every use from elsewhere). Everything here is pure: no storage, no state.
package tokenparams

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// Params are the token settings stored with a role or user, kept in the
// role's JSON under "token". The zero value is a role with no policies,
// no TTLs (the mount's defaults apply) and no address bounds.
type Params struct {
	Policies        []string      `json:"token_policies"`
	TTL             time.Duration `json:"token_ttl"`
	MaxTTL          time.Duration `json:"token_max_ttl"`
	ExplicitMaxTTL  time.Duration `json:"token_explicit_max_ttl"`
	Period          time.Duration `json:"token_period"`
	NumUses         int           `json:"token_num_uses"`
	BoundCIDRs      []string      `json:"token_bound_cidrs"`
	NoDefaultPolicy bool          `json:"token_no_default_policy"`
	Type            string        `json:"token_type"`
}

// Request is the part of a role or user write that sets Params: embed it
// in the endpoint's request struct and call Apply after Decode. A nil
// field is left unchanged. The unprefixed names (policies, ttl, max_ttl,
// period, bound_cidrs) are Vault's deprecated aliases; the token_ name
// wins when both are given.
type Request struct {
	TokenPolicies        *logical.StringList `json:"token_policies"`
	Policies             *logical.StringList `json:"policies"`
	TokenTTL             *logical.Duration   `json:"token_ttl"`
	TTL                  *logical.Duration   `json:"ttl"`
	TokenMaxTTL          *logical.Duration   `json:"token_max_ttl"`
	MaxTTL               *logical.Duration   `json:"max_ttl"`
	TokenExplicitMaxTTL  *logical.Duration   `json:"token_explicit_max_ttl"`
	TokenPeriod          *logical.Duration   `json:"token_period"`
	Period               *logical.Duration   `json:"period"`
	TokenNumUses         *logical.Int        `json:"token_num_uses"`
	TokenBoundCIDRs      *logical.StringList `json:"token_bound_cidrs"`
	BoundCIDRs           *logical.StringList `json:"bound_cidrs"`
	TokenNoDefaultPolicy *logical.Bool       `json:"token_no_default_policy"`
	TokenType            *string             `json:"token_type"`
}

func firstList(a, b *logical.StringList) *logical.StringList {
	if a != nil {
		return a
	}
	return b
}

func firstDuration(a, b *logical.Duration) *logical.Duration {
	if a != nil {
		return a
	}
	return b
}

// Apply sets p from r and validates the result. It returns a
// logical.Invalid error naming the field at fault; p may then be partly
// changed, so a caller must not store it.
func (r *Request) Apply(p *Params) error {
	if v := firstList(r.TokenPolicies, r.Policies); v != nil {
		p.Policies = NormalizePolicies(*v)
	}
	if v := firstDuration(r.TokenTTL, r.TTL); v != nil {
		p.TTL = time.Duration(*v)
	}
	if v := firstDuration(r.TokenMaxTTL, r.MaxTTL); v != nil {
		p.MaxTTL = time.Duration(*v)
	}
	if r.TokenExplicitMaxTTL != nil {
		p.ExplicitMaxTTL = time.Duration(*r.TokenExplicitMaxTTL)
	}
	if v := firstDuration(r.TokenPeriod, r.Period); v != nil {
		p.Period = time.Duration(*v)
	}
	if r.TokenNumUses != nil {
		if *r.TokenNumUses < 0 {
			return logical.Errorf(logical.Invalid, "token_num_uses cannot be negative")
		}
		p.NumUses = int(*r.TokenNumUses)
	}
	if v := firstList(r.TokenBoundCIDRs, r.BoundCIDRs); v != nil {
		cidrs, err := ParseCIDRs("token_bound_cidrs", *v)
		if err != nil {
			return err
		}
		p.BoundCIDRs = cidrs
	}
	if r.TokenNoDefaultPolicy != nil {
		p.NoDefaultPolicy = bool(*r.TokenNoDefaultPolicy)
	}
	if r.TokenType != nil {
		switch t := *r.TokenType; t {
		case "", "default", "service", "default-service":
			p.Type = t
		case "batch", "default-batch":
			return logical.Errorf(logical.Invalid, "token_type %q is not supported: batch tokens are not implemented", t)
		default:
			return logical.Errorf(logical.Invalid, "invalid token_type %q", t)
		}
	}
	if p.MaxTTL > 0 && p.TTL > p.MaxTTL {
		return logical.Errorf(logical.Invalid, "token_ttl should not be greater than token_max_ttl")
	}
	return nil
}

// NormalizePolicies lower-cases, trims, sorts and deduplicates policy
// names, as Vault does, dropping blank ones. It never returns nil.
func NormalizePolicies(in []string) []string {
	out := make([]string, 0, len(in))
	for _, p := range in {
		if p = strings.ToLower(strings.TrimSpace(p)); p != "" {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ParseCIDRs checks a list of CIDR blocks (a bare address is a /32 or
// /128; blank entries are dropped) and returns them in canonical form. A
// malformed entry is a logical.Invalid error naming field.
func ParseCIDRs(field string, in []string) ([]string, error) {
	var out []string
	for _, s := range in {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, logical.Errorf(logical.Invalid, "%s: %q is not a CIDR block or IP address", field, s)
			}
			s = netip.PrefixFrom(a, a.BitLen()).String()
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, logical.Errorf(logical.Invalid, "%s: %q is not a CIDR block or IP address", field, s)
		}
		out = append(out, p.Masked().String())
	}
	return out, nil
}

// RemoteAllowed reports whether the address of remote ("ip:port" or "ip")
// is in one of cidrs. An empty list allows every address; an unparsable
// remote address is allowed by none.
func RemoteAllowed(cidrs []string, remote string) bool {
	if len(cidrs) == 0 {
		return true
	}
	a, err := RemoteAddr(remote)
	if err != nil {
		return false
	}
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil && p.Contains(a) {
			return true
		}
	}
	return false
}

// FormatCIDRs returns canonical CIDR blocks as Vault shows a token's
// bound_cidrs: a block of one address (/32, /128) as the bare address
// ("127.0.0.1"), any other as it is ("10.0.0.0/8"). It returns nil for an
// empty list; an entry that does not parse is kept unchanged.
func FormatCIDRs(cidrs []string) []string {
	if len(cidrs) == 0 {
		return nil
	}
	out := make([]string, len(cidrs))
	for i, c := range cidrs {
		out[i] = c
		if p, err := netip.ParsePrefix(c); err == nil && p.IsSingleIP() {
			out[i] = p.Addr().String()
		}
	}
	return out
}

// RemoteAddr returns the IP address of "ip:port" or "ip", IPv4-mapped
// addresses unmapped. The error does not repeat remote.
func RemoteAddr(remote string) (netip.Addr, error) {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap(), nil
	}
	a, err := netip.ParseAddr(remote)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("bad remote address")
	}
	return a.Unmap(), nil
}

// Fill adds p's fields to m, a role or user read response, in Vault's
// shape: durations in seconds, empty lists as [], the type "default" when
// unset, and the policies also under the deprecated name "policies".
func (p *Params) Fill(m map[string]any) {
	pol := p.Policies
	if pol == nil {
		pol = []string{}
	}
	cidrs := p.BoundCIDRs
	if cidrs == nil {
		cidrs = []string{}
	}
	typ := p.Type
	if typ == "" {
		typ = "default"
	}
	m["token_policies"] = pol
	m["policies"] = pol
	m["token_ttl"] = int64(p.TTL / time.Second)
	m["token_max_ttl"] = int64(p.MaxTTL / time.Second)
	m["token_explicit_max_ttl"] = int64(p.ExplicitMaxTTL / time.Second)
	m["token_period"] = int64(p.Period / time.Second)
	m["token_num_uses"] = p.NumUses
	m["token_bound_cidrs"] = cidrs
	m["token_no_default_policy"] = p.NoDefaultPolicy
	m["token_type"] = typ
}

// ErrCIDR is the login failure (403) for a client outside
// token_bound_cidrs.
var ErrCIDR = &logical.Error{Code: logical.PermissionDenied, Message: "permission denied", Messages: []string{"permission denied", "login is not allowed from this address (token_bound_cidrs)"}}

// Auth returns a new login Auth for p (the caller adds metadata and a
// display name), or ErrCIDR when remote is outside token_bound_cidrs. Its
// MaxTTL is the lesser of token_max_ttl and token_explicit_max_ttl, and
// its BoundCIDRs are token_bound_cidrs (a copy), which the minted token
// keeps: the login is refused here from outside them, and every later use
// of the token is refused by the core.
func (p *Params) Auth(remote string) (*logical.Auth, error) {
	if !RemoteAllowed(p.BoundCIDRs, remote) {
		return nil, ErrCIDR
	}
	maxTTL := p.MaxTTL
	if p.ExplicitMaxTTL > 0 && (maxTTL == 0 || p.ExplicitMaxTTL < maxTTL) {
		maxTTL = p.ExplicitMaxTTL
	}
	return &logical.Auth{
		Policies:   append([]string(nil), p.Policies...),
		TTL:        p.TTL,
		MaxTTL:     maxTTL,
		Period:     p.Period,
		NumUses:    p.NumUses,
		Renewable:  true,
		BoundCIDRs: slices.Clone(p.BoundCIDRs),
	}, nil
}
