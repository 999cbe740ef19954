package cli

import (
	"errors"
	"net/http"
	"strings"

	"github.com/coffer-dev/coffer/api"
	"github.com/spf13/cobra"
)

func (a *app) readCmd() *cobra.Command {
	var field string
	cmd := &cobra.Command{
		Use:   "read PATH",
		Short: "Read any path (GET /v1/PATH)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Read(cmd.Context(), args[0])
			if errors.Is(err, api.ErrNotFound) {
				return a.notFound(args[0])
			}
			if err != nil {
				return err
			}
			return a.printResponse(r, field)
		},
	}
	cmd.Flags().StringVar(&field, "field", "", "print only this field's value")
	return cmd
}

func (a *app) writeCmd() *cobra.Command {
	var field string
	cmd := &cobra.Command{
		Use:   "write PATH [K=V|K=@FILE|-]...",
		Short: "Write to any path (PUT /v1/PATH)",
		Args:  rangeArgs(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := parseKV(args[1:], a.env.stdin)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Write(cmd.Context(), args[0], data)
			if err != nil {
				return err
			}
			if r.Data == nil && r.Auth == nil {
				a.success("Data written to: %s", args[0])
				return nil
			}
			return a.printResponse(r, field)
		},
	}
	cmd.Flags().StringVar(&field, "field", "", "print only this field's value")
	return cmd
}

func (a *app) listCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list PATH",
		Short: "List the keys under any path (LIST /v1/PATH)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			path := args[0]
			if !strings.HasSuffix(path, "/") {
				path += "/"
			}
			r, err := c.Do(cmd.Context(), "LIST", path, nil)
			if errors.Is(err, api.ErrNotFound) {
				return a.notFound(args[0])
			}
			if err != nil {
				return err
			}
			return a.printKeys(r)
		},
	}
}

func (a *app) deleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete PATH",
		Short: "Delete any path (DELETE /v1/PATH)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.Do(cmd.Context(), http.MethodDelete, args[0], nil); err != nil {
				return err
			}
			a.success("Data deleted (if it existed) at: %s", args[0])
			return nil
		},
	}
}
