package kv

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/coffer-dev/coffer/internal/logical"
)

// V1 is the unversioned KV engine: the JSON object written at a path is
// what a read of that path returns. It is safe for concurrent use; a
// write replaces the whole object, so concurrent writers need no lock
// (the last one wins, as in Vault).
type V1 struct {
	s logical.Storage
}

// NewV1 returns a version 1 engine over s.
func NewV1(s logical.Storage) *V1 { return &V1{s: s} }

// HandleRequest implements logical.Backend. A read of a missing path is a
// nil Response; a LIST that finds nothing is a logical.NotFound error
// with no message, as Vault's 404 {"errors":[]}.
func (b *V1) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	switch req.Operation {
	case logical.ReadOperation:
		return b.read(ctx, req.Path)
	case logical.CreateOperation, logical.UpdateOperation:
		return nil, b.write(ctx, req)
	case logical.DeleteOperation:
		if err := b.s.Delete(ctx, req.Path); err != nil {
			return nil, wrap(err, "delete")
		}
		return nil, nil
	case logical.ListOperation:
		return list(ctx, b.s, listPrefix(req.Path))
	default:
		return nil, logical.ErrUnsupportedOperation
	}
}

// Exists implements logical.ExistenceChecker: a write to a path that has
// an entry is an update, otherwise a create.
func (b *V1) Exists(ctx context.Context, req *logical.Request) (ok, exists bool, err error) {
	if req.Path == "" {
		return true, false, nil
	}
	if _, err := b.s.Get(ctx, req.Path); err != nil {
		if errors.Is(err, logical.ErrNotFound) {
			return true, false, nil
		}
		return false, false, wrap(err, "existence check")
	}
	return true, true, nil
}

func (b *V1) read(ctx context.Context, key string) (*logical.Response, error) {
	if key == "" {
		return nil, nil
	}
	raw, err := b.s.Get(ctx, key)
	if errors.Is(err, logical.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap(err, "read")
	}
	data, err := decodeStored(raw)
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: data}, nil
}

func (b *V1) write(ctx context.Context, req *logical.Request) error {
	if err := checkWriteKey(req.Path); err != nil {
		return err
	}
	data, err := decodeObject(req.Body, "the request body")
	if err != nil {
		return err
	}
	if len(data) == 0 {
		return logical.Errorf(logical.Invalid, "missing data fields")
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return wrap(err, "encode")
	}
	if err := b.s.Put(ctx, req.Path, raw); err != nil {
		return wrap(err, "write")
	}
	return nil
}

// list answers a LIST of prefix in s: {"keys": [...]}, or a 404 when there
// is nothing under it.
func list(ctx context.Context, s logical.Storage, prefix string) (*logical.Response, error) {
	keys, err := s.List(ctx, prefix)
	if err != nil {
		return nil, wrap(err, "list")
	}
	if len(keys) == 0 {
		return nil, errNotFound()
	}
	return &logical.Response{Data: map[string]any{"keys": keys}}, nil
}
