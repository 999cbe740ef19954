package cli

import (
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/coffer-dev/coffer/api"
)

// accessCmd is `coffer access who PATH`: which policies, and which roles of
// which auth methods, can reach a path (Coffer's sys/access).
func (a *app) accessCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "access", Short: "Who can reach a path (Coffer-only)"}
	cmd.AddCommand(&cobra.Command{
		Use:   "who PATH",
		Short: "List the policies and roles that grant or deny anything on PATH",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Do(cmd.Context(), "GET", "sys/access?path="+url.QueryEscape(args[0]), nil)
			if err != nil {
				return err
			}
			if a.g.format == "json" {
				return a.printResponse(r, "")
			}
			return a.printAccess(r)
		},
	})
	return cmd
}

func (a *app) printAccess(r *api.Response) error {
	w := tabwriter.NewWriter(a.env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "Path: %v\n\nPolicy\tRule\tCapabilities\tEffect\n------\t----\t------------\t------\n", r.Data["path"])
	for _, p := range asList(r.Data["policies"]) {
		fmt.Fprintf(w, "%v\t%v\t%s\t%v\n", p["name"], p["rule"], strings.Join(api.Strings(p["capabilities"]), ","), p["effect"])
	}
	fmt.Fprintf(w, "\nMount\tType\tRole\tPolicies\n-----\t----\t----\t--------\n")
	for _, x := range asList(r.Data["roles"]) {
		fmt.Fprintf(w, "%v\t%v\t%v\t%s\n", x["mount"], x["type"], x["name"], strings.Join(api.Strings(x["policies"]), ","))
	}
	return w.Flush()
}

func asList(v any) []map[string]any {
	l, _ := v.([]any)
	out := make([]map[string]any, 0, len(l))
	for _, x := range l {
		if m, ok := x.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}
