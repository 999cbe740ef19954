package kv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// Factory builds a KV engine for a mount. cfg.Options["version"] chooses
// the flavour: "1" (the default, as Vault's "kv" type) or "2". cfg.Storage
// is required; a nil cfg.Now is time.Now and a nil cfg.Logger discards.
// An unknown version is a logical.Invalid error.
func Factory(ctx context.Context, cfg logical.BackendConfig) (logical.Backend, error) {
	switch v := cfg.Options["version"]; v {
	case "", "1":
		if cfg.Storage == nil {
			return nil, errors.New("kv: storage is required")
		}
		return NewV1(cfg.Storage), nil
	case "2":
		return NewV2(cfg)
	default:
		return nil, logical.Errorf(logical.Invalid, "kv: unknown version %q (want 1 or 2)", v)
	}
}

// errNotFound is a 404 with an empty "errors" list, what Vault answers
// for a missing object on a path that is not a plain read.
func errNotFound() *logical.Error {
	return &logical.Error{Code: logical.NotFound, Message: "not found", Messages: []string{}}
}

// checkWriteKey rejects the keys a write may not use.
func checkWriteKey(key string) error {
	switch {
	case key == "":
		return logical.Errorf(logical.Invalid, "missing key: a secret's path must not be empty")
	case strings.HasSuffix(key, "/"):
		return logical.Errorf(logical.Invalid, "invalid key: a secret's path must not end in \"/\"")
	}
	return nil
}

// listPrefix turns a LIST path into a storage prefix: "" or ending in "/".
func listPrefix(p string) string {
	if p != "" && !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p
}

// decodeObject parses raw as a JSON object, keeping numbers as
// json.Number so they round-trip exactly. field names the value in errors,
// which never quote the input.
func decodeObject(raw []byte, field string) (map[string]any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, logical.Errorf(logical.Invalid, "%s must be a JSON object", field)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, logical.Errorf(logical.Invalid, "%s is not valid JSON", field)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, logical.Errorf(logical.Invalid, "%s: trailing data after the JSON object", field)
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// decodeStored parses a stored JSON object; a failure is internal.
func decodeStored(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, errors.New("kv: stored entry is corrupt")
	}
	return m, nil
}

// queryUint reads a non-negative integer query parameter; absent is 0.
func queryUint(req *logical.Request, name string) (uint64, error) {
	s := strings.TrimSpace(req.Query.Get(name))
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 63)
	if err != nil {
		return 0, logical.Errorf(logical.Invalid, "%s must be a non-negative integer", name)
	}
	return n, nil
}

// formatTime is Vault's rendering of a timestamp: RFC 3339 with
// nanoseconds in UTC, or "" for the zero time.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// discard is the logger used when none is given.
func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// wrap adds what the engine was doing to a storage error.
func wrap(err error, what string) error {
	return fmt.Errorf("kv: %s: %w", what, err)
}
