package cli

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/coffer-dev/coffer/internal/audit"
	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/spf13/cobra"
)

// auditCmd holds the offline audit-log tools: verify and query read a log
// file (or stdin for "-") and never contact the server.
func (a *app) auditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Check and search audit logs (offline)"}

	var pubKey string
	verify := &cobra.Command{
		Use:   "verify FILE|-",
		Short: "Check an audit log's hash chain and signed checkpoints",
		Long: "Verify checks that no line of an audit log was edited, removed, reordered or inserted,\n" +
			"and that every checkpoint is signed by the device's key. Pass the key shown by\n" +
			"sys/audit with --pubkey; without it the key in the log's first line is trusted.\n" +
			"It exits 0 for an untouched log and 1, naming the first bad line, otherwise.",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var key ed25519.PublicKey
			if pubKey != "" {
				k, err := audit.ParsePublicKey(pubKey)
				if err != nil {
					return usageErrorf("--pubkey: %v", err)
				}
				key = k
			}
			r, closeFn, err := a.openLog(args[0])
			if err != nil {
				return err
			}
			defer closeFn()
			rep, err := audit.Verify(r, key)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if a.g.format == "json" {
				return printJSON(a.env.stdout, rep)
			}
			a.success("%s verifies: %d lines, %d entries, %d signed checkpoints.", args[0], rep.Lines, rep.Entries, rep.Checkpoints)
			rows := []row{
				{"public_key", rep.PublicKey},
				{"key_source", map[bool]string{true: "the log itself (pass --pubkey to check it)", false: "--pubkey"}[rep.KeyFromLog]},
				{"seq", fmt.Sprintf("%d to %d", rep.FirstSeq, rep.LastSeq)},
				{"first_prev_hash", rep.FirstPrevHash},
				{"last_checkpoint", fmt.Sprintf("line %d, seq %d, %s", rep.LastCheckpointLine, rep.LastCheckpointSeq, rep.LastCheckpointHash)},
				{"unsigned_lines", fmt.Sprint(rep.Unsigned)},
				{"dropped_entries", fmt.Sprint(rep.Dropped)},
			}
			printRows(a.env.stdout, rows)
			return nil
		},
	}
	verify.Flags().StringVar(&pubKey, "pubkey", "", `the device's public key ("ed25519:<base64>", from sys/audit)`)

	var (
		path, since, operation string
	)
	query := &cobra.Command{
		Use:   "query FILE|-",
		Short: "List who made matching requests: time, operation, identity, address and outcome",
		Long: "Query answers \"who read this secret, and when\". --path matches exactly, or as a\n" +
			"prefix when it ends in '*'. --since takes a duration back from now (24h, 7d) or an\n" +
			"RFC 3339 time.",
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := audit.Filter{Path: path, Operation: operation}
			if since != "" {
				t, err := parseAuditSince(since, time.Now())
				if err != nil {
					return err
				}
				f.Since = t
			}
			r, closeFn, err := a.openLog(args[0])
			if err != nil {
				return err
			}
			defer closeFn()
			recs, err := audit.Query(r, f)
			if err != nil {
				return err
			}
			if a.g.format == "json" {
				if recs == nil {
					recs = []audit.Record{}
				}
				return printJSON(a.env.stdout, recs)
			}
			if len(recs) == 0 {
				fmt.Fprintln(a.env.stderr, "No matching entries")
				return nil
			}
			rows := make([][]string, 0, len(recs))
			for _, r := range recs {
				rows = append(rows, []string{
					r.Time.UTC().Format(time.RFC3339), r.Operation, r.Path, auditDash(r.DisplayName), auditDash(r.Accessor),
					auditDash(auditMeta(r.Metadata)), auditDash(r.RemoteAddress), r.Outcome,
				})
			}
			printColumns(a.env.stdout, []string{"Time", "Operation", "Path", "Identity", "Accessor", "Metadata", "Remote", "Outcome"}, rows)
			return nil
		},
	}
	qf := query.Flags()
	qf.StringVar(&path, "path", "", "request path, or a prefix ending in '*'")
	qf.StringVar(&since, "since", "", "only entries newer than this: a duration (24h, 7d) or an RFC 3339 time")
	qf.StringVar(&operation, "operation", "", "only this operation (read, list, create, update, patch, delete)")

	cmd.AddCommand(verify, query)
	return cmd
}

// openLog opens a log file, or stdin for "-".
func (a *app) openLog(name string) (io.Reader, func(), error) {
	if name == "-" {
		return a.env.stdin, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, fmt.Errorf("open audit log: %w", err)
	}
	return f, func() { f.Close() }, nil
}

func parseAuditSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := logical.ParseDuration(s)
	if err != nil {
		return time.Time{}, usageErrorf("--since %q: use a duration such as 24h or 7d, or an RFC 3339 time", s)
	}
	return now.Add(-d), nil
}

func auditMeta(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, " ")
}

func auditDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
