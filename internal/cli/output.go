package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/coffer-dev/coffer/api"
)

// printJSON writes v indented, as Vault's CLI does for -format=json.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// row is one line of a two-column table.
type row struct{ key, value string }

// printRows writes a "Key Value" table.
func printRows(w io.Writer, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 4, 4, ' ', 0)
	fmt.Fprintln(tw, "Key\tValue")
	fmt.Fprintln(tw, "---\t-----")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", r.key, r.value)
	}
	tw.Flush()
}

// printColumns writes a table with the given header and rows.
func printColumns(w io.Writer, header []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 4, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	under := make([]string, len(header))
	for i, h := range header {
		under[i] = strings.Repeat("-", len(h))
	}
	fmt.Fprintln(tw, strings.Join(under, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

// mapRows returns m's entries sorted by key, leaving out skip.
func mapRows(m map[string]any, skip ...string) []row {
	keys := make([]string, 0, len(m))
	for k := range m {
		if !slices.Contains(skip, k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	rows := make([]row, 0, len(keys))
	for _, k := range keys {
		rows = append(rows, row{k, formatValue(m[k])})
	}
	return rows
}

// formatValue renders a decoded JSON value for a table cell.
func formatValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "n/a"
	case string:
		return v
	case json.Number:
		return v.String()
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = formatValue(e)
		}
		return "[" + strings.Join(parts, " ") + "]"
	case []string:
		return "[" + strings.Join(v, " ") + "]"
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ":" + formatValue(v[k])
		}
		return "map[" + strings.Join(parts, " ") + "]"
	}
	return fmt.Sprint(v)
}

// fieldValue renders one value for --field: strings raw, others as JSON.
func fieldValue(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// printField writes m[field] alone, or fails if m has no such field.
func (a *app) printField(m map[string]any, field string) error {
	v, ok := m[field]
	if !ok {
		return fmt.Errorf("field %q not present in the response", field)
	}
	if a.g.format == "json" {
		return printJSON(a.env.stdout, v)
	}
	_, err := fmt.Fprintln(a.env.stdout, fieldValue(v))
	return err
}

// humanDuration renders seconds like Vault: 3600 is "1h", 0 is "∞".
func humanDuration(secs int) string {
	if secs == 0 {
		return "∞"
	}
	s := (time.Duration(secs) * time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// authMap flattens an Auth into the rows Vault prints for a token.
func authMap(au *api.Auth) map[string]any {
	m := map[string]any{
		"token":             au.ClientToken,
		"token_accessor":    au.Accessor,
		"token_duration":    humanDuration(au.LeaseDuration),
		"token_renewable":   strconv.FormatBool(au.Renewable),
		"token_policies":    au.TokenPolicies,
		"identity_policies": []string{},
		"policies":          au.Policies,
	}
	for k, v := range au.Metadata {
		m["token_meta_"+k] = v
	}
	return m
}

var authOrder = []string{"token", "token_accessor", "token_duration", "token_renewable", "token_policies", "identity_policies", "policies"}

func authRows(m map[string]any) []row {
	var rows []row
	for _, k := range authOrder {
		rows = append(rows, row{k, formatValue(m[k])})
	}
	return append(rows, mapRows(m, authOrder...)...)
}

// printResponse writes an envelope: as JSON, or as a table of its auth
// or data, with warnings on stderr. With field set, only that value.
func (a *app) printResponse(r *api.Response, field string) error {
	if field != "" {
		m := r.Data
		if r.Auth != nil {
			m = authMap(r.Auth)
		}
		return a.printField(m, field)
	}
	if a.g.format == "json" {
		return printJSON(a.env.stdout, r)
	}
	a.printWarnings(r.Warnings)
	switch {
	case r.Auth != nil:
		printRows(a.env.stdout, authRows(authMap(r.Auth)))
	default:
		rows := mapRows(r.Data)
		if r.LeaseDuration > 0 {
			rows = append([]row{
				{"lease_id", r.LeaseID},
				{"lease_duration", humanDuration(r.LeaseDuration)},
				{"lease_renewable", strconv.FormatBool(r.Renewable)},
			}, rows...)
		}
		printRows(a.env.stdout, rows)
	}
	return nil
}

func (a *app) printWarnings(ws []string) {
	for _, w := range ws {
		fmt.Fprintf(a.env.stderr, "WARNING! %s\n", w)
	}
}

// printKeys writes a list of keys.
func (a *app) printKeys(r *api.Response) error {
	if a.g.format == "json" {
		return printJSON(a.env.stdout, api.Strings(r.Data["keys"]))
	}
	rows := [][]string{}
	for _, k := range api.Strings(r.Data["keys"]) {
		rows = append(rows, []string{k})
	}
	printColumns(a.env.stdout, []string{"Keys"}, rows)
	return nil
}

// success prints Vault's "Success! ..." line, or nothing with json.
func (a *app) success(format string, args ...any) {
	if a.g.format == "json" {
		return
	}
	fmt.Fprintf(a.env.stdout, "Success! "+format+"\n", args...)
}

// jsonInt converts a decoded JSON number to an int.
func jsonInt(v any) (int, error) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return int(i), err
	case float64:
		return int(n), nil
	case int:
		return n, nil
	}
	return 0, fmt.Errorf("not a number: %v", v)
}
