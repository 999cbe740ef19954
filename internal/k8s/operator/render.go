package operator

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/template"

	"sigs.k8s.io/yaml"
)

// ErrTemplate wraps every template parse or execution failure. The
// message names the Secret key whose template failed, never a value.
var ErrTemplate = errors.New("operator: template")

// Funcs are the template functions, named as in ESO's template engine v2
// (the common Sprig functions it ships, plus its toYaml/fromYaml and
// filterPEM): b64enc, b64dec, upper, lower, title, trim, trimAll,
// trimPrefix, trimSuffix, replace, quote, squote, default, empty, toJson,
// fromJson, toYaml, fromYaml, toString, contains, hasPrefix, hasSuffix,
// splitList, join, indent, nindent, sha256sum, list, dict, filterPEM.
// Functions that read the environment or files are left out on purpose.
func Funcs() template.FuncMap {
	return template.FuncMap{
		"b64enc": func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
		"b64dec": func(s string) (string, error) {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return "", errors.New("b64dec: input is not valid base64")
			}
			return string(b), nil
		},
		"upper":      strings.ToUpper,
		"lower":      strings.ToLower,
		"title":      title,
		"trim":       strings.TrimSpace,
		"trimAll":    func(cut, s string) string { return strings.Trim(s, cut) },
		"trimPrefix": func(p, s string) string { return strings.TrimPrefix(s, p) },
		"trimSuffix": func(p, s string) string { return strings.TrimSuffix(s, p) },
		"replace":    func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		"quote":      func(s string) string { return fmt.Sprintf("%q", s) },
		"squote":     func(s string) string { return "'" + s + "'" },
		"default": func(def any, v ...any) any {
			if len(v) == 0 || isEmpty(v[0]) {
				return def
			}
			return v[0]
		},
		"empty": isEmpty,
		"toJson": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"fromJson": func(s string) (any, error) {
			var v any
			if err := json.Unmarshal([]byte(s), &v); err != nil {
				return nil, errors.New("fromJson: input is not valid JSON")
			}
			return v, nil
		},
		"toYaml": func(v any) (string, error) {
			b, err := yaml.Marshal(v)
			return strings.TrimSuffix(string(b), "\n"), err
		},
		"fromYaml": func(s string) (any, error) {
			var v any
			if err := yaml.Unmarshal([]byte(s), &v); err != nil {
				return nil, errors.New("fromYaml: input is not valid YAML")
			}
			return v, nil
		},
		"toString":  func(v any) string { return fmt.Sprint(v) },
		"contains":  func(sub, s string) bool { return strings.Contains(s, sub) },
		"hasPrefix": func(p, s string) bool { return strings.HasPrefix(s, p) },
		"hasSuffix": func(p, s string) bool { return strings.HasSuffix(s, p) },
		"splitList": func(sep, s string) []string { return strings.Split(s, sep) },
		"join": func(sep string, v any) string {
			switch l := v.(type) {
			case []string:
				return strings.Join(l, sep)
			case []any:
				s := make([]string, len(l))
				for i, e := range l {
					s[i] = fmt.Sprint(e)
				}
				return strings.Join(s, sep)
			}
			return fmt.Sprint(v)
		},
		"indent":  indent,
		"nindent": func(n int, s string) string { return "\n" + indent(n, s) },
		"sha256sum": func(s string) string {
			sum := sha256.Sum256([]byte(s))
			return hex.EncodeToString(sum[:])
		},
		"list": func(v ...any) []any { return v },
		"dict": func(kv ...any) (map[string]any, error) {
			if len(kv)%2 != 0 {
				return nil, errors.New("dict: odd number of arguments")
			}
			m := make(map[string]any, len(kv)/2)
			for i := 0; i < len(kv); i += 2 {
				m[fmt.Sprint(kv[i])] = kv[i+1]
			}
			return m, nil
		},
		"filterPEM": filterPEM,
	}
}

func title(s string) string {
	words := strings.Fields(s)
	for i, w := range words {
		words[i] = strings.ToUpper(w[:1]) + w[1:]
	}
	return strings.Join(words, " ")
}

func indent(n int, s string) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case bool:
		return !x
	case int:
		return x == 0
	case float64:
		return x == 0
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

// filterPEM returns the PEM blocks of type typ ("CERTIFICATE",
// "PRIVATE KEY", ...) in s, concatenated.
func filterPEM(typ, s string) (string, error) {
	var out bytes.Buffer
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == typ {
			if err := pem.Encode(&out, b); err != nil {
				return "", err
			}
		}
	}
	if out.Len() == 0 {
		return "", fmt.Errorf("filterPEM: no %s block", typ)
	}
	return out.String(), nil
}

// Render applies templates (Secret key → Go template) to values (the
// fetched keys, visible to the templates as strings: {{ .password }}) and
// returns the rendered Secret data. With no templates it returns values
// unchanged. A missing key in a template is an error, so a typo cannot
// write an empty password. Errors wrap ErrTemplate and name the key; the
// functions never echo their input, so no value reaches an error.
func Render(templates map[string]string, values map[string][]byte) (map[string][]byte, error) {
	if len(templates) == 0 {
		return values, nil
	}
	vars := make(map[string]string, len(values))
	for k, v := range values {
		vars[k] = string(v)
	}
	keys := make([]string, 0, len(templates))
	for k := range templates {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string][]byte, len(templates))
	for _, k := range keys {
		t, err := template.New(k).Option("missingkey=error").Funcs(Funcs()).Parse(templates[k])
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: %s", ErrTemplate, k, err)
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, vars); err != nil {
			return nil, fmt.Errorf("%w: key %q: %s", ErrTemplate, k, err)
		}
		out[k] = buf.Bytes()
	}
	return out, nil
}
