package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/coffer-dev/coffer/api"
	"github.com/spf13/cobra"
)

// kvPath is a KV secret path resolved against its mount.
type kvPath struct {
	mount   string // "secret", no slashes around
	rel     string // "app/db", relative to the mount
	version int    // 1 or 2
}

// api returns the full API path for a v2 kind ("data", "metadata"...),
// or for v1 the plain path.
func (p kvPath) api(kind string) string {
	if p.version == 1 || kind == "" {
		return strings.TrimSuffix(p.mount+"/"+p.rel, "/")
	}
	return p.mount + "/" + kind + "/" + p.rel
}

// resolveKV finds the mount and KV version of arg, as Vault's CLI does:
// with --mount, arg is relative to it; otherwise the server is asked
// which mount holds arg (GET sys/internal/ui/mounts/<arg>).
func resolveKV(ctx context.Context, c *api.Client, mount, arg string) (kvPath, error) {
	arg = strings.TrimPrefix(arg, "/")
	lookup := arg
	if mount != "" {
		mount = strings.Trim(mount, "/")
		lookup = mount
	}
	r, err := c.Read(ctx, "sys/internal/ui/mounts/"+lookup)
	if err != nil {
		return kvPath{}, fmt.Errorf("find the mount of %q: %w", lookup, err)
	}
	mp, _ := r.Data["path"].(string)
	mp = strings.Trim(mp, "/")
	if mount != "" && mp == "" {
		mp = mount
	}
	if t, _ := r.Data["type"].(string); t != "" && t != "kv" && t != "generic" {
		return kvPath{}, usageErrorf("%q is a %s mount, not kv", mp+"/", t)
	}
	p := kvPath{mount: mp, version: 1}
	if opts, ok := r.Data["options"].(map[string]any); ok && formatValue(opts["version"]) == "2" {
		p.version = 2
	}
	if mount != "" {
		p.rel = arg
	} else {
		if mp == "" || (arg != mp && !strings.HasPrefix(arg, mp+"/")) {
			return kvPath{}, fmt.Errorf("server gave mount %q for %q", mp, arg)
		}
		p.rel = strings.TrimPrefix(strings.TrimPrefix(arg, mp), "/")
	}
	return p, nil
}

// kvFlags are the flags shared by the kv subcommands.
type kvFlags struct {
	mount string
}

func (f *kvFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.mount, "mount", "", `mount of the KV engine; the path is then relative to it (default: the path's first part, asked from the server)`)
}

// kvCmd returns "kv" with its subcommands.
func (a *app) kvCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "kv", Short: "Read and write KV secrets (versions 1 and 2)"}
	meta := &cobra.Command{Use: "metadata", Short: "Read and write KV v2 metadata"}
	meta.AddCommand(a.kvMetaGetCmd(), a.kvMetaPutCmd(), a.kvMetaDeleteCmd())
	cmd.AddCommand(a.kvPutCmd(), a.kvGetCmd(), a.kvPatchCmd(), a.kvListCmd(), a.kvDeleteCmd(),
		a.kvVersionsCmd("undelete", "Restore soft-deleted versions"),
		a.kvVersionsCmd("destroy", "Remove versions' data for good"), meta)
	return cmd
}

// kvRun resolves the path then runs fn with a client.
func (a *app) kvRun(cmd *cobra.Command, f *kvFlags, arg string, fn func(ctx context.Context, c *api.Client, p kvPath) error) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	p, err := resolveKV(cmd.Context(), c, f.mount, arg)
	if err != nil {
		return err
	}
	return fn(cmd.Context(), c, p)
}

// kvV2Run is kvRun for a command that only KV v2 has (what names it in
// the usage error a v1 mount gets): fn gets the mount's v2 client.
func (a *app) kvV2Run(cmd *cobra.Command, f *kvFlags, arg, what string, fn func(ctx context.Context, kv *api.KVv2, p kvPath) error) error {
	return a.kvRun(cmd, f, arg, func(ctx context.Context, c *api.Client, p kvPath) error {
		if err := needV2(p, what); err != nil {
			return err
		}
		return fn(ctx, c.KVv2(p.mount), p)
	})
}

