// Package config reads the server's configuration file: HCL shaped like
// Vault's, so an existing config reads naturally.
//
//	storage "bolt" { path = "/var/lib/coffer/coffer.db" }
//	listener "tcp" {
//	  address     = "127.0.0.1:8200"
//	  tls_disable = true
//	}
//	api_addr  = "https://coffer.example.com:8200"
//	log_level = "info"
//
// Settings Vault has and Coffer does not need (ui, disable_mlock, ...) are
// accepted and reported as warnings, so a Vault config does not fail on
// them; an unknown block or a value of the wrong type is an error with its
// position.
package config

import (
	"fmt"
	"math/big"
	"os"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// Config is the server's configuration.
type Config struct {
	Storage     Storage
	Listeners   []Listener
	APIAddr     string
	ClusterAddr string
	ClusterName string
	LogLevel    string // debug, info, warn, error; "" means info
	LogFormat   string // text or json; "" means text
	// Seals and Audits are the raw seal and audit blocks, read by the
	// issues that build them (auto-unseal, audit devices).
	Seals  []Block
	Audits []Block
	// DeclarativeConfig is the declarative day-0 file or directory.
	DeclarativeConfig string
	// AuditAllowedDirs are the directories where file audit devices
	// enabled through the API may write (audit_allowed_dirs).
	AuditAllowedDirs []string
	// RaftSnapshots is the Coffer-only raft_snapshots block (automated
	// snapshots of a raft cluster, run on the active node); nil when absent.
	RaftSnapshots *Block
	// Warnings lists settings that were accepted but ignored.
	Warnings []string
}

// Storage is the storage block: its type, its settings, and its nested
// blocks (raft's retry_join), in order.
type Storage struct {
	Type    string
	Options map[string]string
	Blocks  []NestedBlock
}

// NestedBlock is a block inside the storage block, e.g. retry_join.
type NestedBlock struct {
	Type       string
	Attributes map[string]any
}

// Listener is a listener "tcp" block.
type Listener struct {
	Type           string
	Address        string
	TLSDisable     bool
	TLSCertFile    string
	TLSKeyFile     string
	TLSMinVersion  string
	MaxRequestSize int64
	ClusterAddress string
}

// Block is a generic labelled block with flat attributes.
type Block struct {
	Labels     []string
	Attributes map[string]any
}

// ignored are Vault settings Coffer accepts without effect.
var ignored = map[string]string{
	"ui":                              "Coffer has no web UI",
	"disable_mlock":                   "Coffer does not mlock memory",
	"disable_cache":                   "Coffer's caches cannot be disabled",
	"default_lease_ttl":               "set TTLs on mounts and token roles",
	"max_lease_ttl":                   "set TTLs on mounts and token roles",
	"plugin_directory":                "Coffer has no external plugins",
	"enable_response_header_hostname": "not supported",
	"pid_file":                        "not supported",
}

// ParseFile reads and parses the config file at path.
func ParseFile(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, src)
}

// Parse parses config source; filename is used in error positions.
func Parse(filename string, src []byte) (*Config, error) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.Pos{Line: 1, Column: 1})
	if diags.HasErrors() {
		return nil, fmt.Errorf("config: %s", diags.Error())
	}
	body := f.Body.(*hclsyntax.Body)
	c := &Config{}
	attrs, err := attributes(body)
	if err != nil {
		return nil, err
	}
	for _, name := range sortedKeys(attrs) {
		v := attrs[name]
		switch name {
		case "api_addr":
			c.APIAddr, err = asString(name, v)
		case "cluster_addr":
			c.ClusterAddr, err = asString(name, v)
		case "cluster_name":
			c.ClusterName, err = asString(name, v)
		case "log_level":
			c.LogLevel, err = asString(name, v)
			if err == nil {
				switch strings.ToLower(c.LogLevel) {
				case "", "trace", "debug", "info", "warn", "warning", "error":
				default:
					err = fmt.Errorf("config: log_level must be one of debug, info, warn, error (got %q)", c.LogLevel)
				}
			}
		case "log_format":
			c.LogFormat, err = asString(name, v)
		case "declarative_config":
			c.DeclarativeConfig, err = asString(name, v)
		case "audit_allowed_dirs":
			c.AuditAllowedDirs, err = asStrings(name, v)
		default:
			why, ok := ignored[name]
			if !ok {
				return nil, fmt.Errorf("config: %s: unknown setting %q", body.Attributes[name].SrcRange, name)
			}
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s is ignored: %s", name, why))
		}
		if err != nil {
			return nil, err
		}
	}
	storages := 0
	for _, b := range body.Blocks {
		battrs, err := attributes(b.Body)
		if err != nil {
			return nil, err
		}
		switch b.Type {
		case "storage", "backend":
			if len(b.Labels) != 1 {
				return nil, fmt.Errorf("config: %s: storage needs one label, its type", b.DefRange())
			}
			storages++
			c.Storage = Storage{Type: b.Labels[0], Options: map[string]string{}}
			for k, v := range battrs {
				s, err := asString(k, v)
				if err != nil {
					return nil, err
				}
				c.Storage.Options[k] = s
			}
			for _, nb := range b.Body.Blocks {
				if len(nb.Labels) != 0 {
					return nil, fmt.Errorf("config: %s: a %s block inside storage takes no label", nb.DefRange(), nb.Type)
				}
				nattrs, err := attributes(nb.Body)
				if err != nil {
					return nil, err
				}
				c.Storage.Blocks = append(c.Storage.Blocks, NestedBlock{Type: nb.Type, Attributes: nattrs})
			}
		case "listener":
			if len(b.Labels) != 1 || b.Labels[0] != "tcp" {
				return nil, fmt.Errorf("config: %s: only listener \"tcp\" is supported", b.DefRange())
			}
			l, err := listener(battrs)
			if err != nil {
				return nil, fmt.Errorf("config: %s: %w", b.DefRange(), err)
			}
			c.Listeners = append(c.Listeners, l)
		case "seal":
			c.Seals = append(c.Seals, Block{Labels: b.Labels, Attributes: battrs})
		case "audit":
			c.Audits = append(c.Audits, Block{Labels: b.Labels, Attributes: battrs})
		case "raft_snapshots":
			if c.RaftSnapshots != nil {
				return nil, fmt.Errorf("config: %s: only one raft_snapshots block is allowed", b.DefRange())
			}
			c.RaftSnapshots = &Block{Labels: b.Labels, Attributes: battrs}
		case "telemetry":
			c.Warnings = append(c.Warnings, "telemetry is ignored: scrape sys/metrics?format=prometheus")
		default:
			return nil, fmt.Errorf("config: %s: unknown block %q", b.DefRange(), b.Type)
		}
	}
	if storages > 1 {
		return nil, fmt.Errorf("config: only one storage block is allowed")
	}
	if storages == 0 {
		return nil, fmt.Errorf("config: a storage block is required, e.g. storage \"bolt\" { path = \"/var/lib/coffer/coffer.db\" }")
	}
	if len(c.Listeners) == 0 {
		return nil, fmt.Errorf("config: a listener \"tcp\" block is required")
	}
	return c, nil
}

