package httpapi

import (
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"
)

// The response envelope is written by hand: encoding/json's reflection and
// its re-compaction of json.RawMessage were a fifth of the server's CPU on
// KV reads. appendJSON writes exactly the bytes json.Encoder (HTML escaping
// on) would write for the types responses use most — maps with string keys,
// slices, strings, bools, integers, nil and json.RawMessage — and hands
// anything else to encoding/json. TestAppendJSONMatchesEncodingJSON and
// FuzzAppendJSONString hold it to that.
//
// A json.RawMessage is written as it is, without the validation and
// compaction encoding/json does: logical.Response documents that such a
// value must be JSON as json.Marshal writes it.

// bufPool holds response buffers; big ones are not kept.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

const maxPooledBuf = 64 << 10

// appendJSON appends the JSON encoding of v to b.
func appendJSON(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendString(b, v), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case uint64:
		return strconv.AppendUint(b, v, 10), nil
	case json.RawMessage:
		if v == nil {
			return append(b, "null"...), nil
		}
		return append(b, v...), nil
	case map[string]any:
		if v == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '{')
		for i, k := range sortedKeys(v) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			var err error
			if b, err = appendJSON(b, v[k]); err != nil {
				return b, err
			}
		}
		return append(b, '}'), nil
	case map[string]string:
		if v == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '{')
		for i, k := range sortedKeys(v) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, v[k])
		}
		return append(b, '}'), nil
	case []string:
		if v == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, s := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, s)
		}
		return append(b, ']'), nil
	case []any:
		if v == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSON(b, e); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	default:
		raw, err := json.Marshal(v)
		if err != nil {
			return b, err
		}
		return append(b, raw...), nil
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// appendString appends s as a JSON string. Plain printable ASCII is copied;
// anything else (escapes, control bytes, HTML-sensitive bytes, non-ASCII)
// goes through encoding/json, whose rules (invalid UTF-8 → U+FFFD, U+2028)
// are subtle.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			raw, _ := json.Marshal(s) // a string always marshals
			return append(b, raw...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendEnvelope appends env as json.Encoder would, without the newline.
func appendEnvelope(b []byte, env *envelope) ([]byte, error) {
	b = append(b, `{"request_id":`...)
	b = appendString(b, env.RequestID)
	b = append(b, `,"lease_id":`...)
	b = appendString(b, env.LeaseID)
	b = append(b, `,"renewable":`...)
	b = strconv.AppendBool(b, env.Renewable)
	b = append(b, `,"lease_duration":`...)
	b = strconv.AppendInt(b, env.LeaseDuration, 10)
	b = append(b, `,"data":`...)
	var err error
	if b, err = appendJSON(b, env.Data); err != nil {
		return b, err
	}
	b = append(b, `,"wrap_info":`...)
	if env.WrapInfo == nil {
		b = append(b, "null"...)
	} else if b, err = appendJSON(b, env.WrapInfo); err != nil {
		return b, err
	}
	b = append(b, `,"warnings":`...)
	if b, err = appendJSON(b, env.Warnings); err != nil {
		return b, err
	}
	b = append(b, `,"auth":`...)
	if env.Auth == nil {
		b = append(b, "null"...)
	} else if b, err = appendJSON(b, env.Auth); err != nil {
		return b, err
	}
	if env.MountType != "" {
		b = append(b, `,"mount_type":`...)
		b = appendString(b, env.MountType)
	}
	return append(b, '}'), nil
}