func needV2(p kvPath, what string) error {
	if p.version != 2 {
		return usageErrorf("%s needs KV version 2, but %s/ is version 1", what, p.mount)
	}
	return nil
}

// printKVMeta prints a v2 write result: the path and the version's
// metadata.
func (a *app) printKVMeta(r *api.Response, path string) error {
	if a.g.format == "json" {
		return printJSON(a.env.stdout, r)
	}
	fmt.Fprintf(a.env.stdout, "== Secret Path ==\n%s\n\n======= Metadata =======\n", path)
	printRows(a.env.stdout, mapRows(r.Data))
	return nil
}

func (a *app) kvPutCmd() *cobra.Command {
	var f kvFlags
	var cas int
	cmd := &cobra.Command{
		Use:   "put PATH [K=V|K=@FILE|-]...",
		Short: "Write a secret (a new version on KV v2)",
		Args:  rangeArgs(2, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := parseKV(args[1:], a.env.stdin)
			if err != nil {
				return err
			}
			return a.kvRun(cmd, &f, args[0], func(ctx context.Context, c *api.Client, p kvPath) error {
				if p.version == 1 {
					if _, err := c.Write(ctx, p.api(""), data); err != nil {
						return err
					}
					a.success("Data written to: %s", p.api(""))
					return nil
				}
				r, err := c.KVv2(p.mount).Put(ctx, p.rel, data, cas)
				if err != nil {
					return err
				}
				return a.printKVMeta(r, p.api("data"))
			})
		},
	}
	f.add(cmd)
	cmd.Flags().IntVar(&cas, "cas", -1, "check-and-set: write only if the current version is this (0: only if absent; -1: always)")
	return cmd
}

func (a *app) kvPatchCmd() *cobra.Command {
	var f kvFlags
	var cas int
	cmd := &cobra.Command{
		Use:   "patch PATH [K=V|K=@FILE|-]...",
		Short: "Merge keys into the latest version of a KV v2 secret",
		Args:  rangeArgs(2, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := parseKV(args[1:], a.env.stdin)
			if err != nil {
				return err
			}
			return a.kvV2Run(cmd, &f, args[0], "kv patch", func(ctx context.Context, kv *api.KVv2, p kvPath) error {
				r, err := kv.Patch(ctx, p.rel, data, cas)
				if errors.Is(err, api.ErrNotFound) {
					return a.notFound(p.api("data"))
				}
				if err != nil {
					return err
				}
				return a.printKVMeta(r, p.api("data"))
			})
		},
	}
	f.add(cmd)
	cmd.Flags().IntVar(&cas, "cas", -1, "check-and-set: patch only if the current version is this (-1: always)")
	return cmd
}

func (a *app) kvGetCmd() *cobra.Command {
	var f kvFlags
	var version int
	var field string
	cmd := &cobra.Command{
		Use:   "get PATH",
		Short: "Read a secret",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.kvRun(cmd, &f, args[0], func(ctx context.Context, c *api.Client, p kvPath) error {
				var (
					r   *api.Response
					err error
				)
				if p.version == 1 {
					r, err = c.Read(ctx, p.api(""))
				} else {
					r, err = c.KVv2(p.mount).Get(ctx, p.rel, version)
				}
				if errors.Is(err, api.ErrNotFound) {
					return a.notFound(p.api("data"))
				}
				if err != nil {
					return err
				}
				if p.version == 1 {
					return a.printResponse(r, field)
				}
				data, _ := r.Data["data"].(map[string]any)
				if field != "" {
					return a.printField(data, field)
				}
				if a.g.format == "json" {
					return printJSON(a.env.stdout, r)
				}
				a.printWarnings(r.Warnings)
				meta, _ := r.Data["metadata"].(map[string]any)
				fmt.Fprintf(a.env.stdout, "== Secret Path ==\n%s\n\n======= Metadata =======\n", p.api("data"))
				printRows(a.env.stdout, mapRows(meta))
				fmt.Fprintf(a.env.stdout, "\n====== Data ======\n")
				printRows(a.env.stdout, mapRows(data))
				return nil
			})
		},
	}
	f.add(cmd)
	cmd.Flags().IntVar(&version, "version", 0, "version to read (0: the latest; KV v2 only)")
	cmd.Flags().StringVar(&field, "field", "", "print only this key's value")
	return cmd
}

