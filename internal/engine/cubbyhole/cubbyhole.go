// Package cubbyhole is Vault's cubbyhole secrets engine: a KV version 1
// store private to each token.
//
// Every request is served inside the caller's own cubbyhole, the entries
// under req.Caller.CubbyholeID in the mount's storage, so one token can
// never see, list or overwrite another's data, and policies cannot grant
// it either. A request without a caller (or without a cubbyhole ID) is
// refused. When a token is revoked, the core calls Destroy to remove its
// cubbyhole.
//
// Paths, bodies and responses are those of KV version 1 (see package kv):
// GET, PUT/POST, DELETE and LIST on any path below the mount.
package cubbyhole

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/coffer-dev/coffer/internal/engine/kv"
	"github.com/coffer-dev/coffer/internal/logical"
)

// Backend is the cubbyhole engine. It is safe for concurrent use.
type Backend struct {
	s logical.Storage
}

// Factory builds the cubbyhole engine over cfg.Storage (required).
func Factory(ctx context.Context, cfg logical.BackendConfig) (logical.Backend, error) {
	return New(cfg.Storage)
}

// New returns the cubbyhole engine over s, the mount's storage.
func New(s logical.Storage) (*Backend, error) {
	if s == nil {
		return nil, errors.New("cubbyhole: storage is required")
	}
	return &Backend{s: s}, nil
}

// errNoCubbyhole refuses a request that has no cubbyhole to work in.
var errNoCubbyhole = &logical.Error{Code: logical.PermissionDenied, Message: "cubbyhole: the request has no token cubbyhole"}

// store returns the KV v1 engine confined to the caller's cubbyhole.
func (b *Backend) store(req *logical.Request) (*kv.V1, error) {
	if req.Caller == nil || !validID(req.Caller.CubbyholeID) {
		return nil, errNoCubbyhole
	}
	return kv.NewV1(logical.NewView(b.s, req.Caller.CubbyholeID+"/")), nil
}

func validID(id string) bool {
	return id != "" && !strings.Contains(id, "/")
}

// HandleRequest implements logical.Backend: KV version 1 inside the
// caller's cubbyhole. It returns a PermissionDenied error when the request
// has no caller or the caller no cubbyhole ID.
func (b *Backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	s, err := b.store(req)
	if err != nil {
		return nil, err
	}
	return s.HandleRequest(ctx, req)
}

// Exists implements logical.ExistenceChecker within the caller's cubbyhole.
func (b *Backend) Exists(ctx context.Context, req *logical.Request) (ok, exists bool, err error) {
	s, err := b.store(req)
	if err != nil {
		return false, false, err
	}
	return s.Exists(ctx, req)
}

// batch is how many deletions Destroy applies at a time.
const batch = 256

// Destroy removes every entry of the cubbyhole cubbyholeID from s, the
// cubbyhole mount's storage (the Storage given to Factory). Destroying an
// empty or missing cubbyhole is not an error. Entries are removed in
// batches, so a failure part way leaves some of them; calling Destroy
// again finishes the job.
func Destroy(ctx context.Context, s logical.Storage, cubbyholeID string) error {
	if !validID(cubbyholeID) {
		return fmt.Errorf("cubbyhole: invalid cubbyhole ID")
	}
	var ops []logical.Op
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		if err := s.Apply(ctx, ops); err != nil {
			return fmt.Errorf("cubbyhole: destroy: %w", err)
		}
		ops = ops[:0]
		return nil
	}
	var walk func(prefix string) error
	walk = func(prefix string) error {
		keys, err := s.List(ctx, prefix)
		if err != nil {
			return fmt.Errorf("cubbyhole: destroy: list: %w", err)
		}
		for _, k := range keys {
			if strings.HasSuffix(k, "/") {
				if err := walk(prefix + k); err != nil {
					return err
				}
				continue
			}
			ops = append(ops, logical.Op{Key: prefix + k, Delete: true})
			if len(ops) >= batch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(cubbyholeID + "/"); err != nil {
		return err
	}
	return flush()
}
