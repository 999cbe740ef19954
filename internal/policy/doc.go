// Package policy parses Vault's ACL policy language and evaluates it.
//
// A policy is a list of path rules, written in HCL or in its JSON form:
//
//	path "secret/data/app/*" {
//	  capabilities = ["read", "list"]
//	}
//	path "secret/data/app/admin" {
//	  capabilities = ["deny"]
//	}
//
//	{"path": {"secret/data/app/*": {"capabilities": ["read", "list"]}}}
//
// Parse turns the text into a Policy; Policy.String renders it back as
// canonical HCL. NewACL compiles the policies of a token into an ACL,
// which answers "may this token do op on path?".
//
// # Matching, exactly as Vault does it
//
// A rule's path is either exact ("secret/foo"), a prefix glob ending in "*"
// ("secret/fo*" matches "secret/foo/bar"), or contains "+" segments, each
// matching exactly one path segment ("secret/+/config"); "+" and a
// trailing "*" combine ("secret/+/app/*"). A "*" anywhere but at the end
// is rejected by Parse (Vault silently treats it as a literal character,
// which never matches what its author meant).
//
// Only one rule decides a request: the most specific rule that matches.
// An exact rule always wins. Otherwise, among the matching rules:
//
//  1. the rule whose first wildcard ("+" or "*") comes later wins;
//  2. then a rule without a trailing "*" beats one with it;
//  3. then the rule with fewer "+" segments wins;
//  4. then the longer rule (without its "*") wins;
//  5. then the lexically larger rule wins.
//
// Capabilities are never unioned across different rules: with
// `path "secret/*" {capabilities=["read"]}` and
// `path "secret/foo" {capabilities=["update"]}`, "secret/foo" can be
// updated but not read. Rules with the very same path string, in one
// policy or across the policies of an ACL, are merged into one rule whose
// capabilities are the union of theirs — unless one of them says "deny",
// in which case the merged rule denies everything.
//
// A LIST request for "p/" is first matched, as in Vault, against the exact
// rule "p/", then the exact rule "p", then the wildcard rules that match
// "p", and only if none of those matches, against the wildcard rules that
// match "p/". (So `path "secret/metadata/*"` allows LIST secret/metadata/,
// but a `path "secret/*"` rule in the same ACL takes precedence over it for
// that request.)
//
// Request paths are cleaned before matching ("a//b/../c" is "a/c"), and
// a leading "/" is ignored; a trailing "/" is kept, since Vault's rules
// tell "p" from "p/".
//
// The built-in policies are RootPolicy (everything, including sudo) and
// DefaultPolicy (Vault's token self-service rules).
//
// Not supported yet: allowed_parameters, denied_parameters,
// required_parameters (Parse rejects policies that use them, so nothing
// is silently granted), identity templating in paths, and control groups
// and MFA (Vault Enterprise). min_wrapping_ttl and max_wrapping_ttl are
// parsed and kept but not enforced.
package policy