func (a *app) kvListCmd() *cobra.Command {
	var f kvFlags
	cmd := &cobra.Command{
		Use:   "list PATH",
		Short: "List the keys under a folder",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.kvRun(cmd, &f, args[0], func(ctx context.Context, c *api.Client, p kvPath) error {
				path := p.api("metadata")
				if p.version == 2 && !strings.HasSuffix(path, "/") {
					path += "/"
				}
				r, err := c.Do(ctx, "LIST", path, nil)
				if errors.Is(err, api.ErrNotFound) {
					return a.notFound(path)
				}
				if err != nil {
					return err
				}
				return a.printKeys(r)
			})
		},
	}
	f.add(cmd)
	return cmd
}

// parseVersions reads --versions values ("1,2" or repeated).
func parseVersions(vs []string) ([]int, error) {
	var out []int
	for _, v := range vs {
		for _, s := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n <= 0 {
				return nil, usageErrorf("--versions: %q is not a version number", s)
			}
			out = append(out, n)
		}
	}
	return out, nil
}

func (a *app) kvDeleteCmd() *cobra.Command {
	var f kvFlags
	var versions []string
	cmd := &cobra.Command{
		Use:   "delete PATH",
		Short: "Soft-delete the latest version, or the given --versions",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vs, err := parseVersions(versions)
			if err != nil {
				return err
			}
			return a.kvRun(cmd, &f, args[0], func(ctx context.Context, c *api.Client, p kvPath) error {
				if p.version == 1 {
					if len(vs) > 0 {
						return usageErrorf("--versions needs KV version 2")
					}
					if _, err := c.Delete(ctx, p.api("")); err != nil {
						return err
					}
					a.success("Data deleted (if it existed) at: %s", p.api(""))
					return nil
				}
				if err := c.KVv2(p.mount).Delete(ctx, p.rel, vs...); err != nil {
					return err
				}
				if len(vs) > 0 {
					a.success("Data deleted (if it existed) at: %s", p.api("delete"))
				} else {
					a.success("Data deleted (if it existed) at: %s", p.api("data"))
				}
				return nil
			})
		},
	}
	f.add(cmd)
	cmd.Flags().StringSliceVar(&versions, "versions", nil, "versions to delete (comma-separated or repeated)")
	return cmd
}

// kvVersionsCmd builds "undelete" and "destroy", which both take
// --versions.
func (a *app) kvVersionsCmd(name, short string) *cobra.Command {
	var f kvFlags
	var versions []string
	cmd := &cobra.Command{
		Use:   name + " --versions=N[,N...] PATH",
		Short: short + " of a KV v2 secret",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vs, err := parseVersions(versions)
			if err != nil {
				return err
			}
			if len(vs) == 0 {
				return usageErrorf("kv %s needs --versions", name)
			}
			return a.kvV2Run(cmd, &f, args[0], "kv "+name, func(ctx context.Context, kv *api.KVv2, p kvPath) error {
				do := kv.Undelete
				if name == "destroy" {
					do = kv.Destroy
				}
				if err := do(ctx, p.rel, vs...); err != nil {
					return err
				}
				a.success("Data written to: %s", p.api(name))
				return nil
			})
		},
	}
	f.add(cmd)
	cmd.Flags().StringSliceVar(&versions, "versions", nil, "versions (comma-separated or repeated)")
	return cmd
}

