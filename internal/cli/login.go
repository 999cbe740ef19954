package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/coffer-dev/coffer/api"
	"github.com/spf13/cobra"
)

func (a *app) loginCmd() *cobra.Command {
	var vaultFile bool
	var method, mount string
	cmd := &cobra.Command{
		Use:   "login [TOKEN] | login --method=M [K=V...]",
		Short: "Check a token and store it in ~/.coffer-token",
		Long: "login checks TOKEN (read from stdin when not given) with auth/token/lookup-self,\n" +
			"then stores it in ~/.coffer-token (mode 0600), where later commands find it.\n" +
			"--vault-token-file also writes ~/.vault-token, which sops and Vault's tools read.\n" +
			"With --method=userpass|approle|kubernetes|jwt it logs in with that auth method\n" +
			"(username=..., role_id=... secret_id=..., role=... jwt=...) and stores the token it gets.",
		Args: rangeArgs(0, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if a.env.home == "" {
				return fmt.Errorf("no home directory to store the token in")
			}
			var tok string
			if method != "" && method != "token" {
				if mount == "" {
					mount = method
				}
				resp, err := a.methodLogin(cmd.Context(), method, mount, args)
				if err != nil {
					return err
				}
				if resp.Auth == nil || resp.Auth.ClientToken == "" {
					return fmt.Errorf("the %s login returned no token", method)
				}
				tok = resp.Auth.ClientToken
			} else if len(args) > 1 {
				return usageErrorf("login takes one TOKEN, or --method=M with K=V arguments")
			} else if len(args) == 1 {
				tok = args[0]
			} else {
				var err error
				if tok, err = a.promptSecret("Token (will be hidden): "); err != nil {
					return err
				}
			}
			tok = strings.TrimSpace(tok)
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.WithToken(tok).Read(cmd.Context(), "auth/token/lookup-self")
			if err != nil {
				return fmt.Errorf("token not accepted: %w", err)
			}
			files := []string{api.TokenFile}
			if vaultFile {
				files = append(files, ".vault-token")
			}
			for _, name := range files {
				if err := writeSecretFile(filepath.Join(a.env.home, name), []byte(tok)); err != nil {
					return err
				}
			}
			if a.g.format == "json" {
				return printJSON(a.env.stdout, r)
			}
			fmt.Fprintf(a.env.stdout, "Success! You are now authenticated. The token is stored in ~/%s", api.TokenFile)
			if vaultFile {
				fmt.Fprint(a.env.stdout, " and ~/.vault-token")
			}
			fmt.Fprint(a.env.stdout, ";\nCOFFER_TOKEN and VAULT_TOKEN, when set, take precedence over it.\n\n")
			rows := []row{
				{"token_accessor", formatValue(r.Data["accessor"])},
				{"token_duration", formatValue(r.Data["ttl"])},
				{"token_renewable", formatValue(r.Data["renewable"])},
				{"token_policies", formatValue(r.Data["policies"])},
			}
			if n, err := jsonInt(r.Data["ttl"]); err == nil {
				rows[1].value = humanDuration(n)
			}
			printRows(a.env.stdout, rows)
			return nil
		},
	}
	cmd.Flags().StringVar(&method, "method", "token", "auth method: token, userpass, approle, kubernetes, jwt")
	cmd.Flags().StringVar(&mount, "path", "", "mount path of the auth method (default: the method's name)")
	cmd.Flags().BoolVar(&vaultFile, "vault-token-file", false, "also write ~/.vault-token (read by sops and Vault's CLI)")
	return cmd
}

// writeSecretFile replaces path with data, readable only by its owner,
// through a temporary file so that it is never left half written or
// briefly readable by others.
func writeSecretFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("store token: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("store token: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("store token: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("store token: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("store token: %w", err)
	}
	return nil
}
