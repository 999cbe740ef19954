package database

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// statements is a list of SQL statements read from a JSON array or a single
// string (one statement, as Vault's TypeStringSlice reads it: commas inside
// SQL are not separators).
type statements []string

// UnmarshalJSON implements json.Unmarshaler.
func (s *statements) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*s = nil
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return &logical.FieldError{Want: "list of statements"}
		}
		*s = nil
		if strings.TrimSpace(one) != "" {
			*s = statements{one}
		}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return &logical.FieldError{Want: "list of statements"}
	}
	*s = nil
	for _, st := range many {
		if strings.TrimSpace(st) != "" {
			*s = append(*s, st)
		}
	}
	return nil
}

// orEmpty returns s, or an empty (non-nil) list so it marshals as [].
func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// expirationLayout is how {{expiration}} is rendered, as Vault does.
const expirationLayout = "2006-01-02 15:04:05-0700"

// render substitutes the template fields in stmt. Values are inserted as
// they are: names are generated from a safe alphabet and passwords are
// alphanumeric, and both are validated where an operator supplies them.
func render(stmt string, fields map[string]string) string {
	pairs := make([]string, 0, 2*len(fields))
	for k, v := range fields {
		pairs = append(pairs, "{{"+k+"}}", v)
	}
	return strings.NewReplacer(pairs...).Replace(stmt)
}

// templateFields returns the fields of a statement for user name with
// password pw (already hashed when the config asks for SCRAM) expiring at
// exp (zero: no {{expiration}}).
func templateFields(name, pw string, exp time.Time) map[string]string {
	f := map[string]string{"name": name, "username": name}
	if pw != "" {
		f["password"] = pw
	}
	if !exp.IsZero() {
		f["expiration"] = exp.UTC().Format(expirationLayout)
	}
	return f
}

const (
	passwordLen = 24
	alphanum    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// newPassword returns a random password of passwordLen characters from
// alphanum (about 143 bits), drawn without modulo bias from crypto/rand.
func newPassword() string {
	return randomString(passwordLen)
}

func randomString(n int) string {
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		rand.Read(buf[:]) // never fails (crypto/rand panics rather)
		for _, c := range buf {
			// 62*4 = 248: reject 248..255 to keep the distribution uniform.
			if c < 248 && len(out) < n {
				out = append(out, alphanum[int(c)%len(alphanum)])
			}
		}
	}
	return string(out)
}

// maxIdentifier is PostgreSQL's identifier limit (NAMEDATALEN-1).
const maxIdentifier = 63

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// newUsername returns Vault's v-<display>-<role>-<random>-<unix> name, with
// display name and role truncated to 8 characters, 20 random characters,
// and everything outside [A-Za-z0-9_-] replaced by "_", truncated to 63.
func newUsername(display, role string, now time.Time) string {
	trunc := func(s string, n int) string {
		s = unsafeName.ReplaceAllString(s, "_")
		if len(s) > n {
			return s[:n]
		}
		return s
	}
	u := fmt.Sprintf("v-%s-%s-%s-%s", trunc(display, 8), trunc(role, 8), randomString(20), strconv.FormatInt(now.Unix(), 10))
	if len(u) > maxIdentifier {
		u = u[:maxIdentifier]
	}
	return u
}

// scramIterations is PostgreSQL's default scram_iterations.
const scramIterations = 4096

// scramVerifier returns PostgreSQL's SCRAM-SHA-256 verifier of password,
// SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>, so the plaintext
// password never reaches the server (nor its logs). password is ASCII, for
// which SASLprep is the identity.
func scramVerifier(password string) (string, error) {
	salt := make([]byte, 16)
	rand.Read(salt)
	salted, err := pbkdf2.Key(sha256.New, password, salt, scramIterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("database: scram: %w", err)
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	server := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", scramIterations, b64(salt), b64(stored[:]), b64(server)), nil
}

// globMatch reports whether name matches any pattern in list, where "*"
// matches any run of characters (Vault's allowed_roles globbing).
func globMatch(list []string, name string) bool {
	for _, p := range list {
		if matchGlob(p, name) {
			return true
		}
	}
	return false
}

func matchGlob(p, s string) bool {
	parts := strings.Split(p, "*")
	if len(parts) == 1 {
		return p == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	return strings.HasSuffix(s, last)
}
