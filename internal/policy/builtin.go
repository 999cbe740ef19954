package policy

// The names of the built-in policies.
const (
	RootName    = "root"
	DefaultName = "default"
)

// RootPolicy returns the root policy: every capability, sudo included, on
// every path. It has no rules and no text; an ACL that includes it is the
// root ACL.
func RootPolicy() *Policy {
	return &Policy{Name: RootName, root: true}
}

// DefaultPolicyText is the text of the built-in default policy, Vault's
// (and OpenBao's): what every token needs to manage itself, its cubbyhole
// and response wrapping. The identity paths are Vault's templated paths;
// Coffer has no identity store, so they match nothing useful.
const DefaultPolicyText = `
# Tokens may look up their own properties.
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Tokens may renew themselves.
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Tokens may revoke themselves.
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# A token may ask for its own capabilities on a path.
path "sys/capabilities-self" {
    capabilities = ["update"]
}

# A token may read its own entity, by id or by name.
path "identity/entity/id/{{identity.entity.id}}" {
  capabilities = ["read"]
}
path "identity/entity/name/{{identity.entity.name}}" {
  capabilities = ["read"]
}

# A token may read the ACL that results from all its policies (for UIs; the
# format is internal and may change).
path "sys/internal/ui/resultant-acl" {
    capabilities = ["read"]
}

# A token may renew a lease whose id it sends in the body (old and new
# paths).
path "sys/renew" {
    capabilities = ["update"]
}
path "sys/leases/renew" {
    capabilities = ["update"]
}

# A token may look up a lease whose id it already knows.
path "sys/leases/lookup" {
    capabilities = ["update"]
}

# A token owns its cubbyhole.
path "cubbyhole/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}

# A token may wrap values in a response-wrapping token.
path "sys/wrapping/wrap" {
    capabilities = ["update"]
}

# A token may look up the creation time and TTL of a wrapping token.
path "sys/wrapping/lookup" {
    capabilities = ["update"]
}

# A token may unwrap a wrapping token.
path "sys/wrapping/unwrap" {
    capabilities = ["update"]
}

# General-purpose tools.
path "sys/tools/hash" {
    capabilities = ["update"]
}
path "sys/tools/hash/*" {
    capabilities = ["update"]
}

# Requests to the authorization endpoint of OIDC providers.
path "identity/oidc/provider/+/authorize" {
    capabilities = ["read", "update"]
}
`

// DefaultPolicy returns the built-in default policy, parsed from
// DefaultPolicyText.
func DefaultPolicy() *Policy {
	p, err := Parse(DefaultName, DefaultPolicyText)
	if err != nil {
		panic("policy: the built-in default policy does not parse: " + err.Error())
	}
	return p
}
