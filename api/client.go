package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// DefaultAddress is used when Config.Address is empty.
const DefaultAddress = "http://127.0.0.1:8200"

// TokenFile is the name, in the user's home directory, of the file that
// "coffer login" writes and ConfigFromEnv reads.
const TokenFile = ".coffer-token"

// Config configures a Client. The zero value talks to DefaultAddress
// without a token.
type Config struct {
	// Address is the server's base URL ("https://coffer:8200").
	// "": DefaultAddress.
	Address string
	// Token is sent in X-Vault-Token. "": no token header.
	Token string
	// HTTPClient sends the requests. nil: a client with its own transport
	// (honouring CACert and TLSSkipVerify) and no overall timeout, so
	// long backups are bounded only by the context.
	HTTPClient *http.Client
	// CACert is a PEM file of CA certificates to trust instead of the
	// system pool. Ignored when HTTPClient is set. "": system pool.
	CACert string
	// TLSSkipVerify disables server certificate checks (testing only).
	// Ignored when HTTPClient is set.
	TLSSkipVerify bool
}

// ConfigFromEnv returns a Config from the environment, read through
// getenv: COFFER_ADDR, else VAULT_ADDR; COFFER_TOKEN, else VAULT_TOKEN,
// else the first line of home/.coffer-token (when home is not empty and
// the file exists); COFFER_CACERT, else VAULT_CACERT; COFFER_SKIP_VERIFY,
// else VAULT_SKIP_VERIFY ("1", "true" or "yes"). It returns an error only
// when the token file exists but cannot be read.
func ConfigFromEnv(getenv func(string) string, home string) (Config, error) {
	first := func(names ...string) string {
		for _, n := range names {
			if v := getenv(n); v != "" {
				return v
			}
		}
		return ""
	}
	cfg := Config{
		Address: first("COFFER_ADDR", "VAULT_ADDR"),
		Token:   first("COFFER_TOKEN", "VAULT_TOKEN"),
		CACert:  first("COFFER_CACERT", "VAULT_CACERT"),
	}
	switch strings.ToLower(first("COFFER_SKIP_VERIFY", "VAULT_SKIP_VERIFY")) {
	case "1", "true", "yes":
		cfg.TLSSkipVerify = true
	}
	if cfg.Token == "" && home != "" {
		b, err := os.ReadFile(filepath.Join(home, TokenFile))
		switch {
		case err == nil:
			cfg.Token = strings.TrimSpace(string(b))
		case !errors.Is(err, os.ErrNotExist):
			return cfg, fmt.Errorf("api: read token file: %w", err)
		}
	}
	return cfg, nil
}

// Client sends requests to one server. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client
}

