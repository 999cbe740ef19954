package declarative

import (
	"context"
	"fmt"
	"maps"
	"strings"
)

// Target executes changes; the core implements it over its mount table,
// auth table, policy store and audit broker (and the CLI's dry run does
// not). Each method applies one object of any Kind and switches on
// o.Kind:
//
//   - Create: mount (sys/mounts/<path>), enable auth (sys/auth/<path>),
//     write policy (sys/policies/acl/<name>), enable audit
//     (sys/audit/<path>) with o's settings.
//   - Update: for mount and auth, tune description and Config (and
//     Options such as the kv version); for a policy, rewrite its text; for
//     an audit device, disable and enable it again with the new options.
//   - Delete: unmount (revoking its leases), disable auth, delete the
//     policy, disable the audit device.
//
// Errors are returned as they are; Apply wraps them with the object.
type Target interface {
	Create(ctx context.Context, o Object) error
	Update(ctx context.Context, old, new Object) error
	Delete(ctx context.Context, o Object) error
}

// Apply runs changes in order through t and returns the new owned Set:
// owned plus what was created, minus what was deleted or forgotten.
// Conflicts are skipped. It stops at the first error and returns the Set
// as it stands then (what already happened stays owned, so it is not
// orphaned) along with the error; the caller persists the Set either way
// and a later Apply resumes. owned is not modified.
func Apply(ctx context.Context, t Target, owned Set, changes []Change) (Set, error) {
	next := maps.Clone(owned)
	if next == nil {
		next = Set{}
	}
	for _, c := range changes {
		var err error
		switch c.Op {
		case Create:
			if err = t.Create(ctx, *c.New); err == nil {
				next[c.Key] = true
			}
		case Update:
			err = t.Update(ctx, *c.Old, *c.New)
		case Delete:
			if err = t.Delete(ctx, *c.Old); err == nil {
				delete(next, c.Key)
			}
		case Forget:
			delete(next, c.Key)
		case Conflict:
		default:
			err = fmt.Errorf("unknown change %q", c.Op)
		}
		if err != nil {
			return next, fmt.Errorf("declarative: %s %s: %w", c.Op, c.Key, err)
		}
	}
	return next, nil
}

// Render writes a plan for people, one line per change ("+ create mount
// secret/ (kv)"), and "no changes" for an empty plan. Policy texts and
// option values are not shown, only which settings change.
func Render(changes []Change) string {
	if len(changes) == 0 {
		return "No changes: the server matches the configuration.\n"
	}
	var b strings.Builder
	sign := map[Op]string{Create: "+", Update: "~", Delete: "-", Conflict: "!", Forget: "."}
	for _, c := range changes {
		fmt.Fprintf(&b, "%s %s %s %s", sign[c.Op], c.Op, c.Key.Kind, c.Key.Name)
		switch {
		case c.Op == Create && c.New.Type != "":
			fmt.Fprintf(&b, " (%s)", c.New.Type)
		case c.Op == Update:
			fmt.Fprintf(&b, " (%s)", strings.Join(diffFields(*c.Old, *c.New), ", "))
		case c.Op == Conflict:
			fmt.Fprintf(&b, ": %s", c.Reason)
		case c.Op == Forget:
			b.WriteString(" (already gone; no longer owned)")
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func diffFields(old, new Object) []string {
	var out []string
	if old.Text != new.Text {
		out = append(out, "text")
	}
	if new.Description != "" && old.Description != new.Description {
		out = append(out, "description")
	}
	for _, m := range []struct {
		name       string
		have, want map[string]string
	}{{"options", old.Options, new.Options}, {"config", old.Config, new.Config}} {
		for _, k := range sortedKeys(m.want) {
			if m.have[k] != m.want[k] {
				out = append(out, m.name+"."+k)
			}
		}
	}
	return out
}
