package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/coffer-dev/coffer/api"
	"github.com/spf13/cobra"
)

// rawMap sends a request to a non-envelope endpoint and returns its body
// decoded; if the body is an envelope, its data. json is the body as
// received, for --format=json.
func rawMap(ctx context.Context, c *api.Client, method, path string, body any) (m map[string]any, raw json.RawMessage, err error) {
	resp, err := c.Raw(ctx, method, path, body)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if err := api.CheckResponse(resp); err != nil {
		return nil, nil, err
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	m = map[string]any{}
	if len(bytes.TrimSpace(b)) == 0 {
		return m, json.RawMessage("{}"), nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, nil, fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	if d, ok := m["data"].(map[string]any); ok {
		m = d
	}
	return m, json.RawMessage(b), nil
}

// printRaw prints a non-envelope answer: the body as received with
// --format=json, else the rows.
func (a *app) printRaw(raw json.RawMessage, rows []row) error {
	if a.g.format == "json" {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("decode response: %w", err)
		}
		return printJSON(a.env.stdout, v)
	}
	printRows(a.env.stdout, rows)
	return nil
}

func get(m map[string]any, k string) string { return formatValue(m[k]) }

// sealRows renders sys/seal-status the way Vault's status does.
func sealRows(m map[string]any) []row {
	rows := []row{
		{"Seal Type", get(m, "type")},
		{"Initialized", get(m, "initialized")},
		{"Sealed", get(m, "sealed")},
		{"Total Shares", get(m, "n")},
		{"Threshold", get(m, "t")},
	}
	if m["sealed"] == true {
		nonce := get(m, "nonce")
		if nonce == "" {
			nonce = "n/a"
		}
		rows = append(rows, row{"Unseal Progress", get(m, "progress") + "/" + get(m, "t")}, row{"Unseal Nonce", nonce})
	}
	rows = append(rows, row{"Version", get(m, "version")})
	for _, f := range []struct{ key, name string }{{"storage_type", "Storage Type"}, {"cluster_name", "Cluster Name"}, {"cluster_id", "Cluster ID"}} {
		if v, ok := m[f.key]; ok && v != "" {
			rows = append(rows, row{f.name, formatValue(v)})
		}
	}
	return rows
}

func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show whether the server is initialized and sealed (exit 2 when sealed)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			m, raw, err := rawMap(cmd.Context(), c, http.MethodGet, "sys/seal-status", nil)
			if err != nil {
				return err
			}
			if err := a.printRaw(raw, sealRows(m)); err != nil {
				return err
			}
			if m["sealed"] == true {
				return &ExitError{Code: codeUsage, Err: api.ErrSealed, Quiet: true}
			}
			return nil
		},
	}
}

func (a *app) operatorCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "operator", Short: "Initialize, unseal, seal, rekey and back up the server"}
	cmd.AddCommand(a.initCmd(), a.unsealCmd(), a.sealCmd(), a.rotateCmd(), a.keyStatusCmd(),
		a.generateRootCmd(), a.rekeyCmd(), a.backupCmd(), a.restoreCmd(), a.applyCmd(), a.raftCmd())
	return cmd
}

func (a *app) initCmd() *cobra.Command {
	var shares, threshold, rshares, rthreshold int
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Initialize a new server: print the unseal keys and the root token",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if shares < 1 || threshold < 1 || threshold > shares {
				return usageErrorf("need 1 <= --key-threshold (%d) <= --key-shares (%d)", threshold, shares)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			body := map[string]any{"secret_shares": shares, "secret_threshold": threshold}
			if rshares > 0 {
				// An auto-unseal server: recovery keys instead of unseal keys.
				body["recovery_shares"], body["recovery_threshold"] = rshares, rthreshold
			}
			m, raw, err := rawMap(cmd.Context(), c, http.MethodPut, "sys/init", body)
			if err != nil {
				return err
			}
			if a.g.format == "json" {
				return a.printRaw(raw, nil)
			}
			keys := api.Strings(m["keys_base64"])
			if len(keys) == 0 {
				keys = api.Strings(m["keys"])
			}
			w := a.env.stdout
			for i, k := range keys {
				fmt.Fprintf(w, "Unseal Key %d: %s\n", i+1, k)
			}
			for i, k := range api.Strings(m["recovery_keys_base64"]) {
				fmt.Fprintf(w, "Recovery Key %d: %s\n", i+1, k)
			}
			fmt.Fprintf(w, "\nInitial Root Token: %s\n\n", get(m, "root_token"))
			fmt.Fprintf(w, "Server initialized with %d key shares and a key threshold of %d.\n"+
				"Keep the keys apart: %d of them are needed to unseal the server after every restart.\n",
				shares, threshold, threshold)
			return nil
		},
	}
	cmd.Flags().IntVar(&shares, "key-shares", 5, "number of unseal key shares")
	cmd.Flags().IntVar(&rshares, "recovery-shares", 0, "with an auto-unseal seal: number of recovery key shares")
	cmd.Flags().IntVar(&rthreshold, "recovery-threshold", 0, "with an auto-unseal seal: recovery shares needed for generate-root and rekey")
	cmd.Flags().IntVar(&threshold, "key-threshold", 3, "number of shares needed to unseal")
	return cmd
}

