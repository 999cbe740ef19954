package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// Input is what the core knows of a request when it logs it. Build it with
// NewInput and add what the router learned (MountType, Err).
type Input struct {
	RequestID string
	Operation logical.Operation
	// Path is the full logical path ("secret/data/app").
	Path       string
	MountPoint string
	MountType  string
	// RemoteAddr is "ip:port" or just an address.
	RemoteAddr string
	// Caller is nil for unauthenticated requests.
	Caller *logical.Caller
	// ClientToken is the raw token. It is only ever written HMAC'd.
	ClientToken string
	// Body is the raw JSON body; its string values are written HMAC'd.
	Body []byte
	// Query parameters are recorded as data when Body is empty (as Vault
	// does for reads), HMAC'd.
	Query   url.Values
	WrapTTL time.Duration
	// Err is set when the request was refused before it reached the engine
	// (bad token, permission denied, invalid body).
	Err error
}

// NewInput returns the Input of req before routing (Path is the full
// path).
func NewInput(req *logical.Request) *Input {
	return &Input{
		RequestID:   req.ID,
		Operation:   req.Operation,
		Path:        req.Path,
		MountPoint:  req.MountPoint,
		RemoteAddr:  req.RemoteAddr,
		Caller:      req.Caller,
		ClientToken: req.ClientToken,
		Body:        req.Body,
		Query:       req.Query,
		WrapTTL:     req.WrapTTL,
	}
}

// hmacValue renders Vault's identified HMAC of s with salt:
// "hmac-sha256:" and the hex HMAC-SHA256 of s keyed with the salt's bytes.
func hmacValue(salt []byte, s string) string {
	p := hmacPool(salt)
	m := p.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(s))
	var sum [sha256.Size]byte
	out := "hmac-sha256:" + hex.EncodeToString(m.Sum(sum[:0]))
	p.Put(m)
	return out
}

// hmacPools keeps keyed HMAC states per salt: keying an HMAC costs two
// block compressions and allocations, and an audited request hashes many
// values with the same few salts.
var hmacPools sync.Map // string(salt) -> *sync.Pool

func hmacPool(salt []byte) *sync.Pool {
	if p, ok := hmacPools.Load(string(salt)); ok {
		return p.(*sync.Pool)
	}
	key := append([]byte(nil), salt...)
	p, _ := hmacPools.LoadOrStore(string(key), &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }})
	return p.(*sync.Pool)
}

