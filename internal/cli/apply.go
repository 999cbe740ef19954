package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/coffer-dev/coffer/api"
	"github.com/coffer-dev/coffer/internal/declarative"
	"github.com/spf13/cobra"
)

// applyCmd is "coffer operator apply --dry-run PATH": it loads the
// declarative configuration at PATH (a file or a directory of *.hcl),
// reads the server's current mounts, auth methods, policies and audit
// devices and the set the server's declarative configuration owns, and
// prints the plan. The server itself applies the configuration named by
// declarative_config after every unseal; this command only previews, so
// --dry-run is required.
func (a *app) applyCmd() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "apply --dry-run PATH",
		Short: "Show what the declarative configuration at PATH would change",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !dryRun {
				return usageErrorf("the server applies its declarative_config after every unseal; use --dry-run to preview the changes")
			}
			desired, err := declarative.Load(args[0])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			current, owned, known, err := ReadState(cmd.Context(), c)
			if err != nil {
				return err
			}
			if !known {
				fmt.Fprintln(a.env.stderr, "Note: the server does not report what its declarative configuration owns; no deletions are shown.")
			}
			fmt.Fprint(a.env.stdout, declarative.Render(declarative.Plan(current, desired, owned)))
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan without changing anything (required)")
	return cmd
}

// OwnedPath is the Coffer-only endpoint that lists the objects the
// server's declarative configuration created: GET returns
// {"data": {"owned": ["mount secret/", "policy app", ...]}}.
const OwnedPath = "sys/declarative/owned"

// ReadState reads the server's current declarative state with c: mounts
// (sys/mounts), auth methods (sys/auth), ACL policies (sys/policies/acl)
// and audit devices (sys/audit), and the owned set from OwnedPath. known
// is false when the server has no OwnedPath (404): owned is then empty.
// An audit endpoint that answers 404 counts as no audit devices. Other
// errors are returned as they are.
func ReadState(ctx context.Context, c *api.Client) (current declarative.State, owned declarative.Set, known bool, err error) {
	current = declarative.State{}
	for _, src := range []struct {
		kind declarative.Kind
		path string
	}{{declarative.Mount, "sys/mounts"}, {declarative.Auth, "sys/auth"}, {declarative.Audit, "sys/audit"}} {
		r, err := c.Read(ctx, src.path)
		if src.kind == declarative.Audit && errors.Is(err, api.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, false, fmt.Errorf("read %s: %w", src.path, err)
		}
		for name, v := range r.Data {
			m, ok := v.(map[string]any)
			if !ok {
				continue
			}
			o := declarative.Object{
				Key:         declarative.Key{Kind: src.kind, Name: strings.TrimPrefix(name, "/")},
				Type:        stringOf(m["type"]),
				Description: stringOf(m["description"]),
				Options:     stringMap(m["options"]),
			}
			if src.kind != declarative.Audit {
				o.Config = stringMap(m["config"])
			}
			current[o.Key] = o
		}
	}
	names, err := c.List(ctx, "sys/policies/acl")
	if err != nil && !errors.Is(err, api.ErrNotFound) {
		return nil, nil, false, fmt.Errorf("list policies: %w", err)
	}
	for _, n := range names {
		if n == "root" {
			continue
		}
		r, err := c.Read(ctx, "sys/policies/acl/"+n)
		if err != nil {
			return nil, nil, false, fmt.Errorf("read policy %s: %w", n, err)
		}
		k := declarative.Key{Kind: declarative.Policy, Name: n}
		current[k] = declarative.Object{Key: k, Text: stringOf(r.Data["policy"])}
	}
	owned = declarative.Set{}
	r, err := c.Read(ctx, OwnedPath)
	switch {
	case errors.Is(err, api.ErrNotFound):
		return current, owned, false, nil
	case err != nil:
		return nil, nil, false, fmt.Errorf("read %s: %w", OwnedPath, err)
	}
	for _, s := range api.Strings(r.Data["owned"]) {
		kind, name, ok := strings.Cut(s, " ")
		if !ok {
			return nil, nil, false, fmt.Errorf("read %s: malformed entry %q", OwnedPath, s)
		}
		owned[declarative.Key{Kind: declarative.Kind(kind), Name: name}] = true
	}
	return current, owned, true, nil
}

func stringOf(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// stringMap converts a decoded JSON object to strings (numbers and bools
// as they print); nil for anything else or an empty object.
func stringMap(v any) map[string]string {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, x := range m {
		if x == nil {
			continue
		}
		if _, nested := x.(map[string]any); nested {
			continue
		}
		out[k] = fmt.Sprint(x)
	}
	return out
}
