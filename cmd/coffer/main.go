// Command coffer is Coffer's one binary: the server (`coffer server`) and
// every client command (`coffer kv get`, `coffer operator unseal`, ...).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/coffer-dev/coffer/internal/cli"
	"github.com/coffer-dev/coffer/internal/server"
	"github.com/coffer-dev/coffer/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := cli.New(os.Stdin, os.Stdout, os.Stderr)
	root.Version = version.Version
	root.AddCommand(serverCmd())
	root.AddCommand(k8sCommands()...)
	err := cli.Execute(ctx, root, os.Args[1:])
	stop()
	os.Exit(cli.ExitCode(err))
}

func serverCmd() *cobra.Command {
	var opts server.Options
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a Coffer server",
		Long: `Run a Coffer server from an HCL config file:

    coffer server --config coffer.hcl

or an in-memory, unsealed dev server with a known root token and KV v2
at secret/ (never for real secrets):

    coffer server --dev --dev-root-token-id=root`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Stdout, opts.Stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
			return server.Run(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.ConfigPath, "config", "", "path to the HCL config file")
	f.BoolVar(&opts.Dev, "dev", false, "run an in-memory, unsealed dev server")
	f.StringVar(&opts.DevRootTokenID, "dev-root-token-id", "", "root token of the dev server (default: random)")
	f.StringVar(&opts.DevListenAddress, "dev-listen-address", "127.0.0.1:8200", "address the dev server listens on")
	return cmd
}
