package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// The reference renderer: how entries were rendered before render.go,
// with encoding/json (decode with UseNumber, copy with every string
// HMAC'd, encode the entry structs without HTML escaping). The fast
// renderer must give the same bytes, or fail where it failed.

type refAuth struct {
	ClientToken   string            `json:"client_token,omitempty"`
	Accessor      string            `json:"accessor,omitempty"`
	DisplayName   string            `json:"display_name,omitempty"`
	Policies      []string          `json:"policies,omitempty"`
	TokenPolicies []string          `json:"token_policies,omitempty"`
	Metadata      map[string]string `json:"metadata,omitempty"`
	TokenType     string            `json:"token_type,omitempty"`
	TokenTTL      int64             `json:"token_ttl,omitempty"`
	Orphan        bool              `json:"orphan,omitempty"`
}

type refNamespace struct {
	ID string `json:"id"`
}

type refRequest struct {
	ID                  string       `json:"id,omitempty"`
	Operation           string       `json:"operation"`
	MountPoint          string       `json:"mount_point,omitempty"`
	MountType           string       `json:"mount_type,omitempty"`
	ClientToken         string       `json:"client_token,omitempty"`
	ClientTokenAccessor string       `json:"client_token_accessor,omitempty"`
	Namespace           refNamespace `json:"namespace"`
	Path                string       `json:"path"`
	Data                any          `json:"data,omitempty"`
	RemoteAddress       string       `json:"remote_address,omitempty"`
	RemotePort          int          `json:"remote_port,omitempty"`
	WrapTTL             int64        `json:"wrap_ttl,omitempty"`
}

type refSecret struct {
	LeaseID string `json:"lease_id"`
}

type refWrapInfo struct {
	TTL             int64     `json:"ttl"`
	Token           string    `json:"token,omitempty"`
	Accessor        string    `json:"accessor,omitempty"`
	CreationTime    time.Time `json:"creation_time"`
	CreationPath    string    `json:"creation_path"`
	WrappedAccessor string    `json:"wrapped_accessor,omitempty"`
}

type refResponse struct {
	MountType string       `json:"mount_type,omitempty"`
	Auth      *refAuth     `json:"auth,omitempty"`
	Secret    *refSecret   `json:"secret,omitempty"`
	Data      any          `json:"data,omitempty"`
	Warnings  []string     `json:"warnings,omitempty"`
	WrapInfo  *refWrapInfo `json:"wrap_info,omitempty"`
}

type refEntryShape struct {
	Time     time.Time    `json:"time"`
	Type     string       `json:"type"`
	Auth     refAuth      `json:"auth"`
	Request  refRequest   `json:"request"`
	Response *refResponse `json:"response,omitempty"`
	Error    string       `json:"error"`
}

func refHMAC(salt []byte, s string) string {
	m := hmac.New(sha256.New, salt)
	m.Write([]byte(s))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

func refDecode(b []byte) any {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return map[string]any{"raw_body": string(b)}
	}
	return v
}

func refQuery(q url.Values) any {
	if len(q) == 0 {
		return nil
	}
	m := make(map[string]any, len(q))
	for k, vs := range q {
		if len(vs) == 1 {
			m[k] = vs[0]
		} else {
			l := make([]any, len(vs))
			for i, v := range vs {
				l[i] = v
			}
			m[k] = l
		}
	}
	return m
}

func refHash(salt []byte, v any) any {
	switch v := v.(type) {
	case string:
		return refHMAC(salt, v)
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = refHash(salt, x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = refHash(salt, x)
		}
		return out
	default:
		return v
	}
}

