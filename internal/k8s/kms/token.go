package kms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coffer-dev/coffer/api"
)

// ErrNoToken is returned when no token source is configured or the
// configured one yields an empty token.
var ErrNoToken = errors.New("kms: no Coffer token (set --token, COFFER_TOKEN, --token-file or --approle-role-id-file)")

// AppRole configures AppRole login.
type AppRole struct {
	// RoleIDFile holds the role_id. "": AppRole login is off.
	RoleIDFile string
	// SecretIDFile holds the secret_id. "": the role needs none
	// (bind_secret_id=false).
	SecretIDFile string
	// MountPath is the auth mount. "": "approle".
	MountPath string
}

// tokens supplies the plugin's Coffer token from one source (a fixed
// token, a token file re-read on refusal, or AppRole login) and renews
// it. It is safe for concurrent use.
type tokens struct {
	client  *api.Client // without token
	static  string
	file    string
	approle AppRole
	now     func() time.Time
	log     *slog.Logger

	mu        sync.Mutex // guards following
	token     string
	ttl       time.Duration // 0: does not expire
	renewable bool
	obtained  time.Time
	known     bool // ttl and renewable are known (login or lookup succeeded)
}

// readSecretFile returns the trimmed first line of a credential file;
// errors never include its content.
func readSecretFile(path, what string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("kms: read %s file: %w", what, err)
	}
	s, _, _ := strings.Cut(string(b), "\n")
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("kms: %s file %s is empty", what, path)
	}
	return s, nil
}

// get returns the current token, obtaining one first if there is none.
func (t *tokens) get(ctx context.Context) (string, error) {
	t.mu.Lock()
	tok := t.token
	t.mu.Unlock()
	if tok != "" {
		return tok, nil
	}
	return t.refresh(ctx, "")
}

// refresh obtains a new token (login, or re-read of the token file) unless
// the current token already differs from refused, which another caller
// has just replaced. A fixed token cannot be refreshed: it is returned
// as is.
func (t *tokens) refresh(ctx context.Context, refused string) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && t.token != refused {
		return t.token, nil
	}
	switch {
	case t.approle.RoleIDFile != "":
		return t.loginLocked(ctx)
	case t.file != "":
		tok, err := readSecretFile(t.file, "token")
		if err != nil {
			return "", err
		}
		t.setLocked(tok, 0, false)
		t.lookupLocked(ctx)
		return tok, nil
	case t.static != "":
		if t.token == "" {
			t.setLocked(t.static, 0, false)
			t.lookupLocked(ctx)
		}
		return t.token, nil
	}
	return "", ErrNoToken
}

func (t *tokens) setLocked(tok string, ttl time.Duration, renewable bool) {
	t.token, t.ttl, t.renewable, t.obtained, t.known = tok, ttl, renewable, t.now(), false
}

// lookupLocked learns the TTL of a token given to the plugin, so that it
// can be renewed. Failures are logged: the token may still work.
func (t *tokens) lookupLocked(ctx context.Context) {
	r, err := t.client.WithToken(t.token).Read(ctx, "auth/token/lookup-self")
	if err != nil {
		t.log.WarnContext(ctx, "kms: token lookup failed; renewal waits for the next attempt", "err", err)
		return
	}
	ttl, _ := jsonInt(r.Data["ttl"])
	renewable, _ := r.Data["renewable"].(bool)
	t.ttl, t.renewable, t.known = time.Duration(ttl)*time.Second, renewable, true
}

// loginLocked logs in with AppRole.
func (t *tokens) loginLocked(ctx context.Context) (string, error) {
	roleID, err := readSecretFile(t.approle.RoleIDFile, "role_id")
	if err != nil {
		return "", err
	}
	body := map[string]any{"role_id": roleID}
	if t.approle.SecretIDFile != "" {
		sid, err := readSecretFile(t.approle.SecretIDFile, "secret_id")
		if err != nil {
			return "", err
		}
		body["secret_id"] = sid
	}
	mount := strings.Trim(t.approle.MountPath, "/")
	if mount == "" {
		mount = "approle"
	}
	r, err := t.client.WithToken("").Do(ctx, http.MethodPut, "auth/"+mount+"/login", body)
	if err != nil {
		return "", fmt.Errorf("kms: approle login at auth/%s: %w", mount, err)
	}
	if r.Auth == nil || r.Auth.ClientToken == "" {
		return "", fmt.Errorf("kms: approle login at auth/%s returned no token", mount)
	}
	t.setLocked(r.Auth.ClientToken, time.Duration(r.Auth.LeaseDuration)*time.Second, r.Auth.Renewable)
	t.known = true
	t.log.InfoContext(ctx, "kms: logged in with approle", "mount", mount, "ttl", t.ttl, "accessor", r.Auth.Accessor)
	return t.token, nil
}

// renewAt returns when the token should next be renewed or replaced
// (two thirds into its TTL), and false for a token that does not expire.
func (t *tokens) renewAt() (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token == "" || t.ttl <= 0 {
		return time.Time{}, false
	}
	return t.obtained.Add(t.ttl * 2 / 3), true
}

// renew extends the token with renew-self. For AppRole, a token that
// cannot be renewed, or whose renewal no longer reaches half of its
// previous TTL (its max TTL is near), is replaced by a new login.
func (t *tokens) renew(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token == "" {
		return nil
	}
	if t.renewable {
		r, err := t.client.WithToken(t.token).Do(ctx, http.MethodPut, "auth/token/renew-self", map[string]any{})
		if err == nil && r.Auth != nil {
			ttl := time.Duration(r.Auth.LeaseDuration) * time.Second
			short := ttl < t.ttl/2
			t.ttl, t.obtained = ttl, t.now()
			if !short || t.approle.RoleIDFile == "" {
				t.log.DebugContext(ctx, "kms: token renewed", "ttl", ttl)
				return nil
			}
		} else if t.approle.RoleIDFile == "" {
			return fmt.Errorf("kms: renew token: %w", err)
		}
	}
	if t.approle.RoleIDFile != "" {
		_, err := t.loginLocked(ctx)
		return err
	}
	if t.file != "" {
		// A token file may be rewritten by whoever issues the token.
		if tok, err := readSecretFile(t.file, "token"); err == nil && tok != t.token {
			t.setLocked(tok, 0, false)
			t.lookupLocked(ctx)
		}
	}
	return nil
}

// run renews the token until ctx is done. Failures are logged and retried
// after retry.
func (t *tokens) run(ctx context.Context, retry time.Duration) {
	for {
		wait := retry
		if at, ok := t.renewAt(); ok {
			wait = max(at.Sub(t.now()), time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if _, ok := t.renewAt(); !ok {
			// No TTL known yet (the lookup failed): try again.
			t.mu.Lock()
			if t.token != "" && !t.known {
				t.lookupLocked(ctx)
			}
			t.mu.Unlock()
			continue
		}
		if err := t.renew(ctx); err != nil {
			t.log.WarnContext(ctx, "kms: token renewal failed", "err", err)
			t.mu.Lock()
			t.obtained = t.now().Add(-t.ttl*2/3 + retry) // retry after retry
			t.mu.Unlock()
		}
	}
}

// jsonInt reads a decoded JSON number.
func jsonInt(v any) (int64, bool) {
	switch n := v.(type) {
	case interface{ Int64() (int64, error) }:
		i, err := n.Int64()
		return i, err == nil
	case float64:
		return int64(n), true
	}
	return 0, false
}
