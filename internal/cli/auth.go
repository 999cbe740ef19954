package cli

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/coffer-dev/coffer/api"
	"github.com/spf13/cobra"
)

// authCmd is `coffer auth enable|list|disable|tune`, over sys/auth.
func (a *app) authCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "auth", Short: "Enable, disable, list and tune auth methods"}
	var (
		path, description    string
		defaultTTL, maxTTL   string
		options              []string
		tuneDefault, tuneMax string
		tuneDesc             string
		tuneOptions          []string
	)
	enable := &cobra.Command{
		Use:   "enable [--path=PATH] [--options=K=V]... TYPE",
		Short: "Enable an auth method (kubernetes, approle, userpass, jwt)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := parsePairs("options", options)
			if err != nil {
				return err
			}
			mount := strings.Trim(path, "/")
			if mount == "" {
				mount = args[0]
			}
			body := map[string]any{"type": args[0]}
			if description != "" {
				body["description"] = description
			}
			if len(opts) > 0 {
				body["options"] = opts
			}
			conf := map[string]any{}
			if defaultTTL != "" {
				conf["default_lease_ttl"] = defaultTTL
			}
			if maxTTL != "" {
				conf["max_lease_ttl"] = maxTTL
			}
			if len(conf) > 0 {
				body["config"] = conf
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.Do(cmd.Context(), http.MethodPost, "sys/auth/"+mount, body); err != nil {
				return err
			}
			a.success("Enabled %s auth method at: %s/", args[0], mount)
			return nil
		},
	}
	fl := enable.Flags()
	fl.StringVar(&path, "path", "", "where to mount it under auth/ (default: the type's name)")
	fl.StringVar(&description, "description", "", "human-readable description")
	fl.StringVar(&defaultTTL, "default-lease-ttl", "", "default TTL of the tokens it issues")
	fl.StringVar(&maxTTL, "max-lease-ttl", "", "maximum TTL of the tokens it issues")
	fl.StringArrayVar(&options, "options", nil, "method option K=V (repeatable)")

	disable := a.mountDisableCmd("Disable an auth method; the tokens it issued are revoked", "sys/auth/", "the auth method")
	list := a.mountListCmd("List enabled auth methods", "sys/auth", func(m map[string]any) string { return formatValue(m["type"]) })

	tune := &cobra.Command{
		Use:   "tune [--default-lease-ttl=D] [--max-lease-ttl=D] [--description=S] [--options=K=V]... PATH",
		Short: "Change an auth method's TTLs, description or options",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := parsePairs("options", tuneOptions)
			if err != nil {
				return err
			}
			body := map[string]any{}
			if tuneDefault != "" {
				body["default_lease_ttl"] = tuneDefault
			}
			if tuneMax != "" {
				body["max_lease_ttl"] = tuneMax
			}
			if cmd.Flags().Changed("description") {
				body["description"] = tuneDesc
			}
			if len(opts) > 0 {
				body["options"] = opts
			}
			if len(body) == 0 {
				return usageErrorf("nothing to tune: give --default-lease-ttl, --max-lease-ttl, --description or --options")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			mount := strings.Trim(args[0], "/")
			if _, err := c.Do(cmd.Context(), http.MethodPost, "sys/auth/"+mount+"/tune", body); err != nil {
				return err
			}
			a.success("Tuned the auth method at: %s/", mount)
			return nil
		},
	}
	tf := tune.Flags()
	tf.StringVar(&tuneDefault, "default-lease-ttl", "", "default TTL of the tokens it issues")
	tf.StringVar(&tuneMax, "max-lease-ttl", "", "maximum TTL of the tokens it issues")
	tf.StringVar(&tuneDesc, "description", "", "human-readable description")
	tf.StringArrayVar(&tuneOptions, "options", nil, "method option K=V (repeatable)")

	cmd.AddCommand(enable, disable, list, tune)
	return cmd
}

// defaultK8sTokenFile is where a pod finds its service-account token.
const defaultK8sTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// methodLogin logs in with an auth method and returns the login response,
// whose Auth.ClientToken is the new token (the caller stores it as
// `login TOKEN` does). method is kubernetes, approle, userpass or jwt;
// mount is its path under auth/ ("" : the method's name); args are
// key=value pairs as for `write` (values may be @file or -):
//
//	userpass:   username=NAME [password=P]   (prompted when missing)
//	approle:    role_id=ID secret_id=ID
//	kubernetes: role=R [jwt=T]               (default jwt: the pod's own token file)
//	jwt:        role=R jwt=T
//
// Usage errors (a missing field, an unknown method) are returned as such.
func (a *app) methodLogin(ctx context.Context, method, mount string, args []string) (*api.Response, error) {
	data, err := parseKV(args, a.env.stdin)
	if err != nil {
		return nil, err
	}
	if mount = strings.Trim(mount, "/"); mount == "" {
		mount = method
	}
	str := func(k string) string { s, _ := data[k].(string); return strings.TrimSpace(s) }
	path := "auth/" + mount + "/login"
	body := map[string]any{}
	switch method {
	case "userpass":
		user := str("username")
		if user == "" {
			return nil, usageErrorf("userpass login needs username=NAME")
		}
		pw, _ := data["password"].(string)
		if pw == "" {
			if pw, err = a.promptSecret("Password (will be hidden): "); err != nil {
				return nil, err
			}
		}
		path += "/" + user
		body["password"] = pw
	case "approle":
		if str("role_id") == "" {
			return nil, usageErrorf("approle login needs role_id=ID (and secret_id=ID unless the role has bind_secret_id=false)")
		}
		body["role_id"] = str("role_id")
		if s := str("secret_id"); s != "" {
			body["secret_id"] = s
		}
	case "kubernetes", "jwt":
		if str("role") == "" && method == "kubernetes" {
			return nil, usageErrorf("kubernetes login needs role=ROLE")
		}
		jwt := str("jwt")
		if jwt == "" && method == "kubernetes" {
			raw, err := os.ReadFile(defaultK8sTokenFile)
			if err != nil {
				return nil, fmt.Errorf("no jwt=... given and the pod's token cannot be read: %w", err)
			}
			jwt = strings.TrimSpace(string(raw))
		}
		if jwt == "" {
			return nil, usageErrorf("%s login needs jwt=TOKEN (or jwt=@FILE)", method)
		}
		if r := str("role"); r != "" {
			body["role"] = r
		}
		body["jwt"] = jwt
	default:
		return nil, usageErrorf("unknown login method %q: use token, kubernetes, approle, userpass or jwt", method)
	}
	c, err := a.client()
	if err != nil {
		return nil, err
	}
	r, err := c.WithToken("").Do(ctx, http.MethodPost, path, body)
	if err != nil {
		return nil, err
	}
	if r == nil || r.Auth == nil || r.Auth.ClientToken == "" {
		return nil, fmt.Errorf("the server returned no token for %s", path)
	}
	return r, nil
}