// refEntry renders the entry of type typ ("request" or "response") as the
// reference renderer did.
func refEntry(typ string, in *Input, resp *logical.Response, respErr error, now time.Time, salt []byte, hmacAccessor bool) ([]byte, error) {
	reqData := refDecode(in.Body)
	if reqData == nil {
		reqData = refQuery(in.Query)
	}
	errMsg := errorMessage(in.Err)
	var respData any
	if typ == "response" {
		if respErr == nil {
			respErr = in.Err
		}
		errMsg = errorMessage(respErr)
		if resp != nil && resp.Data != nil {
			raw, err := json.Marshal(resp.Data)
			if err != nil {
				return nil, err
			}
			respData = refDecode(raw)
		}
	}
	h := func(s string) string {
		if s == "" {
			return ""
		}
		return refHMAC(salt, s)
	}
	acc := func(s string) string {
		if hmacAccessor {
			return h(s)
		}
		return s
	}
	e := refEntryShape{Time: now.UTC(), Type: typ, Error: errMsg}
	e.Auth.ClientToken = h(in.ClientToken)
	if c := in.Caller; c != nil {
		e.Auth.Accessor = acc(c.Accessor)
		e.Auth.DisplayName = c.DisplayName
		e.Auth.Policies = c.Policies
		e.Auth.TokenPolicies = c.Policies
		e.Auth.Metadata = c.Metadata
	}
	addr, port := splitAddr(in.RemoteAddr)
	e.Request = refRequest{
		ID: in.RequestID, Operation: string(in.Operation), MountPoint: in.MountPoint, MountType: in.MountType,
		ClientToken: e.Auth.ClientToken, ClientTokenAccessor: e.Auth.Accessor,
		Namespace: refNamespace{ID: "root"}, Path: in.Path, Data: refHash(salt, reqData),
		RemoteAddress: addr, RemotePort: port, WrapTTL: int64(in.WrapTTL / time.Second),
	}
	if typ == "response" {
		r := &refResponse{}
		if resp != nil {
			r.MountType = resp.MountType
			r.Data = refHash(salt, respData)
			r.Warnings = resp.Warnings
			if a := resp.Auth; a != nil {
				r.Auth = &refAuth{
					ClientToken: h(a.ClientToken), Accessor: acc(a.Accessor), Policies: a.Policies,
					TokenPolicies: a.TokenPolicies, Metadata: a.Metadata, TokenType: a.TokenType,
					TokenTTL: a.LeaseDuration, Orphan: a.Orphan,
				}
			}
			if l := resp.Lease; l != nil {
				r.Secret = &refSecret{LeaseID: l.ID}
			}
			if w := resp.WrapInfo; w != nil {
				r.WrapInfo = &refWrapInfo{
					TTL: w.TTL, Token: h(w.Token), Accessor: acc(w.Accessor), CreationTime: w.CreationTime,
					CreationPath: w.CreationPath, WrappedAccessor: acc(w.WrappedAccessor),
				}
			}
		}
		e.Response = r
	}
	return marshalLine(e)
}

// fastEntry renders the same entry with prepareRequest/prepareResponse
// and render.
func fastEntry(typ string, in *Input, resp *logical.Response, respErr error, now time.Time, salt []byte, hmacAccessor bool) ([]byte, error) {
	var p *prepared
	if typ == "request" {
		p = prepareRequest(in, now)
	} else {
		var err error
		if p, err = prepareResponse(in, resp, respErr, now); err != nil {
			return nil, err
		}
	}
	return p.render(newMACKey(salt), hmacAccessor)
}

// checkSame renders both entries of in and resp both ways and fails on
// any difference.
func checkSame(t *testing.T, in *Input, resp *logical.Response, respErr error) {
	t.Helper()
	now := time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC)
	salt := []byte("4d1c8f0e-2b7a-4c3d-9e5f-6a7b8c9d0e1f")
	for _, typ := range []string{"request", "response"} {
		for _, acc := range []bool{true, false} {
			want, werr := refEntry(typ, in, resp, respErr, now, salt, acc)
			got, gerr := fastEntry(typ, in, resp, respErr, now, salt, acc)
			if (werr != nil) != (gerr != nil) {
				t.Fatalf("%s entry (hmac_accessor %v): error %v, encoding/json's %v", typ, acc, gerr, werr)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s entry (hmac_accessor %v) differs from encoding/json's\n got: %s\nwant: %s", typ, acc, got, want)
			}
		}
	}
}

// nested returns a document of depth levels of arrays.
func nested(depth int) string {
	return strings.Repeat("[", depth) + strings.Repeat("]", depth)
}

