package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/coffer-dev/coffer/api"
	"github.com/spf13/cobra"
)

// ExitError is the error Execute returns: Err with the exit code main
// should use. Quiet means the message was already printed.
type ExitError struct {
	Code  int
	Err   error
	Quiet bool
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Exit codes, following Vault's CLI.
const (
	codeAPI   = 1 // the server or the system reported an error
	codeUsage = 2 // bad flags or arguments; also "no value found"
)

// ExitCode returns the process exit code for an error from Execute: 0 for
// nil, the Code of an *ExitError, and 1 otherwise.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return codeAPI
}

func usageErrorf(format string, args ...any) error {
	return &ExitError{Code: codeUsage, Err: fmt.Errorf(format, args...)}
}

// env is what the commands take from the process: streams, environment
// and home directory. Tests fill it in; New takes it from the OS.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	home           string       // "": unknown; no token file is read or written
	httpClient     *http.Client // nil: api's default
}

// New returns the root "coffer" command with every client command
// attached, reading its environment from the process. Run it with
// Execute.
func New(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	home, _ := os.UserHomeDir()
	return newRoot(&env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv, home: home})
}

// globals are the flags every command accepts.
type globals struct {
	address       string
	format        string
	caCert        string
	tlsSkipVerify bool
}

// app is the state shared by the commands of one root.
type app struct {
	env *env
	g   globals
}

func newRoot(e *env) *cobra.Command {
	a := &app{env: e}
	root := &cobra.Command{
		Use:           "coffer",
		Short:         "Coffer: a Vault-compatible secrets manager",
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			switch a.g.format {
			case "table", "json":
				return nil
			}
			return usageErrorf("unknown format %q: use table or json", a.g.format)
		},
	}
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&a.g.address, "address", "", "server address (default $COFFER_ADDR, $VAULT_ADDR or "+api.DefaultAddress+")")
	pf.StringVar(&a.g.format, "format", "table", "output format: table or json")
	pf.StringVar(&a.g.caCert, "ca-cert", "", "PEM file of CA certificates to trust (default $COFFER_CACERT or $VAULT_CACERT)")
	pf.BoolVar(&a.g.tlsSkipVerify, "tls-skip-verify", false, "do not verify the server's certificate (insecure)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &ExitError{Code: codeUsage, Err: err}
	})
	root.AddCommand(
		a.statusCmd(), a.operatorCmd(), a.kvCmd(), a.policyCmd(), a.tokenCmd(),
		a.secretsCmd(), a.loginCmd(),
		a.readCmd(), a.writeCmd(), a.listCmd(), a.deleteCmd(),
		a.auditCmd(), a.leaseCmd(), a.accessCmd(), a.authCmd(),
	)
	for _, c := range root.Commands() {
		groupArgs(c)
	}
	return root
}

// groupArgs makes commands that only group others ("kv", "operator")
// print their help when run alone and reject unknown subcommands with a
// usage error; cobra does so only for the root.
func groupArgs(c *cobra.Command) {
	if c.Runnable() || !c.HasSubCommands() {
		return
	}
	c.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return nil
	}
	c.RunE = func(cmd *cobra.Command, args []string) error { return cmd.Help() }
	for _, sub := range c.Commands() {
		groupArgs(sub)
	}
}

// Execute runs root with args (os.Args[1:]) after RewriteArgs. It prints
// any error on root's stderr as "Error: ..." and returns it as an
// *ExitError: errors from cobra itself (unknown command or flag, wrong
// number of arguments) are usage errors, code 2; errors from a command
// keep their code, 1 unless stated. Commands added to root (such as
// server) get the same treatment.
func Execute(ctx context.Context, root *cobra.Command, args []string) error {
	root.SilenceErrors, root.SilenceUsage = true, true
	classify(root)
	root.SetArgs(RewriteArgs(args))
	err := root.ExecuteContext(ctx)
	if err == nil {
		return nil
	}
	var ee *ExitError
	if !errors.As(err, &ee) {
		ee = &ExitError{Code: codeUsage, Err: err}
	}
	if !ee.Quiet {
		fmt.Fprintf(root.ErrOrStderr(), "Error: %s\n", ee.Err)
	}
	return ee
}

// ranE marks errors a command's RunE returned, so Execute can tell them
// from cobra's own usage errors.
func classify(c *cobra.Command) {
	if run := c.RunE; run != nil && c.Annotations["cli.classified"] == "" {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			err := run(cmd, args)
			var ee *ExitError
			if err == nil || errors.As(err, &ee) {
				return err
			}
			return &ExitError{Code: codeAPI, Err: err}
		}
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations["cli.classified"] = "yes"
	}
	for _, sub := range c.Commands() {
		classify(sub)
	}
}

// RewriteArgs turns Vault's single-dash long flags into GNU ones:
// "-format=json" becomes "--format=json". A word is rewritten when it
// starts with one dash, is longer than one letter after it and is not a
// negative number; "-", "-h", "--x" and everything after "--" are kept.
func RewriteArgs(args []string) []string {
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' && !isNumber(a) {
			a = "-" + a
		}
		out = append(out, a)
	}
	return out
}

func isNumber(s string) bool {
	name, _, _ := strings.Cut(s, "=")
	_, err := strconv.ParseFloat(name, 64)
	return err == nil
}

// client returns an API client from the environment and global flags.
func (a *app) client() (*api.Client, error) {
	cfg, err := api.ConfigFromEnv(a.env.getenv, a.env.home)
	if err != nil {
		return nil, err
	}
	if a.g.address != "" {
		cfg.Address = a.g.address
	}
	if a.g.caCert != "" {
		cfg.CACert = a.g.caCert
	}
	if a.g.tlsSkipVerify {
		cfg.TLSSkipVerify = true
	}
	cfg.HTTPClient = a.env.httpClient
	return api.NewClient(cfg)
}

// exactArgs and rangeArgs are cobra argument checks that give usage
// errors.
func exactArgs(n int) cobra.PositionalArgs {
	return rangeArgs(n, n)
}

func rangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || (hi >= 0 && len(args) > hi) {
			switch {
			case lo == hi:
				return usageErrorf("%s takes %d argument(s), got %d", cmd.CommandPath(), lo, len(args))
			case hi < 0:
				return usageErrorf("%s takes at least %d argument(s), got %d", cmd.CommandPath(), lo, len(args))
			default:
				return usageErrorf("%s takes %d to %d arguments, got %d", cmd.CommandPath(), lo, hi, len(args))
			}
		}
		return nil
	}
}

// notFound reports a missing path the way Vault's CLI does: a plain line
// on stderr and exit code 2.
func (a *app) notFound(path string) error {
	fmt.Fprintf(a.env.stderr, "No value found at %s\n", path)
	return &ExitError{Code: codeUsage, Err: fmt.Errorf("no value found at %s", path), Quiet: true}
}