// The entry shapes, as Vault's JSON audit format, with omitted fields
// Coffer does not have (namespaces are always root).
type entryAuth struct {
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

type entryNamespace struct {
	ID string `json:"id"`
}

type entryRequest struct {
	ID                  string         `json:"id,omitempty"`
	Operation           string         `json:"operation"`
	MountPoint          string         `json:"mount_point,omitempty"`
	MountType           string         `json:"mount_type,omitempty"`
	ClientToken         string         `json:"client_token,omitempty"`
	ClientTokenAccessor string         `json:"client_token_accessor,omitempty"`
	Namespace           entryNamespace `json:"namespace"`
	Path                string         `json:"path"`
	Data                any            `json:"data,omitempty"`
	RemoteAddress       string         `json:"remote_address,omitempty"`
	RemotePort          int            `json:"remote_port,omitempty"`
	WrapTTL             int64          `json:"wrap_ttl,omitempty"`
}

type entrySecret struct {
	LeaseID string `json:"lease_id"`
}

type entryWrapInfo struct {
	TTL             int64     `json:"ttl"`
	Token           string    `json:"token,omitempty"`
	Accessor        string    `json:"accessor,omitempty"`
	CreationTime    time.Time `json:"creation_time"`
	CreationPath    string    `json:"creation_path"`
	WrappedAccessor string    `json:"wrapped_accessor,omitempty"`
}

type entryResponse struct {
	MountType string         `json:"mount_type,omitempty"`
	Auth      *entryAuth     `json:"auth,omitempty"`
	Secret    *entrySecret   `json:"secret,omitempty"`
	Data      any            `json:"data,omitempty"`
	Warnings  []string       `json:"warnings,omitempty"`
	WrapInfo  *entryWrapInfo `json:"wrap_info,omitempty"`
}

type entry struct {
	Time     time.Time      `json:"time"`
	Type     string         `json:"type"`
	Auth     entryAuth      `json:"auth"`
	Request  entryRequest   `json:"request"`
	Response *entryResponse `json:"response,omitempty"`
	Error    string         `json:"error"`
}

// prepared is an entry's device-independent part: decoded data still in
// clear, which each device HMACs with its own salt.
type prepared struct {
	typ      string
	time     time.Time
	in       *Input
	reqData  any
	resp     *logical.Response
	respData any
	err      string
}

// decodeData decodes a JSON document into generic values, numbers kept as
// json.Number. Bytes that are not JSON become a single string (HMAC'd like
// any other), so nothing is lost and nothing leaks.
func decodeData(b []byte) any {
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

func queryData(q url.Values) any {
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

// hashData returns a copy of v with every string replaced by its HMAC.
// Map keys stay readable, as in Vault.
func hashData(salt []byte, v any) any {
	switch v := v.(type) {
	case string:
		return hmacValue(salt, v)
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = hashData(salt, x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = hashData(salt, x)
		}
		return out
	default: // json.Number, bool, nil
		return v
	}
}

// errorMessage is what an entry records of err: the client-facing message
// of a logical.Error (which never holds a secret value), and only "internal
// error" for anything else, whose details belong in the server log.
func errorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *logical.Error
	if errors.As(err, &e) {
		if len(e.Messages) > 0 {
			return strings.Join(e.Messages, "; ")
		}
		return e.Message
	}
	return "internal error"
}

func splitAddr(a string) (string, int) {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return a, 0
	}
	p, _ := strconv.Atoi(port)
	return host, p
}

// render formats p for a device with the given salt. The result is a JSON
// object without seq and prev_hash, which the device's goroutine adds.
func (p *prepared) render(salt []byte, hmacAccessor bool) ([]byte, error) {
	h := func(s string) string {
		if s == "" {
			return ""
		}
		return hmacValue(salt, s)
	}
	acc := func(s string) string {
		if hmacAccessor {
			return h(s)
		}
		return s
	}
	in := p.in
	e := entry{Time: p.time, Type: p.typ, Error: p.err}
	e.Auth.ClientToken = h(in.ClientToken)
	if c := in.Caller; c != nil {
		e.Auth.Accessor = acc(c.Accessor)
		e.Auth.DisplayName = c.DisplayName
		e.Auth.Policies = c.Policies
		e.Auth.TokenPolicies = c.Policies
		e.Auth.Metadata = c.Metadata
	}
	addr, port := splitAddr(in.RemoteAddr)
	e.Request = entryRequest{
		ID: in.RequestID, Operation: string(in.Operation), MountPoint: in.MountPoint, MountType: in.MountType,
		ClientToken: e.Auth.ClientToken, ClientTokenAccessor: e.Auth.Accessor,
		Namespace: entryNamespace{ID: "root"}, Path: in.Path, Data: hashData(salt, p.reqData),
		RemoteAddress: addr, RemotePort: port, WrapTTL: int64(in.WrapTTL / time.Second),
	}
	if p.typ == "response" {
		r := &entryResponse{}
		if resp := p.resp; resp != nil {
			r.MountType = resp.MountType
			r.Data = hashData(salt, p.respData)
			r.Warnings = resp.Warnings
			if a := resp.Auth; a != nil {
				r.Auth = &entryAuth{
					ClientToken: h(a.ClientToken), Accessor: acc(a.Accessor), Policies: a.Policies,
					TokenPolicies: a.TokenPolicies, Metadata: a.Metadata, TokenType: a.TokenType,
					TokenTTL: a.LeaseDuration, Orphan: a.Orphan,
				}
			}
			if l := resp.Lease; l != nil {
				r.Secret = &entrySecret{LeaseID: l.ID}
			}
			if w := resp.WrapInfo; w != nil {
				r.WrapInfo = &entryWrapInfo{
					TTL: w.TTL, Token: h(w.Token), Accessor: acc(w.Accessor), CreationTime: w.CreationTime,
					CreationPath: w.CreationPath, WrappedAccessor: acc(w.WrappedAccessor),
				}
			}
		}
		e.Response = r
	}
	return marshalLine(e)
}

// marshalLine encodes v as one line of compact JSON without HTML escaping
// and without the trailing newline.
func marshalLine(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