func listener(attrs map[string]any) (Listener, error) {
	l := Listener{Type: "tcp", Address: "127.0.0.1:8200"}
	var err error
	for _, k := range sortedKeys(attrs) {
		v := attrs[k]
		switch k {
		case "address":
			l.Address, err = asString(k, v)
		case "cluster_address":
			l.ClusterAddress, err = asString(k, v)
		case "tls_disable":
			l.TLSDisable, err = asBool(k, v)
		case "tls_cert_file":
			l.TLSCertFile, err = asString(k, v)
		case "tls_key_file":
			l.TLSKeyFile, err = asString(k, v)
		case "tls_min_version":
			l.TLSMinVersion, err = asString(k, v)
		case "max_request_size":
			var n int64
			n, err = asInt(k, v)
			l.MaxRequestSize = n
		default:
			return l, fmt.Errorf("unknown listener setting %q", k)
		}
		if err != nil {
			return l, err
		}
	}
	if !l.TLSDisable && (l.TLSCertFile == "" || l.TLSKeyFile == "") {
		return l, fmt.Errorf("listener: tls_cert_file and tls_key_file are required unless tls_disable = true")
	}
	return l, nil
}

// attributes evaluates a body's attributes (no variables or functions).
func attributes(body *hclsyntax.Body) (map[string]any, error) {
	out := make(map[string]any, len(body.Attributes))
	for name, a := range body.Attributes {
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			return nil, fmt.Errorf("config: %s", diags.Error())
		}
		g, err := toGo(v)
		if err != nil {
			return nil, fmt.Errorf("config: %s: %s: %w", a.SrcRange, name, err)
		}
		out[name] = g
	}
	return out, nil
}

func toGo(v cty.Value) (any, error) {
	if v.IsNull() {
		return nil, nil
	}
	t := v.Type()
	switch {
	case t == cty.String:
		return v.AsString(), nil
	case t == cty.Bool:
		return v.True(), nil
	case t == cty.Number:
		bf := v.AsBigFloat()
		if bf.IsInt() {
			i, _ := bf.Int(new(big.Int))
			return i.Int64(), nil
		}
		f, _ := bf.Float64()
		return f, nil
	case t.IsObjectType() || t.IsMapType():
		m := map[string]any{}
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			g, err := toGo(e)
			if err != nil {
				return nil, err
			}
			m[k.AsString()] = g
		}
		return m, nil
	case t.IsTupleType() || t.IsListType() || t.IsSetType():
		var l []any
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			g, err := toGo(e)
			if err != nil {
				return nil, err
			}
			l = append(l, g)
		}
		return l, nil
	}
	return nil, fmt.Errorf("unsupported value type %s", t.FriendlyName())
}

func asString(name string, v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return fmt.Sprint(x), nil
	case bool:
		return fmt.Sprint(x), nil
	}
	return "", fmt.Errorf("config: %s must be a string", name)
}

func asStrings(name string, v any) ([]string, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("config: %s must be a list of strings", name)
	}
	out := make([]string, 0, len(l))
	for _, x := range l {
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("config: %s must be a list of strings", name)
		}
		out = append(out, s)
	}
	return out, nil
}

func asBool(name string, v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		switch strings.ToLower(x) {
		case "true", "1":
			return true, nil
		case "false", "0", "":
			return false, nil
		}
	case int64:
		return x != 0, nil
	}
	return false, fmt.Errorf("config: %s must be true or false", name)
}

func asInt(name string, v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case string:
		var n int64
		if _, err := fmt.Sscan(x, &n); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("config: %s must be a whole number", name)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
