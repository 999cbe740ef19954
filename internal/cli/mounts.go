package cli

import (
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

// mountDisableCmd is `disable PATH` of `coffer auth` and `coffer secrets`:
// DELETE sysPrefix+PATH, then "Disabled <what> (if it existed) at: PATH/".
func (a *app) mountDisableCmd(short, sysPrefix, what string) *cobra.Command {
	return &cobra.Command{
		Use:   "disable PATH",
		Short: short,
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			mount := strings.Trim(args[0], "/")
			if _, err := c.Delete(cmd.Context(), sysPrefix+mount); err != nil {
				return err
			}
			a.success("Disabled %s (if it existed) at: %s/", what, mount)
			return nil
		},
	}
}

// mountListCmd is `list` of `coffer auth` and `coffer secrets`: it reads
// sysPath (a map of mount path to mount) and prints it as JSON or as a
// table sorted by path whose Type column is typ of each mount.
func (a *app) mountListCmd(short, sysPath string, typ func(m map[string]any) string) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: short,
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Read(cmd.Context(), sysPath)
			if err != nil {
				return err
			}
			if a.g.format == "json" {
				return printJSON(a.env.stdout, r.Data)
			}
			paths := make([]string, 0, len(r.Data))
			for p := range r.Data {
				paths = append(paths, p)
			}
			sort.Strings(paths)
			var rows [][]string
			for _, p := range paths {
				m, _ := r.Data[p].(map[string]any)
				rows = append(rows, []string{p, typ(m), formatValue(m["accessor"]), formatValue(m["description"])})
			}
			printColumns(a.env.stdout, []string{"Path", "Type", "Accessor", "Description"}, rows)
			return nil
		},
	}
}
