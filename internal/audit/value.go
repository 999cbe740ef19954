package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// The data of an entry (request body, query, response data) is kept as a
// tree of these values, built without reflection:
//
//	nil, bool, string, json.Number, []any, object
//
// It is the tree encoding/json would decode (with UseNumber) from the same
// document, except that objects are sorted: rendering it gives the bytes
// encoding/json gives for the decoded map[string]any, with every string
// HMAC'd.

// object is a JSON object: members sorted by key in byte order, as
// encoding/json sorts map keys. Parsed objects hold each key once (the
// last one wins, as when decoding into a map).
type object []member

type member struct {
	key string
	val any
}

// maxDepth is encoding/json's nesting limit: a document nested deeper is
// not JSON to it, so not to audit either.
const maxDepth = 10000

var errSyntax = errors.New("invalid JSON")

// parser reads JSON exactly as encoding/json's Decoder does into an any
// with UseNumber: the same grammar, the same unquoting (invalid UTF-8 and
// lone surrogates become U+FFFD), the same nesting limit.
type parser struct {
	b     []byte
	i     int
	depth int
}

// parseBody returns the data of a request body as decodeData did with
// encoding/json: nil for a blank body or "null"; the body as one string
// under "raw_body" when it is not one JSON value (bytes after the value
// other than white space, ']' or '}' count as more values, as
// json.Decoder.More sees them).
func parseBody(b []byte) any {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	p := parser{b: b}
	v, err := p.value()
	if err == nil {
		p.space()
		if p.i < len(b) && b[p.i] != ']' && b[p.i] != '}' {
			err = errSyntax
		}
	}
	if err != nil {
		return object{{key: "raw_body", val: string(b)}}
	}
	return v
}

// parseStrict parses b, which must hold exactly one JSON value (white
// space around it allowed), nested in depth levels already.
func parseStrict(b []byte, depth int) (any, error) {
	p := parser{b: b, depth: depth}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	if p.space(); p.i != len(b) {
		return nil, errSyntax
	}
	return v, nil
}

func (p *parser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) value() (any, error) {
	p.space()
	if p.i >= len(p.b) {
		return nil, errSyntax
	}
	switch c := p.b[p.i]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		return p.str()
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	}
	return nil, errSyntax
}

func (p *parser) literal(lit string) error {
	if len(p.b)-p.i < len(lit) || string(p.b[p.i:p.i+len(lit)]) != lit {
		return errSyntax
	}
	p.i += len(lit)
	return nil
}

func (p *parser) enter() error {
	p.i++
	if p.depth++; p.depth > maxDepth {
		return errSyntax
	}
	p.space()
	return nil
}

func (p *parser) object() (any, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	o := object{}
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		p.depth--
		return o, nil
	}
	for {
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return nil, errSyntax
		}
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		if p.space(); p.i >= len(p.b) || p.b[p.i] != ':' {
			return nil, errSyntax
		}
		p.i++
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		o = append(o, member{key: k, val: v})
		if p.space(); p.i >= len(p.b) {
			return nil, errSyntax
		}
		switch p.b[p.i] {
		case ',':
			p.i++
			p.space()
			continue
		case '}':
			p.i++
			p.depth--
			return o.sorted(), nil
		}
		return nil, errSyntax
	}
}

// sorted sorts o by key and keeps the last member of each key.
func (o object) sorted() object {
	if len(o) < 2 {
		return o
	}
	slices.SortStableFunc(o, func(a, b member) int { return strings.Compare(a.key, b.key) })
	out := o[:0]
	for i, m := range o {
		if i+1 < len(o) && o[i+1].key == m.key {
			continue
		}
		out = append(out, m)
	}
	return out
}

func (p *parser) array() (any, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	a := []any{}
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		p.depth--
		return a, nil
	}
	for {
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		if p.space(); p.i >= len(p.b) {
			return nil, errSyntax
		}
		switch p.b[p.i] {
		case ',':
			p.i++
			continue
		case ']':
			p.i++
			p.depth--
			return a, nil
		}
		return nil, errSyntax
	}
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// number reads a number by JSON's grammar; it ends at the first byte the
// grammar does not allow, as encoding/json's scanner does.
func (p *parser) number() (any, error) {
	b, start, i := p.b, p.i, p.i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i+1)
	default:
		return nil, errSyntax
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return nil, errSyntax
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return nil, errSyntax
		}
		i = j
	}
	p.i = i
	return json.Number(b[start:i]), nil
}

