package store

import (
	"context"
	"encoding/base64"
	"strings"
	"unicode/utf8"

	"github.com/coffer-dev/coffer/internal/logical"
)

var _ logical.Backend = (*Store)(nil)

// HandleRequest serves the policy endpoints; req.Path is relative to
// "sys/" (see the package documentation for the paths). Client errors are
// *logical.Error values; a read of a missing policy returns a nil
// Response (404); writes and deletes return a nil Response (204).
func (s *Store) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	path := strings.TrimPrefix(req.Path, "/")
	switch {
	case path == "policies/acl" || path == "policies/acl/":
		if req.Operation != logical.ListOperation {
			return nil, logical.ErrUnsupportedOperation
		}
		return s.handleList(ctx, "", false)
	case strings.HasPrefix(path, "policies/acl/"):
		return s.handleName(ctx, req, strings.TrimPrefix(path, "policies/acl/"), "policy")
	case path == "policy" || path == "policy/":
		if req.Operation != logical.ReadOperation && req.Operation != logical.ListOperation {
			return nil, logical.ErrUnsupportedOperation
		}
		return s.handleList(ctx, "", true)
	case strings.HasPrefix(path, "policy/"):
		return s.handleName(ctx, req, strings.TrimPrefix(path, "policy/"), "rules")
	}
	return nil, logical.ErrUnsupportedPath(req.Path)
}

// handleName serves one policy; textField is the name of the text in a
// read ("policy", or "rules" on the legacy path).
func (s *Store) handleName(ctx context.Context, req *logical.Request, name, textField string) (*logical.Response, error) {
	legacy := textField == "rules"
	switch req.Operation {
	case logical.ListOperation:
		return s.handleList(ctx, sanitize(strings.TrimSuffix(name, "/")), legacy)
	case logical.ReadOperation:
		return s.handleRead(ctx, name, textField)
	case logical.CreateOperation, logical.UpdateOperation, logical.PatchOperation:
		return nil, s.handleWrite(ctx, req, name, legacy)
	case logical.DeleteOperation:
		return nil, s.Delete(ctx, name)
	}
	return nil, logical.ErrUnsupportedOperation
}

func (s *Store) handleList(ctx context.Context, prefix string, legacy bool) (*logical.Response, error) {
	names, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(names))
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			keys = append(keys, n)
		}
	}
	data := map[string]any{"keys": keys}
	if legacy {
		data["policies"] = keys
	}
	return &logical.Response{Data: data}, nil
}

func (s *Store) handleRead(ctx context.Context, name, textField string) (*logical.Response, error) {
	name = sanitize(name)
	if !validName(name) {
		return nil, nil
	}
	c, err := s.load(ctx, name)
	if err != nil || c == nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{
		"name":                                  name,
		textField:                               c.entry.Raw,
		"version":                               c.entry.Version,
		"modified":                              c.entry.Modified,
		"cas_required":                          c.entry.CASRequired,
		"allow_slashes_in_identity_templates":   false,
		"allow_wildcards_in_identity_templates": false,
	}}, nil
}

// writeRequest is the body of a policy write.
type writeRequest struct {
	Policy      *string       `json:"policy"`
	Rules       *string       `json:"rules"`
	CAS         *logical.Int  `json:"cas"`
	CASRequired *logical.Bool `json:"cas_required"`
	// Not supported; refused when set rather than ignored.
	Expiration     string           `json:"expiration"`
	TTL            logical.Duration `json:"ttl"`
	AllowWildcards logical.Bool     `json:"allow_wildcards_in_identity_templates"`
	AllowSlashes   logical.Bool     `json:"allow_slashes_in_identity_templates"`
}

func (s *Store) handleWrite(ctx context.Context, req *logical.Request, name string, legacy bool) error {
	var body writeRequest
	if err := req.Decode(&body); err != nil {
		return err
	}
	switch {
	case body.Expiration != "" || body.TTL != 0:
		return logical.Errorf(logical.Invalid, "policy expiration and ttl are not supported")
	case bool(body.AllowWildcards) || bool(body.AllowSlashes):
		return logical.Errorf(logical.Invalid, "identity templates are not supported")
	}
	w := writeArgs{policy: body.Policy, patch: req.Operation == logical.PatchOperation}
	if legacy && (w.policy == nil || *w.policy == "") {
		w.policy = body.Rules
	}
	if w.policy != nil {
		text := decodeText(*w.policy)
		w.policy = &text
	}
	if body.CAS != nil {
		cas := int(*body.CAS)
		w.cas = &cas
	}
	if body.CASRequired != nil {
		b := bool(*body.CASRequired)
		w.casRequired = &b
	}
	return s.put(ctx, name, w)
}

// decodeText returns the policy text of a request: Vault accepts it
// base64-encoded too.
func decodeText(s string) string {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) > 0 && utf8.Valid(b) {
		return string(b)
	}
	return s
}
