package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// macKey computes one device's HMACs: HMAC-SHA256 keyed with the device's
// salt. Keying a state costs two block compressions and allocations, so
// keyed states are pooled. It is safe for concurrent use.
type macKey struct {
	pool sync.Pool // of hash.Hash
}

func newMACKey(salt []byte) *macKey {
	key := bytes.Clone(salt)
	return &macKey{pool: sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}
}

// value renders Vault's identified HMAC of s: "hmac-sha256:" and the hex
// HMAC-SHA256 of s.
func (k *macKey) value(s string) string {
	m := k.pool.Get().(hash.Hash)
	defer k.pool.Put(m)
	return string(appendMAC(nil, m, s))
}

// appendMAC appends "hmac-sha256:<hex>" of s under m (reset first) to dst.
// s passes through dst's spare room, so nothing is allocated once dst
// has grown.
func appendMAC(dst []byte, m hash.Hash, s string) []byte {
	m.Reset()
	mark := len(dst)
	dst = append(dst, s...)
	m.Write(dst[mark:])
	dst = m.Sum(dst[:mark])
	var sum [sha256.Size]byte
	copy(sum[:], dst[mark:])
	dst = append(dst[:mark], "hmac-sha256:"...)
	return hex.AppendEncode(dst, sum[:])
}

// renderer appends one entry's JSON. Every method's output is what
// encoding/json (with SetEscapeHTML(false)) writes for the same value.
type renderer struct {
	b   []byte
	mac hash.Hash
	// sep is the byte written before the next member: '{' for the first
	// member of an object, ',' after it.
	sep byte
	// bad is set when the data tree held a type it should not.
	bad bool
}

func (r *renderer) open() { r.sep = '{' }

// close ends an object, writing "{}" when it had no member.
func (r *renderer) close() {
	if r.sep == '{' {
		r.b = append(r.b, '{')
	}
	r.b = append(r.b, '}')
	r.sep = ','
}

// key writes the separator and "name": (name needs no escaping).
func (r *renderer) key(name string) {
	r.b = append(r.b, r.sep, '"')
	r.b = append(r.b, name...)
	r.b = append(r.b, '"', ':')
	r.sep = ','
}

func (r *renderer) str(name, s string) {
	r.key(name)
	r.b = appendString(r.b, s)
}

// strOmit writes a string member unless s is empty (omitempty).
func (r *renderer) strOmit(name, s string) {
	if s != "" {
		r.str(name, s)
	}
}

func (r *renderer) intOmit(name string, n int64) {
	if n != 0 {
		r.key(name)
		r.b = strconv.AppendInt(r.b, n, 10)
	}
}

// mac writes an HMAC'd string member unless s is empty.
func (r *renderer) macOmit(name, s string) {
	if s != "" {
		r.key(name)
		r.b = append(r.b, '"')
		r.b = appendMAC(r.b, r.mac, s)
		r.b = append(r.b, '"')
	}
}

// raw writes a member whose value is already rendered.
func (r *renderer) raw(name string, v []byte) {
	if len(v) > 0 {
		r.key(name)
		r.b = append(r.b, v...)
	}
}

func (r *renderer) strings(name string, l []string) {
	if len(l) == 0 {
		return
	}
	r.key(name)
	for i, s := range l {
		r.b = append(r.b, "[,"[min(i, 1)])
		r.b = appendString(r.b, s)
	}
	r.b = append(r.b, ']')
}

func (r *renderer) stringMap(name string, m map[string]string) {
	if len(m) == 0 {
		return
	}
	r.key(name)
	keys := make([]string, 0, 16)
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		r.b = append(r.b, "{,"[min(i, 1)])
		r.b = appendString(r.b, k)
		r.b = append(r.b, ':')
		r.b = appendString(r.b, m[k])
	}
	r.b = append(r.b, '}')
}

func (r *renderer) time(name string, t time.Time) error {
	r.key(name)
	var err error
	r.b, err = appendTime(r.b, t)
	return err
}

// data writes a data tree with every string HMAC'd; nil is omitted.
func (r *renderer) data(name string, v any) {
	if v != nil {
		r.key(name)
		r.value(v)
	}
}

func (r *renderer) value(v any) {
	switch v := v.(type) {
	case nil:
		r.b = append(r.b, "null"...)
	case bool:
		r.b = strconv.AppendBool(r.b, v)
	case string:
		r.b = append(r.b, '"')
		r.b = appendMAC(r.b, r.mac, v)
		r.b = append(r.b, '"')
	case json.Number:
		r.b = append(r.b, v...)
	case []any:
		r.b = append(r.b, '[')
		for i, x := range v {
			if i > 0 {
				r.b = append(r.b, ',')
			}
			r.value(x)
		}
		r.b = append(r.b, ']')
	case object:
		r.b = append(r.b, '{')
		for i, m := range v {
			if i > 0 {
				r.b = append(r.b, ',')
			}
			r.b = appendString(r.b, m.key)
			r.b = append(r.b, ':')
			r.value(m.val)
		}
		r.b = append(r.b, '}')
	default: // the tree holds only the types above; fail rather than guess
		r.bad = true
	}
}

