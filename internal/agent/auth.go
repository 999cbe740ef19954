package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/coffer-dev/coffer/api"
)

// ErrAuth wraps every failure to obtain a token.
var ErrAuth = errors.New("agent: authentication failed")

// DefaultServiceAccountTokenPath is where the kubernetes method reads
// the pod's service-account token when config.token_path is not set.
const DefaultServiceAccountTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// login is the result of an authentication.
type login struct {
	token     string
	ttl       time.Duration // 0: does not expire
	renewable bool
}

// authenticate obtains a token with m. It never returns the token or
// any credential in an error.
func authenticate(ctx context.Context, c *api.Client, m *Method) (login, error) {
	read := func(key string) (string, error) {
		p := m.Options[key]
		if key == "token_path" && p == "" {
			p = DefaultServiceAccountTokenPath
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("%w: read %s: %v", ErrAuth, key, errors.Unwrap(err))
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("%w: %s %s is empty", ErrAuth, key, p)
		}
		return v, nil
	}
	var body map[string]any
	switch m.Type {
	case "token_file":
		tok, err := read("token_file_path")
		if err != nil {
			return login{}, err
		}
		// Validate it, and learn its TTL.
		r, err := c.WithToken(tok).Read(ctx, "auth/token/lookup-self")
		if err != nil {
			return login{}, fmt.Errorf("%w: token from %s: %v", ErrAuth, m.Options["token_file_path"], err)
		}
		ttl := time.Duration(num(r.Data["ttl"])) * time.Second
		renewable, _ := r.Data["renewable"].(bool)
		return login{token: tok, ttl: ttl, renewable: renewable}, nil
	case "kubernetes":
		jwt, err := read("token_path")
		if err != nil {
			return login{}, err
		}
		body = map[string]any{"role": m.Options["role"], "jwt": jwt}
	case "approle":
		roleID, err := read("role_id_file_path")
		if err != nil {
			return login{}, err
		}
		secretID, err := read("secret_id_file_path")
		if err != nil {
			return login{}, err
		}
		body = map[string]any{"role_id": roleID, "secret_id": secretID}
		// Vault Agent removes the secret ID after reading it unless told
		// not to; a secret ID is typically single use.
		if v := m.Options["remove_secret_id_file_after_reading"]; v == "" || v == "true" {
			if err := os.Remove(m.Options["secret_id_file_path"]); err != nil && !errors.Is(err, os.ErrNotExist) {
				return login{}, fmt.Errorf("%w: remove secret_id file: %v", ErrAuth, errors.Unwrap(err))
			}
		}
	default:
		return login{}, fmt.Errorf("%w: method %q is not supported", ErrAuth, m.Type)
	}
	r, err := c.WithToken("").Write(ctx, m.MountPath+"/login", body)
	if err != nil {
		return login{}, fmt.Errorf("%w: %s/login: %v", ErrAuth, m.MountPath, err)
	}
	if r.Auth == nil || r.Auth.ClientToken == "" {
		return login{}, fmt.Errorf("%w: %s/login returned no token", ErrAuth, m.MountPath)
	}
	return login{token: r.Auth.ClientToken, ttl: time.Duration(r.Auth.LeaseDuration) * time.Second, renewable: r.Auth.Renewable}, nil
}

// num reads a decoded JSON number (json.Number, float64 or int).
func num(v any) int64 {
	switch n := v.(type) {
	case interface{ Int64() (int64, error) }:
		i, _ := n.Int64()
		return i
	case float64:
		return int64(n)
	case int:
		return int64(n)
	case int64:
		return n
	}
	return 0
}

// writeSinks writes token to every sink, atomically.
func writeSinks(sinks []Sink, token string) error {
	for _, s := range sinks {
		if err := writeFileAtomic(s.Path, []byte(token), s.Mode); err != nil {
			return fmt.Errorf("agent: sink %s: %w", s.Path, err)
		}
	}
	return nil
}
