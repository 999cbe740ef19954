package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// Input is what the core knows of a request when it logs it. Build it with
// NewInput and add what the router learned (MountType, Err). One goroutine
// logs an Input at a time, and its Body does not change once logged: the
// response entry reuses the data the request entry parsed from it.
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

	// bodyData is Body's data once parsed (parsedBody is the Body it was
	// parsed from): the response entry reuses the request entry's.
	bodyData   any
	parsedBody []byte
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

// prepared is an entry's device-independent part: its data in clear, as
// a tree (value.go) that each device renders, HMAC'ing the strings with
// its own salt.
type prepared struct {
	typ      string
	time     time.Time
	in       *Input
	reqData  any
	resp     *logical.Response
	respData any
	err      string
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
