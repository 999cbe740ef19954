// Package transitseal is the "transit" auto-unseal seal: the KEK is
// wrapped by the transit engine of another Coffer (or any server with
// Vault's transit API), over HTTP with the project's Go client.
//
// It lives apart from package seal so that the core, which imports seal,
// stays free of net/http. The server builds a *Seal from the config's
// seal "transit" block and passes it to seal.Config.Protector:
//
//	seal "transit" {
//	  address    = "https://coffer-a:8200"
//	  token      = "..."          // or VAULT_TOKEN in the environment
//	  key_name   = "autounseal"
//	  mount_path = "transit/"
//	  tls_ca_cert = "/etc/coffer/ca.pem"
//	}
//
// The key must exist on the remote server, and the token needs update on
// <mount_path>encrypt/<key_name> and <mount_path>decrypt/<key_name>.
package transitseal

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/coffer-dev/coffer/api"
	"github.com/coffer-dev/coffer/internal/seal"
)

// Config configures a transit seal: Vault's seal "transit" block.
type Config struct {
	// Address is the remote server's URL. "": $VAULT_ADDR. Required.
	Address string
	// Token authenticates to it. "": $VAULT_TOKEN. Required.
	Token string
	// KeyName is the transit key that wraps the KEK. Required.
	KeyName string
	// MountPath is where transit is mounted. "": "transit/".
	MountPath string
	// TLSCACert is a PEM file of CAs for the remote server. "": system pool.
	TLSCACert string
	// TLSClientCert and TLSClientKey, both or neither, are PEM files of a
	// client certificate. "": none.
	TLSClientCert string
	TLSClientKey  string
	// TLSServerName overrides the name checked in the server certificate.
	TLSServerName string
	// TLSSkipVerify disables server certificate checks (testing only).
	TLSSkipVerify bool
	// Timeout bounds each call. 0: 10 seconds.
	Timeout time.Duration
	// Getenv reads the VAULT_ADDR/VAULT_TOKEN fallbacks. nil: os.Getenv.
	Getenv func(string) string
}

// Seal is a seal.Wrapper over a remote transit key. It is safe for
// concurrent use; New does no network I/O, so a server starts (sealed)
// while the remote is down.
type Seal struct {
	client *api.Client
	mount  string
	key    string
	addr   string
}

var _ seal.Wrapper = (*Seal)(nil)