// str reads a string literal at p.i, unquoted as encoding/json does.
func (p *parser) str() (string, error) {
	b := p.b
	start := p.i + 1
	i := start
	for i < len(b) {
		c := b[i]
		if c == '"' {
			p.i = i + 1
			return string(b[start:i]), nil
		}
		if c == '\\' || c < ' ' || c >= utf8.RuneSelf {
			break
		}
		i++
	}
	out := make([]byte, 0, i-start+16)
	out = append(out, b[start:i]...)
	for i < len(b) {
		switch c := b[i]; {
		case c == '"':
			p.i = i + 1
			return string(out), nil
		case c < ' ':
			return "", errSyntax
		case c == '\\':
			if i+1 >= len(b) {
				return "", errSyntax
			}
			switch b[i+1] {
			case '"', '\\', '/':
				out = append(out, b[i+1])
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r := getu4(b[i:])
				if r < 0 {
					return "", errSyntax
				}
				i += 6
				if utf16.IsSurrogate(r) {
					if dec := utf16.DecodeRune(r, getu4(b[i:])); dec != utf8.RuneError {
						r = dec
						i += 6
					} else {
						r = utf8.RuneError
					}
				}
				out = utf8.AppendRune(out, r)
				continue
			default:
				return "", errSyntax
			}
			i += 2
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				out = append(out, "\uFFFD"...)
			} else {
				out = append(out, b[i:i+size]...)
			}
			i += size
		}
	}
	return "", errSyntax
}

// getu4 decodes \uXXXX at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// queryValue returns query parameters as data: a string for a parameter
// given once, a list otherwise.
func queryValue(q url.Values) any {
	if len(q) == 0 {
		return nil
	}
	o := make(object, 0, len(q))
	for k, vs := range q {
		var v any
		if len(vs) == 1 {
			v = vs[0]
		} else {
			l := make([]any, len(vs))
			for i, s := range vs {
				l[i] = s
			}
			v = l
		}
		o = append(o, member{key: k, val: v})
	}
	slices.SortFunc(o, func(a, b member) int { return strings.Compare(a.key, b.key) })
	return o
}

// maxWalk bounds how deep responseValue follows Go values itself; deeper
// data (or a cycle) goes through encoding/json.
const maxWalk = 256

// responseValue returns the tree of response data v: the tree decoding
// json.Marshal(v) would give. The usual types of engine responses (maps
// and slices of any and string, strings, integers, bools,
// json.RawMessage, json.Number) are walked directly; any other value is
// marshalled alone, and data the walk cannot render exactly (invalid
// UTF-8, very deep nesting) is marshalled as a whole. The error is
// json.Marshal's.
func responseValue(v any) (any, error) {
	if x, ok := walk(v, 0); ok {
		return x, nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return parseBody(raw), nil
}

// walk converts v, nested in depth levels; ok is false when v must go
// through json.Marshal as a whole.
func walk(v any, depth int) (x any, ok bool) {
	switch v := v.(type) {
	case nil:
		return nil, true
	case string:
		return v, utf8.ValidString(v)
	case bool:
		return v, true
	case int:
		return json.Number(strconv.FormatInt(int64(v), 10)), true
	case int64:
		return json.Number(strconv.FormatInt(v, 10)), true
	case int32:
		return json.Number(strconv.FormatInt(int64(v), 10)), true
	case uint:
		return json.Number(strconv.FormatUint(uint64(v), 10)), true
	case uint64:
		return json.Number(strconv.FormatUint(v, 10)), true
	case uint32:
		return json.Number(strconv.FormatUint(uint64(v), 10)), true
	case json.Number:
		if v == "" {
			return json.Number("0"), true
		}
		return v, isNumber(string(v))
	case json.RawMessage:
		if v == nil {
			return nil, true
		}
		x, err := parseStrict(v, depth)
		return x, err == nil
	case map[string]any:
		if v == nil {
			return nil, true
		}
		if depth >= maxWalk {
			return nil, false
		}
		o := make(object, 0, len(v))
		for k, e := range v {
			x, ok := walk(e, depth+1)
			if !ok || !utf8.ValidString(k) {
				return nil, false
			}
			o = append(o, member{key: k, val: x})
		}
		slices.SortFunc(o, func(a, b member) int { return strings.Compare(a.key, b.key) })
		return o, true
	case map[string]string:
		if v == nil {
			return nil, true
		}
		o := make(object, 0, len(v))
		for k, e := range v {
			if !utf8.ValidString(k) || !utf8.ValidString(e) {
				return nil, false
			}
			o = append(o, member{key: k, val: e})
		}
		slices.SortFunc(o, func(a, b member) int { return strings.Compare(a.key, b.key) })
		return o, true
	case []any:
		if v == nil {
			return nil, true
		}
		if depth >= maxWalk {
			return nil, false
		}
		a := make([]any, len(v))
		for i, e := range v {
			x, ok := walk(e, depth+1)
			if !ok {
				return nil, false
			}
			a[i] = x
		}
		return a, true
	case []string:
		if v == nil {
			return nil, true
		}
		a := make([]any, len(v))
		for i, e := range v {
			if !utf8.ValidString(e) {
				return nil, false
			}
			a[i] = e
		}
		return a, true
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, false
	}
	x, err = parseStrict(raw, depth)
	return x, err == nil
}

// isNumber reports whether s is a JSON number, as encoding/json requires
// of a json.Number it encodes.
func isNumber(s string) bool {
	p := parser{b: []byte(s)}
	if s == "" || !(s[0] == '-' || s[0] >= '0' && s[0] <= '9') {
		return false
	}
	_, err := p.number()
	return err == nil && p.i == len(s)
}
