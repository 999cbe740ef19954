package policy

import (
	"path"
	"strings"

	"github.com/coffer-dev/coffer/internal/logical"
)

// ACL is the compiled union of a token's policies. It is immutable and
// safe for concurrent use.
type ACL struct {
	root bool
	// exact holds the rules without wildcards, by path.
	exact map[string]capSet
	// prefix holds the rules ending in "*" without "+" segments, by path
	// without the "*"; maxPrefix is the longest such key.
	prefix    map[string]capSet
	maxPrefix int
	// segment holds the rules with "+" segments.
	segment []*segmentRule
}

// segmentRule is a compiled rule with "+" segments.
type segmentRule struct {
	path      string   // as written, the merge key
	parts     []string // path without its "*", split at "/"
	isPrefix  bool     // the path ends in "*"
	candidate candidate
}

// candidate describes a matching non-exact rule for the priority order.
type candidate struct {
	firstWildcard int    // byte offset of the first "+" segment or of the "*"
	isPrefix      bool   // ends in "*"
	wildcards     int    // number of "+" segments
	path          string // without the "*"
	caps          capSet
}

// beats reports whether c has a higher priority than d: Vault's order.
func (c *candidate) beats(d *candidate) bool {
	if c.firstWildcard != d.firstWildcard {
		return c.firstWildcard > d.firstWildcard
	}
	if c.isPrefix != d.isPrefix {
		return !c.isPrefix
	}
	if c.wildcards != d.wildcards {
		return c.wildcards < d.wildcards
	}
	if len(c.path) != len(d.path) {
		return len(c.path) > len(d.path)
	}
	return c.path > d.path
}

// merge folds the capabilities of another rule with the same path into
// old: a deny in either wins, otherwise they are unioned.
func merge(old, add capSet) capSet {
	if (old|add)&capDeny != 0 {
		return capDeny
	}
	return old | add
}

// NewACL compiles policies into an ACL. Nil policies are skipped. If one
// of them is RootPolicy(), the ACL is the root ACL, which allows
// everything. Rules with the same path are merged (see the package doc).
func NewACL(policies ...*Policy) *ACL {
	a := &ACL{exact: map[string]capSet{}, prefix: map[string]capSet{}}
	segments := map[string]*segmentRule{}
	for _, p := range policies {
		if p == nil {
			continue
		}
		if p.root {
			a.root = true
		}
		for _, r := range p.Rules {
			var caps capSet
			for _, c := range r.Capabilities {
				caps |= Capability(c).bit()
			}
			hasPlus := hasPlusSegment(r.Path)
			switch {
			case hasPlus:
				if s, ok := segments[r.Path]; ok {
					s.candidate.caps = merge(s.candidate.caps, caps)
					continue
				}
				s := newSegmentRule(r.Path, caps)
				segments[r.Path] = s
				a.segment = append(a.segment, s)
			case strings.HasSuffix(r.Path, "*"):
				key := strings.TrimSuffix(r.Path, "*")
				old, ok := a.prefix[key]
				if ok {
					caps = merge(old, caps)
				}
				a.prefix[key] = caps
				a.maxPrefix = max(a.maxPrefix, len(key))
			default:
				if old, ok := a.exact[r.Path]; ok {
					caps = merge(old, caps)
				}
				a.exact[r.Path] = caps
			}
		}
	}
	return a
}

func hasPlusSegment(p string) bool {
	for s := range strings.SplitSeq(strings.TrimSuffix(p, "*"), "/") {
		if s == "+" {
			return true
		}
	}
	return false
}

func newSegmentRule(p string, caps capSet) *segmentRule {
	s := &segmentRule{path: p}
	wc := p
	if strings.HasSuffix(wc, "*") {
		s.isPrefix = true
		wc = strings.TrimSuffix(wc, "*")
	}
	s.parts = strings.Split(wc, "/")
	s.candidate = candidate{isPrefix: s.isPrefix, path: wc, caps: caps, firstWildcard: -1}
	off := 0
	for _, part := range s.parts {
		if part == "+" {
			if s.candidate.firstWildcard < 0 {
				s.candidate.firstWildcard = off
			}
			s.candidate.wildcards++
		}
		off += len(part) + 1
	}
	return s
}

// match reports whether the rule matches a path split into parts.
func (s *segmentRule) match(parts []string) bool {
	if len(parts) < len(s.parts) || (!s.isPrefix && len(parts) != len(s.parts)) {
		return false
	}
	last := len(s.parts) - 1
	for i, want := range s.parts {
		switch {
		case want == "+", want == parts[i]:
		case s.isPrefix && i == last && strings.HasPrefix(parts[i], want):
		default:
			return false
		}
	}
	return true
}

// nonExact returns the capabilities of the highest-priority wildcard rule
// matching p.
func (a *ACL) nonExact(p string) (capSet, bool) {
	var best *candidate
	for i := min(len(p), a.maxPrefix); i >= 0; i-- {
		if caps, ok := a.prefix[p[:i]]; ok {
			best = &candidate{firstWildcard: i, isPrefix: true, path: p[:i], caps: caps}
			break
		}
	}
	if len(a.segment) > 0 {
		parts := strings.Split(p, "/")
		for _, s := range a.segment {
			if s.match(parts) && (best == nil || s.candidate.beats(best)) {
				best = &s.candidate
			}
		}
	}
	if best == nil {
		return 0, false
	}
	return best.caps, true
}