func TestRenderMatchesEncodingJSON(t *testing.T) {
	bodies := map[string]string{
		"empty":                         "",
		"blank":                         " \t\r\n",
		"unicode blank":                 "\v\u00a0",
		"null":                          "null",
		"object":                        `{"data":{"password":"hunter2","port":5432,"ok":true,"none":null}}`,
		"spaces everywhere":             " { \"a\" : [ 1 , 2.5e+3 , -0 , \"x\" ] , \"b\" : { } , \"c\" : [ ] } ",
		"duplicate keys":                `{"a":1,"b":2,"a":"x","a":{"z":1}}`,
		"keys out of order":             `{"z":1,"a":2,"m":{"y":1,"b":2},"":3,"A":4}`,
		"escapes":                       `{"s\n":"a\"b\\c\/d\b\f\n\r\t\u0000\u001f\u0041\u00e9\u2028\u2029<>&"}`,
		"surrogates":                    `["\ud83d\ude00","\ud800","\udc00x","\ud800\u0041","\ud800\ud800","\ud83d\ude00\ud800"]`,
		"bad escape":                    `{"a":"\x"}`,
		"short unicode escape":          `{"a":"\u12"}`,
		"invalid UTF-8":                 "{\"a\xff\":\"b\xfe\xc3\",\"c\":\"\xed\xa0\x80\"}",
		"control byte in string":        "{\"a\":\"\x01\"}",
		"html in keys":                  `{"<script>":"&amp;"}`,
		"top-level string":              `"just a string"`,
		"top-level number":              `12.5`,
		"top-level false":               `false`,
		"number then garbage":           `123abc`,
		"number then bracket":           `123]`,
		"object then brace":             `{"a":1}}`,
		"object then garbage":           `{"a":1} x`,
		"two values":                    `{"a":1} {"b":2}`,
		"leading zero":                  `[01]`,
		"bad numbers":                   `[1.]`,
		"bad exponent":                  `[1e]`,
		"minus alone":                   `[-]`,
		"big numbers":                   `[1e999,-123456789012345678901234567890,0.000001,1E-7]`,
		"truncated":                     `{"a":[1,2`,
		"trailing comma":                `{"a":1,}`,
		"truex":                         `truex`,
		"literal prefix":                `[tru]`,
		"not JSON":                      `password=hunter2&user=bob`,
		"nesting at the limit":          nested(maxDepth),
		"nesting over the limit":        nested(maxDepth + 1),
		"object nesting over the limit": strings.Repeat(`{"a":`, maxDepth+1) + "1" + strings.Repeat("}", maxDepth+1),
	}
	for name, body := range bodies {
		t.Run("body: "+name, func(t *testing.T) {
			in := request("r", logical.UpdateOperation, "secret/data/x", body)
			checkSame(t, in, &logical.Response{Data: map[string]any{"echo": json.RawMessage(body)}}, nil)
		})
	}

	type point struct {
		X float64 `json:"x"`
		Y string  `json:"y,omitempty"`
	}
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	deepMap := map[string]any{}
	for m, i := deepMap, 0; i < 2*maxWalk; i++ {
		next := map[string]any{}
		m["d"] = next
		m = next
	}
	responses := map[string]any{
		"kv read": map[string]any{
			"data":     json.RawMessage(`{"value":"s3cret","n":1}`),
			"metadata": map[string]any{"version": uint64(3), "destroyed": false, "custom_metadata": nil, "created_time": "2025-01-02T03:04:05Z"},
		},
		"integers and floats":         map[string]any{"i": -3, "i64": int64(1) << 62, "u": uint(7), "u32": uint32(9), "i32": int32(-9), "i8": int8(-1), "f": 1.5, "f2": 1e21, "f3": 1e-7, "f4": float32(0.1), "n": json.Number("1.50"), "empty number": json.Number("")},
		"invalid json.Number":         map[string]any{"n": json.Number("1.2.3")},
		"strings and lists":           map[string]any{"l": []string{"a", "b"}, "m": map[string]string{"k": "v", "a": "b"}, "any": []any{1, "x", nil, true, []any{}}},
		"typed nils":                  map[string]any{"m": map[string]any(nil), "l": []any(nil), "s": []string(nil), "ms": map[string]string(nil), "raw": json.RawMessage(nil), "p": (*point)(nil)},
		"structs, times and bytes":    map[string]any{"p": point{X: 0.1}, "pp": &point{Y: "<y>"}, "t": time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC), "b": []byte("bytes"), "d": time.Second},
		"invalid UTF-8 in a value":    map[string]any{"s": "a\xffb", "t": "ok"},
		"invalid UTF-8 in keys":       map[string]any{"\xff": "a", "\xfe": "b"},
		"invalid UTF-8 in a list":     []string{"\xff"},
		"invalid UTF-8 in string map": map[string]string{"a": "\xff"},
		"html and separators":         map[string]any{"<a>": "&", "x": "\u2028"},
		"a struct as data":            point{X: 2, Y: "y"},
		"a string as data":            "plain",
		"a nil map as data":           map[string]any(nil),
		"raw null as data":            json.RawMessage("null"),
		"raw with spaces":             map[string]any{"r": json.RawMessage(" { \"b\" : 1 , \"a\" : [ ] } ")},
		"invalid raw":                 map[string]any{"r": json.RawMessage(`{"a":`)},
		"empty raw":                   map[string]any{"r": json.RawMessage{}},
		"raw nested over the limit":   map[string]any{"r": json.RawMessage(nested(maxDepth))},
		"deep maps":                   deepMap,
		"a cycle":                     cyclic,
		"unsupported value":           map[string]any{"c": make(chan int)},
	}
	for name, data := range responses {
		t.Run("response data: "+name, func(t *testing.T) {
			checkSame(t, request("r", logical.ReadOperation, "secret/data/x", ""), &logical.Response{MountType: "kv", Data: data}, nil)
		})
	}

	full := &logical.Response{
		MountType: "token",
		Auth: &logical.Auth{ClientToken: "hvs.new", Accessor: "acc-new", Policies: []string{"a", "b"}, TokenPolicies: []string{"a"},
			Metadata: map[string]string{"role": "r", "b": "<&>"}, TokenType: "service", LeaseDuration: 3600, Orphan: true},
		Lease:    &logical.Lease{ID: "database/creds/ro/abc"},
		Warnings: []string{"w1", "w\"2"},
		WrapInfo: &logical.WrapInfo{Token: "hvs.wrap", Accessor: "wacc", TTL: 60, CreationTime: time.Date(2025, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 2*3600+30*60)),
			CreationPath: "auth/token/create", WrappedAccessor: "wrapped"},
	}
	entries := map[string]func() (*Input, *logical.Response, error){
		"auth, lease, warnings and wrap info": func() (*Input, *logical.Response, error) {
			return request("r", logical.UpdateOperation, "auth/token/create", `{"policies":["a"]}`), full, nil
		},
		"no caller, no token, no address": func() (*Input, *logical.Response, error) {
			return &Input{Operation: logical.ReadOperation, Path: "sys/health"}, nil, nil
		},
		"caller without accessor or policies": func() (*Input, *logical.Response, error) {
			in := request("", logical.ListOperation, "secret/metadata/", "")
			in.Caller = &logical.Caller{DisplayName: "root"}
			in.RemoteAddr = "[::1]:8200"
			return in, &logical.Response{}, nil
		},
		"query parameters": func() (*Input, *logical.Response, error) {
			in := request("r", logical.ReadOperation, "secret/data/x", "")
			in.Query = url.Values{"version": {"2"}, "z": {"a", "b"}, "empty": {}, "\xff": {"\xfe"}}
			in.WrapTTL = 90 * time.Second
			return in, nil, nil
		},
		"refused with an error": func() (*Input, *logical.Response, error) {
			in := request("r", logical.ReadOperation, "secret/data/x", "")
			in.Err = logical.ErrPermissionDenied
			return in, nil, nil
		},
		"engine error": func() (*Input, *logical.Response, error) {
			return request("r", logical.ReadOperation, "secret/data/x", ""), nil, fmt.Errorf("disk on fire")
		},
		"wrap creation time beyond year 9999": func() (*Input, *logical.Response, error) {
			return request("r", logical.ReadOperation, "x", ""), &logical.Response{WrapInfo: &logical.WrapInfo{CreationTime: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}, nil
		},
		"wrap creation time with a 24h offset": func() (*Input, *logical.Response, error) {
			return request("r", logical.ReadOperation, "x", ""), &logical.Response{WrapInfo: &logical.WrapInfo{CreationTime: time.Date(2025, 1, 1, 0, 0, 0, 0, time.FixedZone("far", 25*3600))}}, nil
		},
		"strings to escape in plain fields": func() (*Input, *logical.Response, error) {
			in := request("id\"\n", logical.Operation("op<&>"), "p\u2028\xff", "")
			in.MountPoint, in.MountType = "m\t/", "k\\v"
			in.Caller.DisplayName = "d\x00"
			in.Caller.Policies = []string{"p\"", "\u2029"}
			in.Caller.Metadata = map[string]string{"k\n": "v\xff", "a": ""}
			return in, &logical.Response{MountType: "t\"", Warnings: []string{"\x7f"}}, logical.Errorf(logical.Invalid, "bad \"input\"\n<x>")
		},
	}
	for name, mk := range entries {
		t.Run(name, func(t *testing.T) {
			in, resp, err := mk()
			checkSame(t, in, resp, err)
		})
	}
}