// New validates cfg and returns a Seal. Errors wrap seal.ErrInvalidConfig
// (a missing setting, an unreadable CA or client certificate); none holds
// the token.
func New(cfg Config) (*Seal, error) {
	if cfg.Getenv == nil {
		cfg.Getenv = os.Getenv
	}
	if cfg.Address == "" {
		cfg.Address = cfg.Getenv("VAULT_ADDR")
	}
	if cfg.Token == "" {
		cfg.Token = cfg.Getenv("VAULT_TOKEN")
	}
	if cfg.MountPath == "" {
		cfg.MountPath = "transit/"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	invalid := func(format string, a ...any) error {
		return fmt.Errorf("%w: transit seal: %s", seal.ErrInvalidConfig, fmt.Sprintf(format, a...))
	}
	switch {
	case cfg.Address == "":
		return nil, invalid("address is required (or VAULT_ADDR)")
	case cfg.Token == "":
		return nil, invalid("token is required (or VAULT_TOKEN)")
	case cfg.KeyName == "" || strings.Contains(cfg.KeyName, "/"):
		return nil, invalid("key_name is required and has no /")
	case (cfg.TLSClientCert == "") != (cfg.TLSClientKey == ""):
		return nil, invalid("tls_client_cert and tls_client_key go together")
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.TLSServerName, InsecureSkipVerify: cfg.TLSSkipVerify}
	if cfg.TLSCACert != "" {
		pem, err := os.ReadFile(cfg.TLSCACert)
		if err != nil {
			return nil, invalid("tls_ca_cert: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, invalid("tls_ca_cert: no certificate in %s", cfg.TLSCACert)
		}
		tlsCfg.RootCAs = pool
	}
	if cfg.TLSClientCert != "" {
		c, err := tls.LoadX509KeyPair(cfg.TLSClientCert, cfg.TLSClientKey)
		if err != nil {
			return nil, invalid("client certificate: %v", err)
		}
		tlsCfg.Certificates = []tls.Certificate{c}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	client, err := api.NewClient(api.Config{
		Address:    cfg.Address,
		Token:      cfg.Token,
		HTTPClient: &http.Client{Transport: tr, Timeout: cfg.Timeout},
	})
	if err != nil {
		return nil, invalid("%v", err)
	}
	mount := strings.Trim(cfg.MountPath, "/") + "/"
	return &Seal{client: client, mount: mount, key: cfg.KeyName, addr: client.Address()}, nil
}

// Type implements seal.Protector.
func (*Seal) Type() string { return "transit" }

// Wrap implements seal.Wrapper: the blob is the transit ciphertext
// ("vault:vN:..."). Errors wrap seal.ErrKeyUnavailable.
func (s *Seal) Wrap(ctx context.Context, kek []byte) ([]byte, error) {
	r, err := s.client.Write(ctx, s.mount+"encrypt/"+s.key, map[string]any{
		"plaintext": base64.StdEncoding.EncodeToString(kek),
	})
	if err != nil {
		return nil, s.classify("encrypt", err)
	}
	ct, _ := r.Data["ciphertext"].(string)
	if !strings.HasPrefix(ct, "vault:v") {
		return nil, fmt.Errorf("%w: transit seal: %s answered encrypt without a ciphertext", seal.ErrKeyUnavailable, s.addr)
	}
	return []byte(ct), nil
}

// Unwrap implements seal.Wrapper. A server that cannot be reached, is
// sealed, refuses the token or has no such key is seal.ErrKeyUnavailable;
// a ciphertext the key refuses (HTTP 400) is seal.ErrInvalidKey.
func (s *Seal) Unwrap(ctx context.Context, blob []byte) ([]byte, error) {
	r, err := s.client.Write(ctx, s.mount+"decrypt/"+s.key, map[string]any{"ciphertext": string(blob)})
	if err != nil {
		return nil, s.classify("decrypt", err)
	}
	pt, _ := r.Data["plaintext"].(string)
	kek, err := base64.StdEncoding.DecodeString(pt)
	if err != nil {
		return nil, fmt.Errorf("%w: transit seal: %s answered decrypt without a base64 plaintext", seal.ErrInvalidKey, s.addr)
	}
	return kek, nil
}

// classify turns a client error into the seal's sentinels. The server's
// messages hold no secrets; the token is never part of them.
func (s *Seal) classify(op string, err error) error {
	var ae *api.Error
	if errors.As(err, &ae) && ae.StatusCode == http.StatusBadRequest && op == "decrypt" {
		return fmt.Errorf("%w: transit seal: key %q on %s refused the wrapped KEK: %v", seal.ErrInvalidKey, s.key, s.addr, err)
	}
	return fmt.Errorf("%w: transit seal: %s with key %q on %s: %v", seal.ErrKeyUnavailable, op, s.key, s.addr, err)
}

// ConfigFromBlock reads a seal "transit" block's attributes (as
// internal/config collects them). Unknown settings are
// seal.ErrInvalidConfig; Vault's disable_renewal, namespace (must be
// empty) and disabled are accepted.
func ConfigFromBlock(attrs map[string]any) (Config, error) {
	var c Config
	for k, v := range attrs {
		str := func() (string, error) {
			s, ok := v.(string)
			if !ok {
				return "", fmt.Errorf("%w: transit seal: %s must be a string", seal.ErrInvalidConfig, k)
			}
			return s, nil
		}
		var err error
		switch k {
		case "address":
			c.Address, err = str()
		case "token":
			c.Token, err = str()
		case "key_name":
			c.KeyName, err = str()
		case "mount_path":
			c.MountPath, err = str()
		case "tls_ca_cert":
			c.TLSCACert, err = str()
		case "tls_client_cert":
			c.TLSClientCert, err = str()
		case "tls_client_key":
			c.TLSClientKey, err = str()
		case "tls_server_name":
			c.TLSServerName, err = str()
		case "tls_skip_verify":
			switch x := v.(type) {
			case bool:
				c.TLSSkipVerify = x
			case string:
				c.TLSSkipVerify = x == "true" || x == "1"
			default:
				err = fmt.Errorf("%w: transit seal: tls_skip_verify must be true or false", seal.ErrInvalidConfig)
			}
		case "namespace":
			if s, _ := v.(string); s != "" {
				err = fmt.Errorf("%w: transit seal: namespaces are not supported", seal.ErrInvalidConfig)
			}
		case "disable_renewal", "disabled":
		default:
			err = fmt.Errorf("%w: transit seal: unknown setting %q", seal.ErrInvalidConfig, k)
		}
		if err != nil {
			return Config{}, err
		}
	}
	return c, nil
}
