package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/coffer-dev/coffer/api"
	"github.com/spf13/cobra"
)

func (a *app) policyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Manage ACL policies"}
	write := &cobra.Command{
		Use:   "write NAME FILE|-",
		Short: "Upload a policy from a file or stdin",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var (
				b   []byte
				err error
			)
			if args[1] == "-" {
				b, err = io.ReadAll(a.env.stdin)
			} else {
				b, err = os.ReadFile(args[1])
			}
			if err != nil {
				return fmt.Errorf("read policy: %w", err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.Write(cmd.Context(), "sys/policies/acl/"+args[0], map[string]any{"policy": string(b)}); err != nil {
				return err
			}
			a.success("Uploaded policy: %s", args[0])
			return nil
		},
	}
	read := &cobra.Command{
		Use:   "read NAME",
		Short: "Print a policy's rules",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Read(cmd.Context(), "sys/policies/acl/"+args[0])
			if errors.Is(err, api.ErrNotFound) {
				return a.notFound("sys/policies/acl/" + args[0])
			}
			if err != nil {
				return err
			}
			if a.g.format == "json" {
				return printJSON(a.env.stdout, r)
			}
			p, _ := r.Data["policy"].(string)
			_, err = fmt.Fprintln(a.env.stdout, p)
			return err
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List policy names",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			keys, err := c.List(cmd.Context(), "sys/policies/acl")
			if err != nil {
				return err
			}
			if a.g.format == "json" {
				return printJSON(a.env.stdout, keys)
			}
			for _, k := range keys {
				fmt.Fprintln(a.env.stdout, k)
			}
			return nil
		},
	}
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a policy",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.Delete(cmd.Context(), "sys/policies/acl/"+args[0]); err != nil {
				return err
			}
			a.success("Deleted policy: %s", args[0])
			return nil
		},
	}
	cmd.AddCommand(write, read, list, del)
	return cmd
}