// TestRenderMatchesEncodingJSONOnRandomData renders random documents made
// of awkward pieces (escapes, invalid UTF-8, surrogates, odd numbers,
// duplicate keys, bad syntax) as request bodies and as response data, both
// raw and decoded into Go values.
func TestRenderMatchesEncodingJSONOnRandomData(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	n := 3000
	if testing.Short() {
		n = 300
	}
	for i := range n {
		doc := randomDoc(rng, 0)
		if rng.IntN(10) == 0 { // break it
			b := []byte(doc)
			if len(b) > 0 {
				const breakers = "{}[]\",:x\\\xff "
				b[rng.IntN(len(b))] = breakers[rng.IntN(len(breakers))]
			}
			doc = string(b)
		}
		var decoded any
		json.Unmarshal([]byte(doc), &decoded)
		in := request(fmt.Sprint(i), logical.UpdateOperation, "secret/data/x", doc)
		resp := &logical.Response{Data: map[string]any{"raw": json.RawMessage(doc), "decoded": decoded, "s": doc}}
		checkSame(t, in, resp, nil)
	}
}

var pieces = []string{
	`a`, `é`, `\u00e9`, `\n`, `\"`, `\\`, `\/`, `\u0000`, `\u001F`, `<`, `>`, `&`, "\u2028", `\u2029`,
	`\ud83d\ude00`, `\ud800`, `\udc00`, "\xff", "\xc3", "\xed\xa0\x80", "\xef\xbf\xbd", `\t`, ` `, `\b`, `\f`, "\x7f",
}