func (a *app) unsealCmd() *cobra.Command {
	var reset, migrate bool
	cmd := &cobra.Command{
		Use:   "unseal [KEY]",
		Short: "Submit one unseal key share (prompted for when not given)",
		Args:  rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{"reset": true}
			if !reset {
				key, err := a.keyShare(args)
				if err != nil {
					return err
				}
				body = map[string]any{"key": strings.TrimSpace(key)}
				if migrate {
					body["migrate"] = true
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			m, raw, err := rawMap(cmd.Context(), c, http.MethodPut, "sys/unseal", body)
			if err != nil {
				return err
			}
			return a.printRaw(raw, sealRows(m))
		},
	}
	cmd.Flags().BoolVar(&reset, "reset", false, "discard the key shares submitted so far")
	cmd.Flags().BoolVar(&migrate, "migrate", false, "submit a share of the old seal during a seal migration (Shamir ↔ auto-unseal)")
	return cmd
}

func (a *app) sealCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "seal",
		Short: "Seal the server: it forgets its keys until unsealed",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.Do(cmd.Context(), http.MethodPut, "sys/seal", nil); err != nil {
				return err
			}
			a.success("Server is sealed.")
			return nil
		},
	}
}

func keyStatusRows(m map[string]any) []row {
	return []row{
		{"Key Term", get(m, "term")},
		{"Install Time", get(m, "install_time")},
		{"Encryption Count", get(m, "encryptions")},
	}
}

func (a *app) rotateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate",
		Short: "Add a new encryption key term; new writes use it",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.Do(cmd.Context(), http.MethodPut, "sys/rotate", nil); err != nil {
				return err
			}
			m, raw, err := rawMap(cmd.Context(), c, http.MethodGet, "sys/key-status", nil)
			if err != nil {
				return err
			}
			if a.g.format != "json" {
				fmt.Fprint(a.env.stdout, "Success! Rotated key\n\n")
			}
			return a.printRaw(raw, keyStatusRows(m))
		},
	}
}

func (a *app) keyStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "key-status",
		Short: "Show the current encryption key term",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			m, raw, err := rawMap(cmd.Context(), c, http.MethodGet, "sys/key-status", nil)
			if err != nil {
				return err
			}
			return a.printRaw(raw, keyStatusRows(m))
		},
	}
}

// decodeRootToken undoes generate-root's encoding: the token XOR the OTP,
// base64 encoded (padding optional).
func decodeRootToken(encoded, otp string) (string, error) {
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(encoded, "="))
	if err != nil {
		return "", usageErrorf("encoded token is not base64")
	}
	if len(b) != len(otp) {
		return "", usageErrorf("encoded token is %d bytes but the OTP is %d: wrong OTP?", len(b), len(otp))
	}
	for i := range b {
		b[i] ^= otp[i]
	}
	return string(b), nil
}

// attemptRows renders generate-root and rekey progress.
func attemptRows(m map[string]any) []row {
	rows := []row{{"Nonce", get(m, "nonce")}, {"Started", get(m, "started")}}
	if _, ok := m["progress"]; ok {
		rows = append(rows, row{"Progress", get(m, "progress") + "/" + get(m, "required")})
	}
	for _, f := range []struct{ key, name string }{
		{"t", "Key Threshold"}, {"n", "Key Shares"}, {"complete", "Complete"},
		{"otp", "OTP"}, {"otp_length", "OTP Length"}, {"pgp_fingerprint", "PGP Fingerprint"},
		{"encoded_token", "Encoded Token"},
	} {
		if v, ok := m[f.key]; ok && v != "" {
			rows = append(rows, row{f.name, formatValue(v)})
		}
	}
	return rows
}

