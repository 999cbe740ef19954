package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Error is returned for every response with a status of 400 or more.
// Errors holds the server's messages (it may be empty, as for a KV v2
// read of a missing secret). The server never puts secret values in
// them, and neither does this package.
type Error struct {
	StatusCode int
	Errors     []string
}

// Sentinel errors for the conditions callers branch on. Check them with
// errors.Is: an *Error matches the one for its status code.
var (
	ErrNotFound         = errors.New("not found")
	ErrPermissionDenied = errors.New("permission denied")
	ErrSealed           = errors.New("server is sealed")
)

// Error returns the server's messages in plain words, or a phrase for the
// status when the server sent none.
func (e *Error) Error() string {
	var msgs []string
	for _, m := range e.Errors {
		m = strings.TrimSpace(m)
		if m == "" {
			continue
		}
		// Vault-compatible servers may say "Vault is sealed".
		if strings.EqualFold(m, "vault is sealed") {
			m = "server is sealed"
		}
		msgs = append(msgs, m)
	}
	if len(msgs) > 0 {
		return strings.Join(msgs, "; ")
	}
	switch e.StatusCode {
	case http.StatusBadRequest:
		return "invalid request"
	case http.StatusUnauthorized, http.StatusForbidden:
		return "permission denied"
	case http.StatusNotFound:
		return "not found"
	case http.StatusMethodNotAllowed:
		return "unsupported operation"
	case http.StatusRequestEntityTooLarge:
		return "request too large"
	case http.StatusTooManyRequests:
		return "too many requests"
	case http.StatusServiceUnavailable:
		return "server is sealed or unavailable"
	}
	if t := http.StatusText(e.StatusCode); t != "" {
		return strings.ToLower(t)
	}
	return "unexpected status " + strconv.Itoa(e.StatusCode)
}

// Is reports whether target is the sentinel for e's status.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrPermissionDenied:
		return e.StatusCode == http.StatusForbidden || e.StatusCode == http.StatusUnauthorized
	case ErrSealed:
		if e.StatusCode != http.StatusServiceUnavailable {
			return false
		}
		for _, m := range e.Errors {
			if strings.Contains(strings.ToLower(m), "sealed") {
				return true
			}
		}
		return len(e.Errors) == 0
	}
	return false
}

// maxErrorBody bounds how much of an error body is read.
const maxErrorBody = 1 << 20

// errorFromResponse reads resp's body (without closing it) into an *Error.
func errorFromResponse(resp *http.Response) *Error {
	e := &Error{StatusCode: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var body struct {
		Errors []string `json:"errors"`
	}
	if json.Unmarshal(b, &body) == nil {
		e.Errors = body.Errors
	}
	return e
}

// CheckResponse returns nil for a status below 400 and otherwise an
// *Error read from resp's body, for callers of Raw. It does not close
// the body.
func CheckResponse(resp *http.Response) error {
	if resp.StatusCode < 400 {
		return nil
	}
	return errorFromResponse(resp)
}