// render formats p for a device whose HMACs k computes. The result is a
// JSON object without seq and prev_hash, which the device's goroutine
// adds: Vault's audit entry with the fields Coffer has, in the order and
// with the omissions encoding/json gave the entry structs this replaces
// (golden_test.go and the reference in render_test.go pin them).
func (p *prepared) render(k *macKey, hmacAccessor bool) ([]byte, error) {
	m := k.pool.Get().(hash.Hash)
	defer k.pool.Put(m)
	r := renderer{b: make([]byte, 0, p.sizeHint()), mac: m}
	in := p.in

	// The caller's token and accessor appear twice; HMAC them once.
	var token, accessor []byte
	if in.ClientToken != "" {
		token = r.macLiteral(in.ClientToken)
	}
	c := in.Caller
	if c != nil && c.Accessor != "" {
		if hmacAccessor {
			accessor = r.macLiteral(c.Accessor)
		} else {
			accessor = appendString(nil, c.Accessor)
		}
	}

	r.open()
	if err := r.time("time", p.time); err != nil {
		return nil, err
	}
	r.str("type", p.typ)
	r.key("auth")
	r.open()
	r.raw("client_token", token)
	if c != nil {
		r.raw("accessor", accessor)
		r.strOmit("display_name", c.DisplayName)
		r.strings("policies", c.Policies)
		r.strings("token_policies", c.Policies)
		r.stringMap("metadata", c.Metadata)
	}
	r.close()

	host, port := splitAddr(in.RemoteAddr)
	r.key("request")
	r.open()
	r.strOmit("id", in.RequestID)
	r.str("operation", string(in.Operation))
	r.strOmit("mount_point", in.MountPoint)
	r.strOmit("mount_type", in.MountType)
	r.raw("client_token", token)
	r.raw("client_token_accessor", accessor)
	r.key("namespace")
	r.b = append(r.b, `{"id":"root"}`...)
	r.str("path", in.Path)
	r.data("data", p.reqData)
	r.strOmit("remote_address", host)
	r.intOmit("remote_port", int64(port))
	r.intOmit("wrap_ttl", int64(in.WrapTTL/time.Second))
	r.close()

	if p.typ == "response" {
		r.key("response")
		r.open()
		if err := r.response(p, hmacAccessor); err != nil {
			return nil, err
		}
		r.close()
	}
	r.str("error", p.err)
	r.close()
	if r.bad {
		return nil, errors.New("audit: unexpected type in entry data")
	}
	return r.b, nil
}

// macLiteral renders the quoted HMAC of s on its own.
func (r *renderer) macLiteral(s string) []byte {
	b := make([]byte, 0, len(`"hmac-sha256:"`)+2*sha256.Size+len(s))
	b = append(b, '"')
	b = appendMAC(b, r.mac, s)
	return append(b, '"')
}

func (r *renderer) accessorOmit(name, s string, hmacAccessor bool) {
	if hmacAccessor {
		r.macOmit(name, s)
	} else {
		r.strOmit(name, s)
	}
}

func (r *renderer) response(p *prepared, hmacAccessor bool) error {
	resp := p.resp
	if resp == nil {
		return nil
	}
	r.strOmit("mount_type", resp.MountType)
	if a := resp.Auth; a != nil {
		r.key("auth")
		r.open()
		r.macOmit("client_token", a.ClientToken)
		r.accessorOmit("accessor", a.Accessor, hmacAccessor)
		r.strings("policies", a.Policies)
		r.strings("token_policies", a.TokenPolicies)
		r.stringMap("metadata", a.Metadata)
		r.strOmit("token_type", a.TokenType)
		r.intOmit("token_ttl", a.LeaseDuration)
		if a.Orphan {
			r.key("orphan")
			r.b = append(r.b, "true"...)
		}
		r.close()
	}
	if l := resp.Lease; l != nil {
		r.key("secret")
		r.open()
		r.str("lease_id", l.ID)
		r.close()
	}
	r.data("data", p.respData)
	r.strings("warnings", resp.Warnings)
	if w := resp.WrapInfo; w != nil {
		r.key("wrap_info")
		r.open()
		r.key("ttl")
		r.b = strconv.AppendInt(r.b, w.TTL, 10)
		r.macOmit("token", w.Token)
		r.accessorOmit("accessor", w.Accessor, hmacAccessor)
		if err := r.time("creation_time", w.CreationTime); err != nil {
			return err
		}
		r.str("creation_path", w.CreationPath)
		r.accessorOmit("wrapped_accessor", w.WrappedAccessor, hmacAccessor)
		r.close()
	}
	return nil
}

// sizeHint guesses the rendered size of p, to allocate once: every
// string of the data becomes a 76-byte HMAC whatever its length.
func (p *prepared) sizeHint() int {
	if p.typ == "response" {
		return 2048
	}
	return 1536
}

// appendTime appends t as time.Time's MarshalJSON does, with its error for
// times RFC 3339 cannot express.
func appendTime(dst []byte, t time.Time) ([]byte, error) {
	dst = append(dst, '"')
	n0 := len(dst)
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	b := dst[n0:]
	switch {
	case len(b) < 5 || b[4] != '-':
		return nil, errors.New("Time.MarshalJSON: year outside of range [0,9999]")
	case b[len(b)-1] != 'Z':
		c := b[len(b)-len("Z07:00")]
		h := b[len(b)-len("07:00"):]
		if '0' <= c && c <= '9' || 10*(h[0]-'0')+(h[1]-'0') >= 24 {
			return nil, errors.New("Time.MarshalJSON: timezone hour outside of range [0,23]")
		}
	}
	return append(dst, '"'), nil
}

// appendString appends s quoted as encoding/json does without HTML
// escaping: \" \\ \b \f \n \r \t, \u00XX for other control bytes, \ufffd
// for each byte of invalid UTF-8, and \u2028 \u2029 escaped.
func appendString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= ' ' && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
