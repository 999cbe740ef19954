package logical

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// The lenient field types accept what Vault's field parser accepts, since
// the Vault CLI sends every `key=value` argument as a JSON string:
// Duration takes 3600, "3600", "3600s" or "1h"; Int takes 5 or "5"; Bool
// takes true or "true"; StringList takes ["a","b"] or "a,b".

// Duration is a time.Duration read from seconds or a Go duration string.
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	var s string
	if b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return &FieldError{Want: "duration"}
		}
	} else {
		s = string(b)
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ParseDuration reads "", "30", "30s", "1h30m" or "7d" (days, as Vault
// allows). An empty string is zero.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, &FieldError{Want: "duration"}
		}
		return time.Duration(n) * time.Second, nil
	}
	if strings.HasSuffix(s, "d") {
		n, err := strconv.ParseInt(strings.TrimSuffix(s, "d"), 10, 64)
		if err != nil || n < 0 {
			return 0, &FieldError{Want: "duration"}
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, &FieldError{Want: "duration"}
	}
	return v, nil
}

// Seconds returns d in whole seconds.
func (d Duration) Seconds() int64 { return int64(time.Duration(d) / time.Second) }

// Int is an int read from a JSON number or a numeric string.
type Int int64

// UnmarshalJSON implements json.Unmarshaler.
func (i *Int) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	s := string(b)
	if b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return &FieldError{Want: "integer"}
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return &FieldError{Want: "integer"}
	}
	*i = Int(n)
	return nil
}

// Bool is a bool read from a JSON bool or a string such as "true".
type Bool bool

// UnmarshalJSON implements json.Unmarshaler.
func (v *Bool) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	s := string(b)
	if b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return &FieldError{Want: "boolean"}
		}
	}
	x, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return &FieldError{Want: "boolean"}
	}
	*v = Bool(x)
	return nil
}

// StringList is a []string read from a JSON array or a comma-separated
// string.
type StringList []string

// UnmarshalJSON implements json.Unmarshaler.
func (l *StringList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return &FieldError{Want: "list of strings"}
		}
		*l = nil
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				*l = append(*l, p)
			}
		}
		return nil
	}
	var xs []string
	if err := json.Unmarshal(b, &xs); err != nil {
		return &FieldError{Want: "list of strings"}
	}
	*l = xs
	return nil
}
