package agent

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// Secret is what the template function secret returns: the response's
// data and lease. For KV v2 the values are under .Data.data and the
// version under .Data.metadata, as in Vault.
type Secret struct {
	Data          map[string]any
	LeaseID       string
	LeaseDuration int
	Renewable     bool
	Warnings      []string
}

// ErrNoSecret is returned by secret when the path holds nothing.
var ErrNoSecret = errors.New("no secret at path")

// Funcs are the template functions besides secret: env, base64Encode,
// base64Decode, toJSON, toJSONPretty, timestamp.
func Funcs(getenv func(string) string, now func() time.Time) template.FuncMap {
	return template.FuncMap{
		"env":          getenv,
		"base64Encode": func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
		"base64Decode": func(s string) (string, error) {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return "", errors.New("base64Decode: input is not valid base64")
			}
			return string(b), nil
		},
		"toJSON": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"toJSONPretty": func(v any) (string, error) {
			b, err := json.MarshalIndent(v, "", "  ")
			return string(b), err
		},
		// timestamp is now in RFC 3339 (UTC), or "unix" seconds, or any
		// Go layout given as the argument.
		"timestamp": func(layout ...string) string {
			t := now().UTC()
			if len(layout) == 0 {
				return t.Format(time.RFC3339)
			}
			if layout[0] == "unix" {
				return strconv.FormatInt(t.Unix(), 10)
			}
			return t.Format(layout[0])
		},
	}
}

// ParseTemplate parses text as a template with the agent's functions
// (secret does nothing here), so a template can be checked without a
// server: the injector refuses a pod whose template does not parse.
func ParseTemplate(name, text string) (*template.Template, error) {
	fm := Funcs(func(string) string { return "" }, time.Now)
	fm["secret"] = func(string, ...string) (*Secret, error) { return nil, nil }
	return template.New(name).Funcs(fm).Parse(text)
}

// secretKey is the cache key for a secret call: the path, and for a
// write (secret "pki/issue/web" "common_name=a") its arguments.
func secretKey(path string, args []string) string {
	path = strings.Trim(path, "/")
	if len(args) == 0 {
		return path
	}
	return path + "\x00" + strings.Join(args, "\x00")
}

// writeArgs turns "k=v" arguments into a request body.
func writeArgs(args []string) (map[string]any, error) {
	body := map[string]any{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("secret: argument %d is not key=value", len(body)+1)
		}
		body[k] = v
	}
	return body, nil
}

// normalizePath maps a KV v2 API path (secret/data/app,
// secret/metadata/app, secret/delete/app ...) to "secret/app" so an event
// on any of them matches a read of the secret; other paths are returned
// trimmed. A KV v1 secret literally named data/x may match a v2 event:
// the cost is one extra read.
func normalizePath(p string) string {
	p = strings.Trim(p, "/")
	mount, rest, ok := strings.Cut(p, "/")
	if !ok {
		return p
	}
	for _, seg := range []string{"data/", "metadata/", "delete/", "undelete/", "destroy/"} {
		if strings.HasPrefix(rest, seg) {
			return mount + "/" + strings.TrimPrefix(rest, seg)
		}
	}
	return p
}
