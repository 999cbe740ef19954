package logical

import (
	"errors"
	"fmt"
	"time"
)

// Code classifies an Error. httpapi maps each code to one HTTP status.
type Code int

const (
	// Internal is an unexpected failure; its details go only to the log.
	Internal Code = iota
	// Invalid: the request is malformed or its values are wrong (400).
	Invalid
	// PermissionDenied: missing or bad token, or a policy forbids it (403).
	PermissionDenied
	// NotFound: no such path, mount or object (404).
	NotFound
	// Unsupported: the path exists but not for this operation (405).
	Unsupported
	// Conflict: a check-and-set or precondition failed (400 in Vault's API,
	// kept distinct here so callers can branch on it).
	Conflict
	// TooLarge: the request body is over the limit (413).
	TooLarge
	// RateLimited: too many attempts; retry later (429).
	RateLimited
	// Sealed: the server is sealed (503).
	Sealed
	// Unavailable: not ready, or a standby that cannot answer (503).
	Unavailable
	// PreconditionFailed: e.g. a wrong unseal nonce (412 in some Vault paths; 400 here).
	PreconditionFailed
)

// Error is the one error type that crosses the API boundary. Message is
// shown to the client, so it never contains a secret value.
type Error struct {
	Code    Code
	Message string
	// Messages, when set, are returned as the "errors" array instead of
	// Message (e.g. a KV v2 read of a missing secret returns an empty list).
	Messages []string
	// RetryAfter, for RateLimited, is when the client may try again
	// (sent as the Retry-After header, in whole seconds, at least 1).
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with the given code.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrPermissionDenied is the error every authorization failure returns:
// Vault says no more than this, so a caller cannot probe what exists.
var ErrPermissionDenied = &Error{Code: PermissionDenied, Message: "permission denied"}

// ErrSealed is returned for any request a sealed server cannot serve.
var ErrSealed = &Error{Code: Sealed, Message: "server is sealed"}

// CodeOf returns the code of the first *Error in err's chain, or Internal.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// ErrUnsupportedPath is returned by engines for a path they do not serve.
func ErrUnsupportedPath(path string) *Error {
	return Errorf(NotFound, "unsupported path")
}

// ErrUnsupportedOperation is returned for a known path and an operation it
// does not support.
var ErrUnsupportedOperation = &Error{Code: Unsupported, Message: "unsupported operation"}
