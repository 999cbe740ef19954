package policy

import (
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	hcljson "github.com/hashicorp/hcl/v2/json"
	"github.com/zclconf/go-cty/cty"

	"github.com/coffer-dev/coffer/internal/logical"
)

// Policy is a parsed ACL policy. Build one with Parse, RootPolicy or
// DefaultPolicy; a Policy is not modified after that, so it may be shared
// between goroutines.
type Policy struct {
	// Name is the policy's name ("root", "default", "app-read").
	Name string
	// Rules are the path rules in the order they were written.
	Rules []Rule

	// root is set only by RootPolicy: a policy named "root" read from
	// text grants nothing special.
	root bool
}

// Rule is one `path "..." { ... }` block.
type Rule struct {
	// Path is the rule's path as written, without a leading "/": exact,
	// ending in "*" (a prefix glob), or with "+" segments.
	Path string
	// Capabilities are sorted and without duplicates; a deny rule has
	// exactly ["deny"]. May be empty: the rule then matches and grants
	// nothing.
	Capabilities []string
	// Deny is set when the rule denies everything on its path.
	Deny bool
	// MinWrappingTTL and MaxWrappingTTL are parsed and kept, not enforced.
	MinWrappingTTL time.Duration
	MaxWrappingTTL time.Duration
}

// ParseError is returned by Parse. Line and Column are 1-based and point
// at the offending text; they are 0 when the error has no position.
type ParseError struct {
	Line, Column int
	Message      string
}

func (e *ParseError) Error() string {
	if e.Line == 0 {
		return e.Message
	}
	return fmt.Sprintf("%d:%d: %s", e.Line, e.Column, e.Message)
}

func errorAt(r *hcl.Range, format string, args ...any) *ParseError {
	e := &ParseError{Message: fmt.Sprintf(format, args...)}
	if r != nil {
		e.Line, e.Column = r.Start.Line, r.Start.Column
	}
	return e
}

func diagError(diags hcl.Diagnostics) *ParseError {
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		return errorAt(d.Subject, "%s", msg)
	}
	return nil
}

var rootSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "name"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "path", LabelNames: []string{"path"}}},
}

var pathSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "capabilities"},
		{Name: "policy"},
		{Name: "min_wrapping_ttl"},
		{Name: "max_wrapping_ttl"},
		{Name: "comment"},
		// Known to Vault, refused here with a clear message.
		{Name: "allowed_parameters"},
		{Name: "denied_parameters"},
		{Name: "required_parameters"},
		{Name: "mfa_methods"},
		{Name: "control_group"},
		{Name: "subscribe_event_types"},
	},
}

// unsupported are Vault's rule attributes that Coffer does not enforce
// yet. Accepting and ignoring them would grant more than their author
// meant, so Parse refuses them.
var unsupported = []string{
	"allowed_parameters", "denied_parameters", "required_parameters",
	"mfa_methods", "control_group", "subscribe_event_types",
}

// legacyPolicies are the capabilities of the pre-0.9 `policy = "..."`
// attribute, which Vault still accepts.
var legacyPolicies = map[string][]Capability{
	"deny":  {Deny},
	"read":  {Read, List},
	"write": {Create, Read, Update, Delete, List},
	"sudo":  {Create, Read, Update, Delete, List, Sudo},
}