func randomString(rng *rand.Rand) string {
	var b strings.Builder
	b.WriteByte('"')
	for range rng.IntN(5) {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	b.WriteByte('"')
	return b.String()
}

var numbers = []string{`0`, `-0`, `1`, `-12`, `1.5`, `1e3`, `1E+30`, `-2.5e-3`, `123456789012345678901234567890`, `0.1`}

func randomDoc(rng *rand.Rand, depth int) string {
	k := rng.IntN(8)
	if depth > 4 {
		k = rng.IntN(4)
	}
	switch k {
	case 0:
		return randomString(rng)
	case 1:
		return numbers[rng.IntN(len(numbers))]
	case 2:
		return []string{"true", "false", "null"}[rng.IntN(3)]
	case 3:
		return randomString(rng)
	case 4, 5:
		var b strings.Builder
		b.WriteString("{")
		for j := range rng.IntN(5) {
			if j > 0 {
				b.WriteString(",")
			}
			key := randomString(rng)
			if rng.IntN(3) == 0 {
				key = `"k"` // duplicates
			}
			fmt.Fprintf(&b, "%s%s:%s", key, []string{"", " ", "\n"}[rng.IntN(3)], randomDoc(rng, depth+1))
		}
		b.WriteString("}")
		return b.String()
	default:
		var b strings.Builder
		b.WriteString("[")
		for j := range rng.IntN(5) {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString(randomDoc(rng, depth+1))
		}
		b.WriteString("]")
		return b.String()
	}
}

// FuzzRender checks that the fast renderer's output equals encoding/json's
// for any request body, any raw response data and any string in the plain
// fields.
func FuzzRender(f *testing.F) {
	f.Add([]byte(`{"data":{"password":"hunter2","port":5432}}`), []byte(`{"value":"x"}`), "secret/data/app")
	f.Add([]byte(`{"a":"\ud800","a":1} ]`), []byte(`[1e5, "\u2028"]`), "\xff<&>\u2029")
	f.Add([]byte("not json"), []byte(`{`), "")
	f.Fuzz(func(t *testing.T, body, raw []byte, s string) {
		var decoded any
		json.Unmarshal(raw, &decoded)
		in := request(s, logical.UpdateOperation, s, string(body))
		in.Caller.DisplayName = s
		in.Caller.Metadata = map[string]string{s: s}
		in.Query = url.Values{s: {s}}
		resp := &logical.Response{MountType: s, Warnings: []string{s}, Data: map[string]any{
			"raw": json.RawMessage(raw), "decoded": decoded, s: s, "n": len(s), "list": []string{s},
		}}
		checkSame(t, in, resp, nil)
	})
}

// TestRenderRefusesForeignData: the data tree holds only the types the
// parser and the walk produce; anything else fails the entry (the device
// skips it) rather than being guessed at.
func TestRenderRefusesForeignData(t *testing.T) {
	p := prepareRequest(request("r", logical.ReadOperation, "p", ""), time.Now())
	p.reqData = object{{key: "f", val: 1.5}}
	if got, err := p.render(newMACKey([]byte("salt")), true); err == nil {
		t.Errorf("render with a float64 in the tree = %s, want an error", got)
	}
}
