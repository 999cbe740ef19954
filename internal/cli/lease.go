package cli

import (
	"errors"
	"net/http"
	"strings"

	"github.com/coffer-dev/coffer/api"
	"github.com/spf13/cobra"
)

// leaseCmd is "coffer lease lookup|renew|revoke|list", Vault's lease
// commands over sys/leases.
func (a *app) leaseCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "lease", Short: "Look up, renew, revoke and list leases of dynamic secrets"}
	cmd.AddCommand(a.leaseLookupCmd(), a.leaseRenewCmd(), a.leaseRevokeCmd(), a.leaseListCmd())
	return cmd
}

func (a *app) leaseLookupCmd() *cobra.Command {
	var field string
	cmd := &cobra.Command{
		Use:   "lookup LEASE_ID",
		Short: "Show a lease's issue time, expiry and TTL (PUT sys/leases/lookup)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Do(cmd.Context(), http.MethodPut, "sys/leases/lookup", map[string]any{"lease_id": args[0]})
			if err != nil {
				return err
			}
			return a.printResponse(r, field)
		},
	}
	cmd.Flags().StringVar(&field, "field", "", "print only this field")
	return cmd
}

func (a *app) leaseRenewCmd() *cobra.Command {
	var increment, field string
	cmd := &cobra.Command{
		Use:   "renew [--increment=DURATION] LEASE_ID",
		Short: "Extend a lease (PUT sys/leases/renew); the engine and max_ttl may grant less",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{"lease_id": args[0]}
			if increment != "" {
				body["increment"] = increment
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Do(cmd.Context(), http.MethodPut, "sys/leases/renew", body)
			if err != nil {
				return err
			}
			if field != "" {
				return a.printField(map[string]any{"lease_id": r.LeaseID, "lease_duration": r.LeaseDuration, "lease_renewable": r.Renewable}, field)
			}
			return a.printResponse(r, "")
		},
	}
	cmd.Flags().StringVarP(&increment, "increment", "i", "", `requested extension ("1h", "3600"); default: the lease's TTL`)
	cmd.Flags().StringVar(&field, "field", "", "print only this field (lease_id, lease_duration, lease_renewable)")
	return cmd
}

func (a *app) leaseRevokeCmd() *cobra.Command {
	var prefix, force bool
	cmd := &cobra.Command{
		Use:   "revoke [--prefix [--force]] LEASE_ID|PREFIX",
		Short: "Revoke a lease now, or every lease under a prefix (--force forgets them without asking the engine)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if force && !prefix {
				return usageErrorf("--force needs --prefix")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			id := args[0]
			switch {
			case force:
				_, err = c.Do(cmd.Context(), http.MethodPut, "sys/leases/revoke-force/"+strings.TrimPrefix(id, "/"), nil)
			case prefix:
				_, err = c.Do(cmd.Context(), http.MethodPut, "sys/leases/revoke-prefix/"+strings.TrimPrefix(id, "/"), nil)
			default:
				_, err = c.Do(cmd.Context(), http.MethodPut, "sys/leases/revoke", map[string]any{"lease_id": id})
			}
			if err != nil {
				return err
			}
			switch {
			case force:
				a.success("Force revoked any leases with prefix: %s", id)
			case prefix:
				a.success("Revoked any leases with prefix: %s", id)
			default:
				a.success("Revoked lease: %s", id)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&prefix, "prefix", false, "treat the argument as a prefix (e.g. database/creds/readonly/)")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "with --prefix: remove the leases even if the engine cannot revoke them (the secrets may stay valid)")
	return cmd
}

func (a *app) leaseListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list PREFIX",
		Short: "List lease IDs and folders under a prefix (LIST sys/leases/lookup/PREFIX)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			p := strings.Trim(args[0], "/") + "/"
			r, err := c.Do(cmd.Context(), "LIST", "sys/leases/lookup/"+p, nil)
			if errors.Is(err, api.ErrNotFound) {
				return a.notFound("sys/leases/lookup/" + p)
			}
			if err != nil {
				return err
			}
			return a.printKeys(r)
		},
	}
}