// Parse parses src, an ACL policy in HCL or in HCL's JSON form (any text
// whose first non-blank character is "{"), into a Policy named name.
//
// It returns a *ParseError naming the line and column of the first
// problem: a syntax error, an unknown block or attribute, an unknown
// capability, a "*" not at the end of a path, or one of the rule
// attributes Coffer does not enforce yet (allowed_parameters,
// denied_parameters, required_parameters, mfa_methods, control_group,
// subscribe_event_types).
func Parse(name, src string) (*Policy, error) {
	if !utf8.ValidString(src) {
		return nil, &ParseError{Message: "policy is not valid UTF-8"}
	}
	var (
		file  *hcl.File
		diags hcl.Diagnostics
	)
	if strings.HasPrefix(strings.TrimSpace(src), "{") {
		file, diags = hcljson.Parse([]byte(src), name)
	} else {
		file, diags = hclsyntax.ParseConfig([]byte(src), name, hcl.InitialPos)
	}
	if err := diagError(diags); err != nil {
		return nil, err
	}
	content, diags := file.Body.Content(rootSchema)
	if err := diagError(diags); err != nil {
		return nil, err
	}
	if a, ok := content.Attributes["name"]; ok {
		// Vault accepts and ignores a name inside the text.
		if _, err := stringValue(a); err != nil {
			return nil, err
		}
	}
	p := &Policy{Name: name}
	for _, b := range content.Blocks {
		r, err := parseRule(b)
		if err != nil {
			return nil, err
		}
		p.Rules = append(p.Rules, r)
	}
	return p, nil
}

func parseRule(b *hcl.Block) (Rule, error) {
	labelRange := &b.LabelRanges[0]
	path := strings.TrimLeft(b.Labels[0], "/")
	if err := checkRulePath(path); err != nil {
		return Rule{}, errorAt(labelRange, "path %q: %s", b.Labels[0], err)
	}
	content, diags := b.Body.Content(pathSchema)
	if err := diagError(diags); err != nil {
		return Rule{}, err
	}
	for _, name := range unsupported {
		if a, ok := content.Attributes[name]; ok {
			return Rule{}, errorAt(&a.NameRange, "path %q: %s is not supported yet", path, name)
		}
	}
	r := Rule{Path: path}
	var caps capSet
	if a, ok := content.Attributes["policy"]; ok {
		s, err := stringValue(a)
		if err != nil {
			return Rule{}, err
		}
		legacy, ok := legacyPolicies[s]
		if !ok {
			return Rule{}, errorAt(a.Expr.Range().Ptr(), "path %q: invalid policy %q", path, s)
		}
		for _, c := range legacy {
			caps |= c.bit()
		}
	}
	if a, ok := content.Attributes["capabilities"]; ok {
		list, err := stringListValue(a)
		if err != nil {
			return Rule{}, err
		}
		for _, s := range list {
			bit := Capability(s).bit()
			if bit == 0 {
				return Rule{}, errorAt(a.Expr.Range().Ptr(), "path %q: invalid capability %q", path, s)
			}
			caps |= bit
		}
	}
	if a, ok := content.Attributes["comment"]; ok {
		if _, err := stringValue(a); err != nil {
			return Rule{}, err
		}
	}
	for _, f := range []struct {
		name string
		dst  *time.Duration
	}{{"min_wrapping_ttl", &r.MinWrappingTTL}, {"max_wrapping_ttl", &r.MaxWrappingTTL}} {
		if a, ok := content.Attributes[f.name]; ok {
			d, err := durationValue(a)
			if err != nil {
				return Rule{}, err
			}
			*f.dst = d
		}
	}
	if r.MaxWrappingTTL != 0 && r.MaxWrappingTTL < r.MinWrappingTTL {
		return Rule{}, errorAt(labelRange, "path %q: max_wrapping_ttl cannot be less than min_wrapping_ttl", path)
	}
	if caps&capDeny != 0 {
		caps = capDeny
		r.Deny = true
	}
	r.Capabilities = caps.names()
	return r, nil
}

// checkRulePath reports a path no request can be meant to match.
func checkRulePath(p string) error {
	if i := strings.IndexByte(p, '*'); i >= 0 && i != len(p)-1 {
		return fmt.Errorf(`"*" is only allowed at the end of a path; use "+" for one segment`)
	}
	for _, r := range p {
		if unicode.IsControl(r) {
			return fmt.Errorf("control characters are not allowed")
		}
	}
	return nil
}

func value(a *hcl.Attribute) (cty.Value, error) {
	v, diags := a.Expr.Value(nil)
	if err := diagError(diags); err != nil {
		return cty.NilVal, err
	}
	if !v.IsWhollyKnown() || v.IsNull() {
		return cty.NilVal, errorAt(&a.Range, "%s must be set to a value", a.Name)
	}
	return v, nil
}