func (a *app) kvMetaGetCmd() *cobra.Command {
	var f kvFlags
	cmd := &cobra.Command{
		Use:   "get PATH",
		Short: "Read a KV v2 secret's metadata and versions",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.kvV2Run(cmd, &f, args[0], "kv metadata", func(ctx context.Context, kv *api.KVv2, p kvPath) error {
				r, err := kv.Metadata(ctx, p.rel)
				if errors.Is(err, api.ErrNotFound) {
					return a.notFound(p.api("metadata"))
				}
				if err != nil {
					return err
				}
				if a.g.format == "json" {
					return printJSON(a.env.stdout, r)
				}
				w := a.env.stdout
				fmt.Fprintf(w, "== Metadata Path ==\n%s\n\n========== Metadata ==========\n", p.api("metadata"))
				printRows(w, mapRows(r.Data, "versions"))
				versions, _ := r.Data["versions"].(map[string]any)
				keys := make([]string, 0, len(versions))
				for k := range versions {
					keys = append(keys, k)
				}
				sort.Slice(keys, func(i, j int) bool {
					a, _ := strconv.Atoi(keys[i])
					b, _ := strconv.Atoi(keys[j])
					return a < b
				})
				for _, k := range keys {
					v, _ := versions[k].(map[string]any)
					fmt.Fprintf(w, "\n====== Version %s ======\n", k)
					printRows(w, mapRows(v))
				}
				return nil
			})
		},
	}
	f.add(cmd)
	return cmd
}

func (a *app) kvMetaPutCmd() *cobra.Command {
	var f kvFlags
	var (
		maxVersions int
		casRequired bool
		deleteAfter string
		custom      []string
	)
	cmd := &cobra.Command{
		Use:   "put PATH",
		Short: "Set a KV v2 secret's metadata",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fields := map[string]any{}
			fl := cmd.Flags()
			if fl.Changed("max-versions") {
				fields["max_versions"] = maxVersions
			}
			if fl.Changed("cas-required") {
				fields["cas_required"] = casRequired
			}
			if fl.Changed("delete-version-after") {
				fields["delete_version_after"] = deleteAfter
			}
			if fl.Changed("custom-metadata") {
				m, err := parsePairs("custom-metadata", custom)
				if err != nil {
					return err
				}
				fields["custom_metadata"] = m
			}
			return a.kvV2Run(cmd, &f, args[0], "kv metadata", func(ctx context.Context, kv *api.KVv2, p kvPath) error {
				if err := kv.PutMetadata(ctx, p.rel, fields); err != nil {
					return err
				}
				a.success("Data written to: %s", p.api("metadata"))
				return nil
			})
		},
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.IntVar(&maxVersions, "max-versions", 0, "versions to keep (0: the mount's setting)")
	fl.BoolVar(&casRequired, "cas-required", false, "require --cas on every write")
	fl.StringVar(&deleteAfter, "delete-version-after", "", `delete versions this long after they are written ("30d", "0s": never)`)
	fl.StringArrayVar(&custom, "custom-metadata", nil, "custom metadata K=V (repeatable)")
	return cmd
}

func (a *app) kvMetaDeleteCmd() *cobra.Command {
	var f kvFlags
	cmd := &cobra.Command{
		Use:   "delete PATH",
		Short: "Delete a KV v2 secret with all its versions",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.kvV2Run(cmd, &f, args[0], "kv metadata", func(ctx context.Context, kv *api.KVv2, p kvPath) error {
				if err := kv.DeleteMetadata(ctx, p.rel); err != nil {
					return err
				}
				a.success("Data deleted (if it existed) at: %s", p.api("metadata"))
				return nil
			})
		},
	}
	f.add(cmd)
	return cmd
}
