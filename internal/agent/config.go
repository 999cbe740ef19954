package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// ErrConfig wraps every configuration error, so callers can tell a bad
// file (exit, do not retry) from a failure at run time.
var ErrConfig = errors.New("agent: invalid configuration")

// Config is an agent configuration, read from HCL shaped like Vault
// Agent's by ParseConfig.
type Config struct {
	// Address is the server's URL. "": the COFFER_ADDR/VAULT_ADDR
	// environment, else http://127.0.0.1:8200.
	Address string
	// CACert is a PEM file of CAs to trust. "": system pool.
	CACert string
	// TLSSkipVerify disables certificate checks (testing only).
	TLSSkipVerify bool
	// Method is the auto-auth method; nil means no auto-auth (the token
	// then comes from COFFER_TOKEN/VAULT_TOKEN).
	Method *Method
	// Sinks receive each new token.
	Sinks []Sink
	// Templates are rendered to files.
	Templates []Template
	// ExitAfterAuth makes the agent exit after authenticating and
	// rendering every template once (as --once).
	ExitAfterAuth bool
	// StaticInterval is how often secrets without a lease are re-read
	// when no change event arrives. 0: DefaultStaticInterval.
	StaticInterval time.Duration
	// ListenAddr, from listener "tcp" { address }, serves
	// /agent/v1/health. "": no listener.
	ListenAddr string
}

// DefaultStaticInterval is Vault Agent's static_secret_render_interval
// default; events make changes arrive much sooner.
const DefaultStaticInterval = 5 * time.Minute

// Method is an auto_auth method block.
type Method struct {
	// Type is "token_file", "kubernetes" or "approle".
	Type string
	// MountPath is where the auth method is mounted ("auth/kubernetes").
	// "": "auth/<type>".
	MountPath string
	// Options are the method's config = { ... } values as strings.
	Options map[string]string
}

// Sink is a sink "file" block.
type Sink struct {
	Path string
	Mode fs.FileMode // 0: 0640, Vault Agent's default
}

// Template is a template block.
type Template struct {
	// Source is a template file; Contents an inline template. Exactly
	// one is set.
	Source   string
	Contents string
	// Destination is the file written.
	Destination string
	// Perms are the file's permissions. 0: 0400.
	Perms fs.FileMode
	// Command runs through /bin/sh -c after the file changes.
	Command string
	// ErrorOnMissingKey fails the render when a map key is missing
	// instead of printing "<no value>".
	ErrorOnMissingKey bool
}

type hclServer struct {
	Address       string `hcl:"address,optional"`
	CACert        string `hcl:"ca_cert,optional"`
	TLSSkipVerify bool   `hcl:"tls_skip_verify,optional"`
}

type hclMethod struct {
	Type      string            `hcl:"type,label"`
	MountPath string            `hcl:"mount_path,optional"`
	Namespace string            `hcl:"namespace,optional"`
	Config    map[string]string `hcl:"config,optional"`
}

type hclSink struct {
	Type   string            `hcl:"type,label"`
	Config map[string]string `hcl:"config,optional"`
}

type hclAutoAuth struct {
	Methods []hclMethod `hcl:"method,block"`
	Sinks   []hclSink   `hcl:"sink,block"`
}

type hclTemplate struct {
	Source            string `hcl:"source,optional"`
	Contents          string `hcl:"contents,optional"`
	Destination       string `hcl:"destination"`
	Perms             string `hcl:"perms,optional"`
	Command           string `hcl:"command,optional"`
	ErrorOnMissingKey bool   `hcl:"error_on_missing_key,optional"`
}

type hclTemplateConfig struct {
	StaticSecretRenderInterval string `hcl:"static_secret_render_interval,optional"`
	ExitOnRetryFailure         bool   `hcl:"exit_on_retry_failure,optional"`
}

type hclListener struct {
	Type       string `hcl:"type,label"`
	Address    string `hcl:"address"`
	TLSDisable bool   `hcl:"tls_disable,optional"`
}

type hclFile struct {
	Coffer         []hclServer         `hcl:"coffer,block"`
	Vault          []hclServer         `hcl:"vault,block"`
	AutoAuth       []hclAutoAuth       `hcl:"auto_auth,block"`
	Templates      []hclTemplate       `hcl:"template,block"`
	TemplateConfig []hclTemplateConfig `hcl:"template_config,block"`
	Listeners      []hclListener       `hcl:"listener,block"`
	ExitAfterAuth  bool                `hcl:"exit_after_auth,optional"`
	PidFile        string              `hcl:"pid_file,optional"`
}

// ParseConfigFile reads and parses the file at path.
func ParseConfigFile(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return ParseConfig(src, path)
}