func stringValue(a *hcl.Attribute) (string, error) {
	v, err := value(a)
	if err != nil {
		return "", err
	}
	if v.Type() != cty.String {
		return "", errorAt(&a.Range, "%s must be a string", a.Name)
	}
	return v.AsString(), nil
}

func stringListValue(a *hcl.Attribute) ([]string, error) {
	v, err := value(a)
	if err != nil {
		return nil, err
	}
	t := v.Type()
	if !t.IsTupleType() && !t.IsListType() && !t.IsSetType() {
		return nil, errorAt(&a.Range, "%s must be a list of strings", a.Name)
	}
	var out []string
	for _, e := range v.AsValueSlice() {
		if e.IsNull() || e.Type() != cty.String {
			return nil, errorAt(&a.Range, "%s must be a list of strings", a.Name)
		}
		out = append(out, e.AsString())
	}
	return out, nil
}

// maxWrappingTTL bounds the wrapping TTLs so that they fit a Duration.
const maxWrappingTTL = 100 * 365 * 24 * time.Hour

// durationValue reads a number of seconds or a duration string ("90s",
// "1h", "7d"), as Vault does.
func durationValue(a *hcl.Attribute) (time.Duration, error) {
	v, err := value(a)
	if err != nil {
		return 0, err
	}
	var d time.Duration
	switch v.Type() {
	case cty.Number:
		bf := v.AsBigFloat()
		n, acc := bf.Int64()
		if acc != big.Exact || n < 0 || n > int64(maxWrappingTTL/time.Second) {
			return 0, errorAt(&a.Range, "%s must be a whole number of seconds", a.Name)
		}
		d = time.Duration(n) * time.Second
	case cty.String:
		s := v.AsString()
		if len(s) > 32 {
			return 0, errorAt(&a.Range, "%s is not a valid duration", a.Name)
		}
		d, err = logical.ParseDuration(s)
		if err != nil || d < 0 || d > maxWrappingTTL {
			return 0, errorAt(&a.Range, "%s is not a valid duration", a.Name)
		}
	default:
		return 0, errorAt(&a.Range, "%s must be a duration", a.Name)
	}
	return d, nil
}

// String renders p as canonical HCL: one block per rule, in order, with
// the rule's sorted capabilities. Parse(p.Name, p.String()) gives a policy
// equal to p. The root policy renders as "".
func (p *Policy) String() string {
	var b strings.Builder
	for i, r := range p.Rules {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString("path ")
		b.WriteString(quote(r.Path))
		b.WriteString(" {\n  capabilities = [")
		for i, c := range r.Capabilities {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(quote(c))
		}
		b.WriteString("]\n")
		if r.MinWrappingTTL != 0 {
			fmt.Fprintf(&b, "  min_wrapping_ttl = %q\n", r.MinWrappingTTL.String())
		}
		if r.MaxWrappingTTL != 0 {
			fmt.Fprintf(&b, "  max_wrapping_ttl = %q\n", r.MaxWrappingTTL.String())
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// quote returns s as an HCL quoted string literal, escaping what HCL
// would otherwise read as an escape or a template sequence.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case (r == '$' || r == '%') && strings.HasPrefix(s[i+1:], "{"):
			b.WriteRune(r)
			b.WriteRune(r)
		case !unicode.IsPrint(r) && r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		case !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\U%08x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// Equal reports whether p and q have the same name and the same rules in
// the same order.
func (p *Policy) Equal(q *Policy) bool {
	if p == nil || q == nil {
		return p == q
	}
	return p.Name == q.Name && p.root == q.root && slices.EqualFunc(p.Rules, q.Rules, Rule.Equal)
}

// Equal reports whether r and s are the same rule.
func (r Rule) Equal(s Rule) bool {
	return r.Path == s.Path && r.Deny == s.Deny &&
		r.MinWrappingTTL == s.MinWrappingTTL && r.MaxWrappingTTL == s.MaxWrappingTTL &&
		slices.Equal(r.Capabilities, s.Capabilities)
}
