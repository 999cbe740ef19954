package logical

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Operation is what a request does; policies grant capabilities by the
// same names (plus sudo and deny).
type Operation string

// The operations. A write (POST/PUT) arrives as Update and becomes Create
// when the engine's existence check says the path does not exist yet.
const (
	ReadOperation   Operation = "read"
	CreateOperation Operation = "create"
	UpdateOperation Operation = "update"
	PatchOperation  Operation = "patch"
	DeleteOperation Operation = "delete"
	ListOperation   Operation = "list"
)

// Caller is who makes a request, as the token store resolved it. Engines
// see it; they never see the token itself.
type Caller struct {
	Accessor    string
	DisplayName string
	Policies    []string
	Metadata    map[string]string
	// CubbyholeID names the caller's private cubbyhole; it is stable for
	// the token's life and unrelated to the token's value.
	CubbyholeID string
	// Orphan, TTL and the like are not needed by engines and stay in the
	// token store.
}

// Request is one API call on its way through the pipeline.
type Request struct {
	ID        string
	Operation Operation
	// Path is relative to the mount when an engine sees it ("data/app"),
	// and the full logical path before routing ("secret/data/app").
	Path string
	// MountPoint is the mount's path with its trailing slash ("secret/");
	// set by the router.
	MountPoint string
	// Body is the raw JSON body; empty when there was none.
	Body []byte
	// Query holds URL query parameters (e.g. version for KV v2 reads).
	Query url.Values
	// Caller is nil for unauthenticated paths.
	Caller *Caller
	// ClientToken is the raw token; only the token store and the core's
	// wrapping use it. Never log it.
	ClientToken string
	// RemoteAddr is the client's address (ip:port).
	RemoteAddr string
	// WrapTTL asks for the response to be wrapped (X-Vault-Wrap-TTL).
	WrapTTL time.Duration
}

// Decode unmarshals the JSON body into v, a pointer to the endpoint's own
// request struct. An empty body leaves v untouched. Malformed JSON and
// values of the wrong type are Invalid errors that name the field, never
// its value.
func (r *Request) Decode(v any) error {
	return DecodeJSON(r.Body, v)
}

// DecodeJSON is Request.Decode for a body outside a Request.
func DecodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			if field == "" {
				return Errorf(Invalid, "error decoding request: the body must be a JSON object")
			}
			return Errorf(Invalid, "error decoding request: field %q must be of type %s, not %s", field, te.Type, te.Value)
		}
		var fe *FieldError
		if errors.As(err, &fe) {
			return Errorf(Invalid, "error decoding request: %s", fe.Error())
		}
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return Errorf(Invalid, "error decoding request: malformed JSON at offset %d", se.Offset)
		}
		return Errorf(Invalid, "error decoding request: malformed JSON")
	}
	if dec.More() {
		return Errorf(Invalid, "error decoding request: trailing data after the JSON object")
	}
	return nil
}

// FieldError is returned by the lenient field types below when a value
// cannot be read as the type; it never carries the value.
type FieldError struct {
	Want string
}

func (e *FieldError) Error() string { return fmt.Sprintf("a value is not a valid %s", e.Want) }

// Response is what an engine returns. A nil *Response with a nil error
// means "nothing": 404 for a read, 204 for anything else.
type Response struct {
	// Data is marshalled as the envelope's "data"; usually map[string]any
	// or a struct with json tags. A json.RawMessage inside it is written
	// as it is, unchecked: it must be JSON as json.Marshal writes it
	// (compact, HTML-escaped), such as a value json.Marshal produced and
	// the engine stored.
	Data any
	// Auth is set by logins and token creation.
	Auth *Auth
	// Lease describes the lease of a dynamic secret on the way out; the
	// core sets it from Secret.
	Lease *Lease
	// Secret, set by an engine, asks for the response to be leased.
	Secret *SecretLease
	// Warnings are shown to the client.
	Warnings []string
	// WrapInfo is set by the core when the response was wrapped.
	WrapInfo *WrapInfo
	// StatusCode, when non-zero, is the HTTP status to send with this
	// response instead of the usual one, as Vault's RespondWithStatusCode:
	// a KV v2 read of a deleted or destroyed version is a 404 whose body
	// still carries data (null) and the version's metadata.
	StatusCode int
	// MountType is echoed in the envelope ("kv", "transit", ...).
	MountType string
	// Inline also puts Data's fields at the top level of the envelope, as
	// Vault's older sys endpoints (sys/mounts, sys/capabilities...) do.
	Inline bool
}

// Auth is the "auth" block of a login or token-creation response.
type Auth struct {
	ClientToken    string            `json:"client_token"`
	Accessor       string            `json:"accessor"`
	Policies       []string          `json:"policies"`
	TokenPolicies  []string          `json:"token_policies"`
	Metadata       map[string]string `json:"metadata"`
	LeaseDuration  int64             `json:"lease_duration"`
	Renewable      bool              `json:"renewable"`
	EntityID       string            `json:"entity_id"`
	TokenType      string            `json:"token_type"`
	Orphan         bool              `json:"orphan"`
	MFARequirement any               `json:"mfa_requirement"`
	NumUses        int               `json:"num_uses"`

	// The fields below are not on the wire. An auth method's login sets
	// them (with Policies, Metadata, Renewable and NumUses) and leaves
	// ClientToken empty; the core then mints the token and fills in
	// ClientToken, Accessor, TokenPolicies, LeaseDuration and Orphan.

	// DisplayName names the identity (the core prefixes the mount type:
	// "kubernetes-default-app").
	DisplayName string `json:"-"`
	// TTL, MaxTTL and Period of the token to mint; zero takes the mount's
	// defaults (32 days).
	TTL    time.Duration `json:"-"`
	MaxTTL time.Duration `json:"-"`
	Period time.Duration `json:"-"`
	// Alias identifies who logged in, stable across logins (e.g. a service
	// account's UID), for audit and reuse accounting.
	Alias string `json:"-"`
	// BoundCIDRs are the canonical CIDR blocks ("10.0.0.0/8") the minted
	// token is bound to (token_bound_cidrs): the core stores them in the
	// token, which is then refused on every use from any other address.
	// Nil binds the token to no address.
	BoundCIDRs []string `json:"-"`
}

// SecretLease asks the core to put a dynamic secret under a lease. The core
// assigns the lease ID and fills in Response.Lease.
type SecretLease struct {
	TTL       time.Duration
	MaxTTL    time.Duration
	Renewable bool
	// InternalData is kept with the lease (encrypted by the barrier), never
	// shown to clients, and handed back to the engine at renew and revoke:
	// e.g. the database username to drop.
	InternalData json.RawMessage
}

// LeasedSecret is a dynamic secret's lease as the engine sees it at renew
// and revoke time.
type LeasedSecret struct {
	LeaseID      string
	Path         string // the request path relative to the mount that issued it
	IssueTime    time.Time
	ExpireTime   time.Time
	TTL          time.Duration // the TTL last granted
	MaxTTL       time.Duration
	InternalData json.RawMessage
}

// Lease describes the lease of a dynamic secret.
type Lease struct {
	ID        string
	Duration  time.Duration
	Renewable bool
}

// WrapInfo is the "wrap_info" block of a wrapped response.
type WrapInfo struct {
	Token           string    `json:"token"`
	Accessor        string    `json:"accessor"`
	TTL             int64     `json:"ttl"`
	CreationTime    time.Time `json:"creation_time"`
	CreationPath    string    `json:"creation_path"`
	WrappedAccessor string    `json:"wrapped_accessor,omitempty"`
}