// NewClient returns a Client for cfg. It fails if the address is not an
// http or https URL or the CA file cannot be read.
func NewClient(cfg Config) (*Client, error) {
	addr := cfg.Address
	if addr == "" {
		addr = DefaultAddress
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("api: address %q is not an http or https URL", addr)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	hc := cfg.HTTPClient
	if hc == nil {
		tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.TLSSkipVerify}
		if cfg.CACert != "" {
			pem, err := os.ReadFile(cfg.CACert)
			if err != nil {
				return nil, fmt.Errorf("api: read CA certificate: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("api: no certificate found in %s", cfg.CACert)
			}
			tlsCfg.RootCAs = pool
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tlsCfg
		hc = &http.Client{Transport: tr}
	}
	return &Client{base: u, token: cfg.Token, hc: hc}, nil
}

// Address returns the server's base URL.
func (c *Client) Address() string { return c.base.String() }

// Token returns the token the client sends.
func (c *Client) Token() string { return c.token }

// WithToken returns a copy of c that sends token instead.
func (c *Client) WithToken(token string) *Client {
	cp := *c
	cp.token = token
	return &cp
}

// Response is the envelope most endpoints answer with. It marshals back
// to the same JSON field names.
type Response struct {
	RequestID     string         `json:"request_id"`
	LeaseID       string         `json:"lease_id"`
	LeaseDuration int            `json:"lease_duration"`
	Renewable     bool           `json:"renewable"`
	Data          map[string]any `json:"data"`
	WrapInfo      *WrapInfo      `json:"wrap_info"`
	Warnings      []string       `json:"warnings"`
	Auth          *Auth          `json:"auth"`
}

// Auth is the envelope's "auth" object, set when a token is created or
// renewed.
type Auth struct {
	ClientToken   string            `json:"client_token"`
	Accessor      string            `json:"accessor"`
	Policies      []string          `json:"policies"`
	TokenPolicies []string          `json:"token_policies"`
	Metadata      map[string]string `json:"metadata"`
	LeaseDuration int               `json:"lease_duration"`
	Renewable     bool              `json:"renewable"`
	EntityID      string            `json:"entity_id"`
	TokenType     string            `json:"token_type"`
	Orphan        bool              `json:"orphan"`
	NumUses       int               `json:"num_uses"`
}

// WrapInfo is the envelope's "wrap_info" object for wrapped responses.
type WrapInfo struct {
	Token           string `json:"token"`
	Accessor        string `json:"accessor"`
	TTL             int    `json:"ttl"`
	CreationTime    string `json:"creation_time"`
	CreationPath    string `json:"creation_path"`
	WrappedAccessor string `json:"wrapped_accessor"`
}

// Stream is a request body of known length sent as is with the type
// application/octet-stream (a storage restore). Length < 0: unknown,
// sent chunked.
type Stream struct {
	Reader io.Reader
	Length int64
}

// Do sends a request to /v1/path (path may carry a "?query") and decodes
// the envelope. body is sent as is when it is an io.Reader or []byte,
// a Stream is streamed with its length, and anything else is sent as
// JSON; nil sends no body. A 204 gives an empty
// Response. A status of 400 or more gives an *Error.
func (c *Client) Do(ctx context.Context, method, path string, body any) (*Response, error) {
	resp, err := c.Raw(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return nil, errorFromResponse(resp)
	}
	out := &Response{}
	if resp.StatusCode == http.StatusNoContent {
		return out, nil
	}
	if err := decodeJSON(resp.Body, out); err != nil {
		return nil, fmt.Errorf("api: %s %s: decode response: %w", method, path, err)
	}
	return out, nil
}

// RawJSON sends a request like Do and decodes a non-envelope JSON body
// into out (which may be nil to discard it). A status of 400 or more
// gives an *Error.
func (c *Client) RawJSON(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.Raw(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return errorFromResponse(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := decodeJSON(resp.Body, out); err != nil {
		return fmt.Errorf("api: %s %s: decode response: %w", method, path, err)
	}
	return nil
}

// Raw sends a request like Do and returns the response whatever its
// status (sys/health, for one, answers 429, 472, 501 or 503 with a useful
// body). The caller must close the body. Errors are transport failures.
func (c *Client) Raw(ctx context.Context, method, path string, body any) (*http.Response, error) {
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cannot reach %s: %w", c.base.Redacted(), err)
	}
	return resp, nil
}

func (c *Client) newRequest(ctx context.Context, method, path string, body any) (*http.Request, error) {
	p, query, _ := strings.Cut(strings.TrimPrefix(path, "/"), "?")
	u := *c.base
	u.Path = c.base.Path + "/v1/" + p
	u.RawQuery = query
	var (
		rd     io.Reader
		length int64 = -1
	)
	ct := "application/json"
	switch b := body.(type) {
	case nil:
	case Stream:
		rd, length, ct = b.Reader, b.Length, "application/octet-stream"
	case io.Reader:
		rd = b
	case []byte:
		rd, length = bytes.NewReader(b), int64(len(b))
	default:
		js, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("api: %s %s: encode body: %w", method, p, err)
		}
		rd, length = bytes.NewReader(js), int64(len(js))
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("api: %s %s: %w", method, p, err)
	}
	if length >= 0 {
		req.ContentLength = length
	}
	if rd != nil {
		if method == http.MethodPatch {
			ct = "application/merge-patch+json"
		}
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("X-Vault-Request", "true")
	if c.token != "" {
		req.Header.Set("X-Vault-Token", c.token)
	}
	return req, nil
}

func decodeJSON(r io.Reader, out any) error {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	return dec.Decode(out)
}
