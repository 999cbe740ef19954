// Package declarative is Coffer's day-0 configuration: HCL files that
// describe mounts, auth methods, policies and audit devices, applied
// idempotently so a cluster is reproducible from Git without a root token.
//
//	mount "secret" {
//	  type        = "kv"
//	  description = "team secrets"
//	  options     = { version = "2" }
//	  config      = { default_lease_ttl = "1h" }
//	}
//	auth "kubernetes" { type = "kubernetes" }
//	policy "app" {
//	  text = <<EOT
//	path "secret/data/app/*" { capabilities = ["read"] }
//	EOT
//	}
//	audit "file" {
//	  type    = "file"
//	  options = { file_path = "/var/log/coffer/audit.log" }
//	}
//
// The package is pure: Load/Parse read files into a desired State; Plan
// compares it with the current State and the Set of objects this
// configuration created before ("owned"), and returns the Changes; Apply
// runs them through a Target (the core implements it) and returns the new
// owned Set, which the caller persists.
//
// Plan's rules: a desired object that does not exist is created (and
// becomes owned); an owned object that differs is updated; an owned object
// that left the files is deleted; an object that exists but was not
// created here is never touched: if the files describe it differently the
// Change is a Conflict, reported and skipped. Only settings the files name
// are compared, so server-side defaults are not differences. Changing an
// owned mount's or auth method's type is a Conflict too (it would destroy
// its data): remove it from the files, apply, then add it back.
package declarative

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kind is the kind of object.
type Kind string

// The kinds, in the order they are created (policies before the mounts
// and auth methods that name them; deletion runs in reverse).
const (
	Policy Kind = "policy"
	Audit  Kind = "audit"
	Mount  Kind = "mount"
	Auth   Kind = "auth"
)

var kindOrder = map[Kind]int{Policy: 0, Audit: 1, Mount: 2, Auth: 3}

// Key identifies an object: mount and auth paths and audit paths end in
// "/" ("secret/"), as sys/mounts lists them; policy names are lower case.
type Key struct {
	Kind Kind
	Name string
}

func (k Key) String() string { return string(k.Kind) + " " + k.Name }

// Object is one mount, auth method, policy or audit device.
type Object struct {
	Key
	Type        string            // mount, auth, audit
	Description string            // mount, auth, audit
	Options     map[string]string // mount, auth, audit
	Config      map[string]string // mount, auth (tune settings)
	Text        string            // policy
}

// State is a set of objects by key.
type State map[Key]Object

// Set is a set of keys: the objects a declarative configuration owns.
type Set map[Key]bool

// Op is what a Change does.
type Op string

const (
	Create Op = "create"
	Update Op = "update"
	Delete Op = "delete"
	// Conflict: the files and the server disagree on an object Plan may
	// not change. Apply skips it; the plan shows Reason.
	Conflict Op = "conflict"
	// Forget: an owned object is gone from both the files and the server;
	// Apply only drops it from the owned Set.
	Forget Op = "forget"
)

// Change is one step of a plan. Old is the current object (Update,
// Delete, Conflict), New the desired one (Create, Update, Conflict).
type Change struct {
	Op     Op
	Key    Key
	Old    *Object
	New    *Object
	Reason string // Conflict only
}

// ErrInvalid is returned (wrapped, with the position) for a file that is
// not valid declarative configuration.
var ErrInvalid = errors.New("declarative: invalid configuration")

// Plan returns the changes that take current to desired, touching only
// objects in owned (see the package doc). It is pure and deterministic:
// creates and updates first, by kind order and name, then deletes in
// reverse kind order, then conflicts and forgets.
func Plan(current, desired State, owned Set) []Change {
	var out []Change
	for k, d := range desired {
		d := d
		c, exists := current[k]
		switch {
		case !exists:
			out = append(out, Change{Op: Create, Key: k, New: &d})
		case covers(c, d):
			// Nothing to do, owned or not.
		case !owned[k]:
			c := c
			out = append(out, Change{Op: Conflict, Key: k, Old: &c, New: &d,
				Reason: "exists on the server and was not created by the declarative configuration"})
		case (k.Kind == Mount || k.Kind == Auth || k.Kind == Audit) && c.Type != d.Type:
			c := c
			out = append(out, Change{Op: Conflict, Key: k, Old: &c, New: &d,
				Reason: fmt.Sprintf("type changes from %q to %q: remove it from the files and apply first (its data is lost)", c.Type, d.Type)})
		default:
			c := c
			out = append(out, Change{Op: Update, Key: k, Old: &c, New: &d})
		}
	}
	for k := range owned {
		if _, ok := desired[k]; ok || !owned[k] {
			continue
		}
		if c, ok := current[k]; ok {
			c := c
			out = append(out, Change{Op: Delete, Key: k, Old: &c})
		} else {
			out = append(out, Change{Op: Forget, Key: k})
		}
	}
	slices.SortFunc(out, compareChanges)
	return out
}

var opPhase = map[Op]int{Create: 0, Update: 0, Delete: 1, Conflict: 2, Forget: 3}

func compareChanges(a, b Change) int {
	if d := opPhase[a.Op] - opPhase[b.Op]; d != 0 {
		return d
	}
	ka, kb := kindOrder[a.Key.Kind], kindOrder[b.Key.Kind]
	if a.Op == Delete {
		ka, kb = -ka, -kb
	}
	if d := ka - kb; d != 0 {
		return d
	}
	return strings.Compare(a.Key.Name, b.Key.Name)
}

// covers reports whether current already has every setting desired names.
func covers(current, desired Object) bool {
	if current.Type != desired.Type || current.Text != desired.Text {
		return false
	}
	if desired.Description != "" && current.Description != desired.Description {
		return false
	}
	sub := func(have, want map[string]string) bool {
		for k, v := range want {
			if !sameValue(have[k], v) {
				return false
			}
		}
		return true
	}
	return sub(current.Options, desired.Options) && sub(current.Config, desired.Config)
}

// sameValue compares settings as the server reports them: equal strings,
// or durations that are equal once "1h" and "3600" (seconds) are read.
func sameValue(have, want string) bool {
	if have == want {
		return true
	}
	h, ok1 := seconds(have)
	w, ok2 := seconds(want)
	return ok1 && ok2 && h == w
}

func seconds(s string) (time.Duration, bool) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Duration(n) * time.Second, true
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}

// Equal reports whether two objects are the same.
func (o Object) Equal(p Object) bool {
	return o.Key == p.Key && o.Type == p.Type && o.Description == p.Description && o.Text == p.Text &&
		maps.Equal(o.Options, p.Options) && maps.Equal(o.Config, p.Config)
}
