package policy

import (
	"sort"

	"github.com/coffer-dev/coffer/internal/logical"
)

// Capability is what a policy rule grants on a path. The names are
// Vault's; they are also what sys/capabilities returns.
type Capability string

// The capabilities a policy may grant. Root is never written in a policy:
// it is what ACL.Capabilities reports for the root policy.
const (
	Deny      Capability = "deny"
	Create    Capability = "create"
	Read      Capability = "read"
	Update    Capability = "update"
	Patch     Capability = "patch"
	Delete    Capability = "delete"
	List      Capability = "list"
	Sudo      Capability = "sudo"
	Subscribe Capability = "subscribe"
	Recover   Capability = "recover"
	Root      Capability = "root"
)

// capSet is a set of capabilities as a bit mask.
type capSet uint16

const (
	capDeny capSet = 1 << iota
	capCreate
	capRead
	capUpdate
	capPatch
	capDelete
	capList
	capSudo
	capSubscribe
	capRecover
)

// capBits maps the capabilities a policy may name to their bit.
var capBits = map[Capability]capSet{
	Deny:      capDeny,
	Create:    capCreate,
	Read:      capRead,
	Update:    capUpdate,
	Patch:     capPatch,
	Delete:    capDelete,
	List:      capList,
	Sudo:      capSudo,
	Subscribe: capSubscribe,
	Recover:   capRecover,
}

// bit returns the bit of c, or 0 for a name a policy may not grant.
func (c Capability) bit() capSet { return capBits[c] }

// names returns the capabilities in s, sorted by name.
func (s capSet) names() []string {
	var out []string
	for c, b := range capBits {
		if s&b != 0 {
			out = append(out, string(c))
		}
	}
	sort.Strings(out)
	return out
}

// operationCapability is the capability a logical operation needs.
func operationCapability(op logical.Operation) capSet {
	switch op {
	case logical.ReadOperation:
		return capRead
	case logical.CreateOperation:
		return capCreate
	case logical.UpdateOperation:
		return capUpdate
	case logical.PatchOperation:
		return capPatch
	case logical.DeleteOperation:
		return capDelete
	case logical.ListOperation:
		return capList
	}
	return 0
}