func (a *app) generateRootCmd() *cobra.Command {
	var (
		init, status, cancel bool
		nonce, otp, decode   string
	)
	cmd := &cobra.Command{
		Use:   "generate-root [--init [--otp=OTP] | --status | --cancel | [--nonce=N] [KEY] | --decode=TOKEN --otp=OTP]",
		Short: "Make a new root token from a quorum of unseal keys",
		Args:  rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			modes := 0
			for _, b := range []bool{init, status, cancel, decode != ""} {
				if b {
					modes++
				}
			}
			if modes > 1 {
				return usageErrorf("use only one of --init, --status, --cancel and --decode")
			}
			if decode != "" {
				if otp == "" {
					return usageErrorf("--decode needs --otp")
				}
				tok, err := decodeRootToken(decode, otp)
				if err != nil {
					return err
				}
				if a.g.format == "json" {
					return printJSON(a.env.stdout, map[string]string{"token": tok})
				}
				_, err = fmt.Fprintln(a.env.stdout, tok)
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			const attempt = "sys/generate-root/attempt"
			var (
				m   map[string]any
				raw json.RawMessage
			)
			switch {
			case init:
				body := map[string]any{}
				if otp != "" {
					body["otp"] = otp
				}
				m, raw, err = rawMap(ctx, c, http.MethodPut, attempt, body)
			case status:
				m, raw, err = rawMap(ctx, c, http.MethodGet, attempt, nil)
			case cancel:
				return a.cancelAttempt(ctx, c, attempt, "Root token generation canceled")
			default:
				m, raw, err = a.submitShare(ctx, c, "sys/generate-root/update", nonce, args)
			}
			if err != nil {
				return err
			}
			return a.printRaw(raw, attemptRows(m))
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&init, "init", false, "start a new attempt")
	fl.BoolVar(&status, "status", false, "show the attempt's progress")
	fl.BoolVar(&cancel, "cancel", false, "cancel the attempt")
	fl.StringVar(&nonce, "nonce", "", "nonce of the attempt, printed by --init")
	fl.StringVar(&otp, "otp", "", "one-time pad: with --init, yours instead of the server's; with --decode, the one to decode with")
	fl.StringVar(&decode, "decode", "", "decode this encoded token with --otp")
	return cmd
}

func (a *app) rekeyCmd() *cobra.Command {
	var (
		init, status, cancel bool
		nonce                string
		shares, threshold    int
	)
	cmd := &cobra.Command{
		Use:   "rekey [--init --key-shares=N --key-threshold=T | --status | --cancel | [--nonce=N] [KEY]]",
		Short: "Replace the unseal keys with a new set, given a quorum of the old ones",
		Args:  rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			const initPath = "sys/rekey/init"
			var (
				m   map[string]any
				raw json.RawMessage
			)
			switch {
			case init:
				if shares < 1 || threshold < 1 || threshold > shares {
					return usageErrorf("need 1 <= --key-threshold (%d) <= --key-shares (%d)", threshold, shares)
				}
				m, raw, err = rawMap(ctx, c, http.MethodPut, initPath, map[string]any{"secret_shares": shares, "secret_threshold": threshold})
			case status:
				m, raw, err = rawMap(ctx, c, http.MethodGet, initPath, nil)
			case cancel:
				return a.cancelAttempt(ctx, c, initPath, "Rekey canceled")
			default:
				m, raw, err = a.submitShare(ctx, c, "sys/rekey/update", nonce, args)
			}
			if err != nil {
				return err
			}
			if m["complete"] == true && a.g.format != "json" {
				keys := api.Strings(m["keys_base64"])
				if len(keys) == 0 {
					keys = api.Strings(m["keys"])
				}
				for i, k := range keys {
					fmt.Fprintf(a.env.stdout, "Key %d: %s\n", i+1, k)
				}
				fmt.Fprintf(a.env.stdout, "\nServer rekeyed with %d new key shares; the old keys no longer work.\n", len(keys))
				return nil
			}
			return a.printRaw(raw, attemptRows(m))
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&init, "init", false, "start a rekey")
	fl.BoolVar(&status, "status", false, "show the rekey's progress")
	fl.BoolVar(&cancel, "cancel", false, "cancel the rekey")
	fl.StringVar(&nonce, "nonce", "", "nonce of the rekey, printed by --init")
	fl.IntVar(&shares, "key-shares", 5, "number of new key shares")
	fl.IntVar(&threshold, "key-threshold", 3, "number of new shares needed to unseal")
	return cmd
}

// keyShare returns the unseal key share given as the only argument, or
// prompts for it (without echo) when there is none.
func (a *app) keyShare(args []string) (string, error) {
	if len(args) == 1 {
		return args[0], nil
	}
	return a.promptSecret("Unseal Key (will be hidden): ")
}

// submitShare sends one key share (see keyShare) to the attempt nonce
// through path, a generate-root or rekey update endpoint, and returns the
// attempt's state. A missing nonce is a usage error.
func (a *app) submitShare(ctx context.Context, c *api.Client, path, nonce string, args []string) (map[string]any, json.RawMessage, error) {
	if nonce == "" {
		return nil, nil, usageErrorf("give the --nonce printed by --init")
	}
	key, err := a.keyShare(args)
	if err != nil {
		return nil, nil, err
	}
	return rawMap(ctx, c, http.MethodPut, path, map[string]any{"key": key, "nonce": nonce})
}

// cancelAttempt deletes the generate-root or rekey attempt at path and
// reports done.
func (a *app) cancelAttempt(ctx context.Context, c *api.Client, path, done string) error {
	if _, err := c.Do(ctx, http.MethodDelete, path, nil); err != nil {
		return err
	}
	a.success("%s", done)
	return nil
}