// lookup returns the capabilities of the rule that decides a request on
// p, a cleaned path; list selects Vault's extra steps for LIST requests.
func (a *ACL) lookup(p string, list bool) (capSet, bool) {
	if caps, ok := a.exact[p]; ok {
		return caps, true
	}
	if list {
		trimmed := strings.TrimSuffix(p, "/")
		if caps, ok := a.exact[trimmed]; ok {
			return caps, true
		}
		if trimmed != p {
			if caps, ok := a.nonExact(trimmed); ok {
				return caps, true
			}
		}
	}
	return a.nonExact(p)
}

// IsRoot reports whether a is the root ACL.
func (a *ACL) IsRoot() bool { return a.root }

// Capabilities returns what a grants on path, sorted by name, as
// sys/capabilities reports it: ["root"] for the root ACL, ["deny"] when no
// rule matches, when the deciding rule denies, or when it grants nothing.
// Like Vault, it matches path the way a LIST request is matched.
func (a *ACL) Capabilities(path string) []string {
	if a.root {
		return []string{string(Root)}
	}
	caps, _ := a.lookup(CleanPath(path), true)
	if caps == 0 || caps&capDeny != 0 {
		return []string{string(Deny)}
	}
	return caps.names()
}

// Allowed reports whether c is among Capabilities(path): the same
// matching decides both. It is never true for Deny or Root; for the root
// ACL it is true for every other capability. To authorize a request, use
// AllowedOperation, which matches non-LIST requests without Vault's LIST
// steps (the two differ only on paths ending in "/").
func (a *ACL) Allowed(c Capability, path string) bool {
	bit := c.bit()
	if bit == 0 || bit == capDeny {
		return false
	}
	if a.root {
		return true
	}
	caps, _ := a.lookup(CleanPath(path), true)
	return caps&capDeny == 0 && caps&bit != 0
}

// AllowedOperation reports whether a allows op on path, and whether the
// deciding rule grants sudo (which the core requires on root-protected
// paths such as sys/audit). For a list operation, path is given a
// trailing "/" first, as Vault's HTTP layer does. The root ACL allows
// everything, with sudo. An operation policies know nothing of is denied.
func (a *ACL) AllowedOperation(op logical.Operation, path string) (allowed, sudo bool) {
	if a.root {
		return true, true
	}
	need := operationCapability(op)
	if need == 0 {
		return false, false
	}
	p := CleanPath(path)
	list := op == logical.ListOperation
	if list && p != "" && !strings.HasSuffix(p, "/") {
		p += "/"
	}
	caps, _ := a.lookup(p, list)
	if caps&capDeny != 0 {
		return false, false
	}
	return caps&need != 0, caps&capSudo != 0
}

// CleanPath returns the path a request on p is checked against: without
// leading "/", with "." and ".." segments resolved and repeated "/"
// collapsed, and with its trailing "/" if it had one (and is not empty).
// The core should route requests by the same cleaned path.
func CleanPath(p string) string {
	if !needsClean(p) {
		return p
	}
	c := path.Clean("/" + p)[1:]
	if c != "" && strings.HasSuffix(p, "/") {
		c += "/"
	}
	return c
}

func needsClean(p string) bool {
	if strings.HasPrefix(p, "/") || strings.Contains(p, "//") {
		return true
	}
	for s := range strings.SplitSeq(p, "/") {
		if s == "." || s == ".." {
			return true
		}
	}
	return false
}

// Decision says which rule of an ACL decides a path, for "who can read
// this?" reports: Rule is the deciding rule's path as written ("secret/*"),
// Capabilities what it grants (["deny"] for a deny), and Matched is false
// when no rule matches (nothing is granted).
type Decision struct {
	Rule         string
	Capabilities []string
	Matched      bool
}

// Decide reports the rule that decides a non-LIST request on path.
func (a *ACL) Decide(path string) Decision {
	if a.root {
		return Decision{Rule: "*", Capabilities: []string{string(Root)}, Matched: true}
	}
	p := CleanPath(path)
	if caps, ok := a.exact[p]; ok {
		return decision(p, caps)
	}
	var best *candidate
	var bestRule string
	for i := min(len(p), a.maxPrefix); i >= 0; i-- {
		if caps, ok := a.prefix[p[:i]]; ok {
			best = &candidate{firstWildcard: i, isPrefix: true, path: p[:i], caps: caps}
			bestRule = p[:i] + "*"
			break
		}
	}
	parts := strings.Split(p, "/")
	for _, s := range a.segment {
		if s.match(parts) && (best == nil || s.candidate.beats(best)) {
			best, bestRule = &s.candidate, s.path
		}
	}
	if best == nil {
		return Decision{Capabilities: []string{string(Deny)}}
	}
	return decision(bestRule, best.caps)
}

func decision(rule string, caps capSet) Decision {
	if caps == 0 || caps&capDeny != 0 {
		return Decision{Rule: rule, Capabilities: []string{string(Deny)}, Matched: true}
	}
	return Decision{Rule: rule, Capabilities: caps.names(), Matched: true}
}
