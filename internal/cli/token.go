package cli

import (
	"net/http"

	"github.com/spf13/cobra"
)

func (a *app) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Create, look up, renew and revoke tokens"}
	cmd.AddCommand(a.tokenCreateCmd(), a.tokenLookupCmd(), a.tokenRenewCmd(), a.tokenRevokeCmd())
	return cmd
}

func (a *app) tokenCreateCmd() *cobra.Command {
	var (
		policies, meta                             []string
		ttl, period, displayName, explicitMax, fld string
		orphan                                     bool
		useLimit                                   int
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a child token (or an orphan with --orphan)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{}
			if len(policies) > 0 {
				body["policies"] = policies
			}
			if ttl != "" {
				body["ttl"] = ttl
			}
			if period != "" {
				body["period"] = period
			}
			if explicitMax != "" {
				body["explicit_max_ttl"] = explicitMax
			}
			if displayName != "" {
				body["display_name"] = displayName
			}
			if useLimit > 0 {
				body["num_uses"] = useLimit
			}
			if len(meta) > 0 {
				m, err := parsePairs("metadata", meta)
				if err != nil {
					return err
				}
				body["meta"] = m
			}
			path := "auth/token/create"
			if orphan {
				path = "auth/token/create-orphan"
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Do(cmd.Context(), http.MethodPost, path, body)
			if err != nil {
				return err
			}
			return a.printResponse(r, fld)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&policies, "policy", nil, "policy to attach (repeatable)")
	fl.StringVar(&ttl, "ttl", "", `initial TTL ("1h")`)
	fl.StringVar(&period, "period", "", "make a periodic token renewable forever by this period")
	fl.StringVar(&explicitMax, "explicit-max-ttl", "", "hard limit beyond which the token cannot be renewed")
	fl.StringVar(&displayName, "display-name", "", "name shown in audit logs")
	fl.BoolVar(&orphan, "orphan", false, "create a token with no parent")
	fl.IntVar(&useLimit, "use-limit", 0, "number of uses before the token is revoked (0: unlimited)")
	fl.StringArrayVar(&meta, "metadata", nil, "metadata K=V (repeatable)")
	fl.StringVar(&fld, "field", "", `print only this field ("token")`)
	return cmd
}

func (a *app) tokenLookupCmd() *cobra.Command {
	var accessor bool
	var field string
	cmd := &cobra.Command{
		Use:   "lookup [TOKEN|ACCESSOR]",
		Short: "Show a token's properties (your own without an argument)",
		Args:  rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			method, path, body := http.MethodGet, "auth/token/lookup-self", any(nil)
			switch {
			case accessor && len(args) == 0:
				return usageErrorf("--accessor needs an ACCESSOR argument")
			case accessor:
				method, path, body = http.MethodPost, "auth/token/lookup-accessor", map[string]any{"accessor": args[0]}
			case len(args) == 1:
				method, path, body = http.MethodPost, "auth/token/lookup", map[string]any{"token": args[0]}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Do(cmd.Context(), method, path, body)
			if err != nil {
				return err
			}
			return a.printResponse(r, field)
		},
	}
	cmd.Flags().BoolVar(&accessor, "accessor", false, "the argument is an accessor, not a token")
	cmd.Flags().StringVar(&field, "field", "", "print only this field")
	return cmd
}

func (a *app) tokenRenewCmd() *cobra.Command {
	var accessor bool
	var increment, field string
	cmd := &cobra.Command{
		Use:   "renew [TOKEN|ACCESSOR]",
		Short: "Extend a token's TTL (your own without an argument)",
		Args:  rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{}
			if increment != "" {
				body["increment"] = increment
			}
			path := "auth/token/renew-self"
			switch {
			case accessor && len(args) == 0:
				return usageErrorf("--accessor needs an ACCESSOR argument")
			case accessor:
				path, body["accessor"] = "auth/token/renew-accessor", args[0]
			case len(args) == 1:
				path, body["token"] = "auth/token/renew", args[0]
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Do(cmd.Context(), http.MethodPut, path, body)
			if err != nil {
				return err
			}
			return a.printResponse(r, field)
		},
	}
	cmd.Flags().BoolVar(&accessor, "accessor", false, "the argument is an accessor, not a token")
	cmd.Flags().StringVar(&increment, "increment", "", `requested extension ("1h"); the server may give less`)
	cmd.Flags().StringVar(&field, "field", "", "print only this field")
	return cmd
}

func (a *app) tokenRevokeCmd() *cobra.Command {
	var self, accessor bool
	cmd := &cobra.Command{
		Use:   "revoke [--self | TOKEN | --accessor ACCESSOR]",
		Short: "Revoke a token and its children",
		Args:  rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var path string
			var body map[string]any
			switch {
			case self && (len(args) > 0 || accessor):
				return usageErrorf("--self takes no argument")
			case self:
				path = "auth/token/revoke-self"
			case len(args) == 0:
				return usageErrorf("give a TOKEN, --accessor ACCESSOR or --self")
			case accessor:
				path, body = "auth/token/revoke-accessor", map[string]any{"accessor": args[0]}
			default:
				path, body = "auth/token/revoke", map[string]any{"token": args[0]}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var b any
			if body != nil {
				b = body
			}
			if _, err := c.Do(cmd.Context(), http.MethodPut, path, b); err != nil {
				return err
			}
			a.success("Revoked token (if it existed)")
			return nil
		},
	}
	cmd.Flags().BoolVar(&self, "self", false, "revoke the token in use")
	cmd.Flags().BoolVar(&accessor, "accessor", false, "the argument is an accessor, not a token")
	return cmd
}
