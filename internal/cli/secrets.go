package cli

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/spf13/cobra"
)

func (a *app) secretsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "secrets", Short: "Enable, disable and list secrets engines"}
	var (
		path, description, version string
		options                    []string
	)
	enable := &cobra.Command{
		Use:   "enable [--path=PATH] [--version=2] [--options=K=V]... TYPE",
		Short: "Mount a secrets engine (kv, kv-v2, transit...)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			typ := args[0]
			opts, err := parsePairs("options", options)
			if err != nil {
				return err
			}
			if typ == "kv-v2" {
				typ = "kv"
				opts["version"] = "2"
			}
			if version != "" {
				opts["version"] = version
			}
			mount := strings.Trim(path, "/")
			if mount == "" {
				mount = args[0]
			}
			body := map[string]any{"type": typ}
			if description != "" {
				body["description"] = description
			}
			if len(opts) > 0 {
				body["options"] = opts
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.Do(cmd.Context(), http.MethodPost, "sys/mounts/"+mount, body); err != nil {
				return err
			}
			a.success("Enabled the %s secrets engine at: %s/", args[0], mount)
			return nil
		},
	}
	fl := enable.Flags()
	fl.StringVar(&path, "path", "", "where to mount it (default: the type's name)")
	fl.StringVar(&description, "description", "", "human-readable description")
	fl.StringVar(&version, "version", "", `engine version (the same as --options=version=N)`)
	fl.StringArrayVar(&options, "options", nil, "engine option K=V (repeatable)")

	disable := a.mountDisableCmd("Unmount a secrets engine and delete its data", "sys/mounts/", "the secrets engine")
	list := a.mountListCmd("List mounted secrets engines", "sys/mounts", func(m map[string]any) string {
		typ := formatValue(m["type"])
		if opts, ok := m["options"].(map[string]any); ok && typ == "kv" && opts["version"] != nil {
			typ = fmt.Sprintf("kv (v%s)", formatValue(opts["version"]))
		}
		return typ
	})
	cmd.AddCommand(enable, disable, list)
	return cmd
}