// ParseConfig parses an agent configuration. filename is used in error
// positions. Every error wraps ErrConfig and names the setting, with its
// position when HCL knows it.
func ParseConfig(src []byte, filename string) (*Config, error) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, fmt.Errorf("%w: %s", ErrConfig, diags.Error())
	}
	var h hclFile
	if diags := gohcl.DecodeBody(f.Body, nil, &h); diags.HasErrors() {
		return nil, fmt.Errorf("%w: %s", ErrConfig, diags.Error())
	}
	bad := func(format string, a ...any) (*Config, error) {
		return nil, fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
	}
	cfg := &Config{ExitAfterAuth: h.ExitAfterAuth}

	servers := append(h.Coffer, h.Vault...)
	if len(servers) > 1 {
		return bad("only one coffer (or vault) block is allowed")
	}
	if len(servers) == 1 {
		cfg.Address, cfg.CACert, cfg.TLSSkipVerify = servers[0].Address, servers[0].CACert, servers[0].TLSSkipVerify
	}

	if len(h.AutoAuth) > 1 {
		return bad("only one auto_auth block is allowed")
	}
	if len(h.AutoAuth) == 1 {
		aa := h.AutoAuth[0]
		if len(aa.Methods) != 1 {
			return bad("auto_auth needs exactly one method block, found %d", len(aa.Methods))
		}
		m := aa.Methods[0]
		if m.Namespace != "" {
			return bad("auto_auth method: namespaces are not supported")
		}
		opts := m.Config
		if opts == nil {
			opts = map[string]string{}
		}
		switch m.Type {
		case "token_file":
			if opts["token_file_path"] == "" {
				return bad(`method "token_file": config.token_file_path is required`)
			}
		case "kubernetes":
			if opts["role"] == "" {
				return bad(`method "kubernetes": config.role is required`)
			}
		case "approle":
			if opts["role_id_file_path"] == "" || opts["secret_id_file_path"] == "" {
				return bad(`method "approle": config.role_id_file_path and config.secret_id_file_path are required`)
			}
		default:
			return bad("auto_auth method %q is not supported (token_file, kubernetes, approle)", m.Type)
		}
		mount := strings.Trim(m.MountPath, "/")
		if mount == "" {
			mount = "auth/" + m.Type
		}
		cfg.Method = &Method{Type: m.Type, MountPath: mount, Options: opts}
		for _, s := range aa.Sinks {
			if s.Type != "file" {
				return bad("sink %q is not supported (file)", s.Type)
			}
			if s.Config["path"] == "" {
				return bad(`sink "file": config.path is required`)
			}
			mode, err := parseMode(s.Config["mode"], 0o640)
			if err != nil {
				return bad(`sink "file": config.mode: %v`, err)
			}
			cfg.Sinks = append(cfg.Sinks, Sink{Path: s.Config["path"], Mode: mode})
		}
	}

	for i, t := range h.Templates {
		if (t.Source == "") == (t.Contents == "") {
			return bad("template %d: set exactly one of source and contents", i+1)
		}
		if t.Destination == "" {
			return bad("template %d: destination is required", i+1)
		}
		perms, err := parseMode(t.Perms, 0o400)
		if err != nil {
			return bad("template %d: perms: %v", i+1, err)
		}
		cfg.Templates = append(cfg.Templates, Template{
			Source: t.Source, Contents: t.Contents, Destination: t.Destination,
			Perms: perms, Command: t.Command, ErrorOnMissingKey: t.ErrorOnMissingKey,
		})
	}

	if len(h.TemplateConfig) > 1 {
		return bad("only one template_config block is allowed")
	}
	if len(h.TemplateConfig) == 1 && h.TemplateConfig[0].StaticSecretRenderInterval != "" {
		d, err := time.ParseDuration(h.TemplateConfig[0].StaticSecretRenderInterval)
		if err != nil || d <= 0 {
			return bad("template_config: static_secret_render_interval %q is not a positive duration", h.TemplateConfig[0].StaticSecretRenderInterval)
		}
		cfg.StaticInterval = d
	}

	if len(h.Listeners) > 1 {
		return bad("only one listener block is allowed")
	}
	if len(h.Listeners) == 1 {
		l := h.Listeners[0]
		if l.Type != "tcp" {
			return bad("listener %q is not supported (tcp)", l.Type)
		}
		if !l.TLSDisable {
			return bad(`listener "tcp": only tls_disable = true is supported (the listener serves health only)`)
		}
		cfg.ListenAddr = l.Address
	}
	return cfg, nil
}

// parseMode reads a file mode written the Vault way: "0640" or 0640 (HCL
// reads the number as 640, whose digits are still the octal mode).
func parseMode(s string, def fs.FileMode) (fs.FileMode, error) {
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o777 {
		return 0, fmt.Errorf("%q is not an octal file mode such as \"0640\"", s)
	}
	return fs.FileMode(v), nil
}
