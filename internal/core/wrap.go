package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/token"
)

// Response wrapping, as Vault does it: the response is stored in the
// cubbyhole of a new single-purpose token, and the client gets that token
// instead. Whoever unwraps it first gets the response; the token is revoked
// at once, so a second unwrap (an attacker's, or the intended reader's after
// an attacker's) fails loudly.

// wrappingPolicy names the policy of wrapping tokens. No such policy
// exists in the store, so the token can do nothing but be unwrapped or
// looked up through the unauthenticated sys/wrapping paths.
const wrappingPolicy = "response-wrapping"

// wrappedKey is where, in the wrapping token's cubbyhole, the response is.
const wrappedKey = "response"

// defaultWrapTTL is used by sys/wrapping/wrap without X-Vault-Wrap-TTL.
const defaultWrapTTL = 5 * time.Minute

// wrapped is what the cubbyhole holds.
type wrapped struct {
	Data          any           `json:"data"`
	Auth          *logical.Auth `json:"auth,omitempty"`
	LeaseID       string        `json:"lease_id,omitempty"`
	LeaseDuration time.Duration `json:"lease_duration,omitempty"`
	Renewable     bool          `json:"renewable,omitempty"`
	Warnings      []string      `json:"warnings,omitempty"`
	CreationPath  string        `json:"creation_path"`
	CreationTime  time.Time     `json:"creation_time"`
	TTL           time.Duration `json:"ttl"`
}

func (c *Core) wrapResponse(ctx context.Context, st *unsealed, path string, resp *logical.Response, ttl time.Duration) (*logical.Response, error) {
	w := wrapped{
		Data:         resp.Data,
		Auth:         resp.Auth,
		Warnings:     resp.Warnings,
		CreationPath: path,
		CreationTime: c.cfg.Now().UTC(),
		TTL:          ttl,
	}
	if resp.Lease != nil {
		w.LeaseID, w.LeaseDuration, w.Renewable = resp.Lease.ID, resp.Lease.Duration, resp.Lease.Renewable
	}
	info, err := c.storeWrapped(ctx, st, w)
	if err != nil {
		return nil, err
	}
	if resp.Auth != nil {
		info.WrappedAccessor = resp.Auth.Accessor
	}
	return &logical.Response{WrapInfo: info}, nil
}

func (c *Core) storeWrapped(ctx context.Context, st *unsealed, w wrapped) (*logical.WrapInfo, error) {
	if st.cubbyhole == nil {
		return nil, errors.New("core: no cubbyhole mount for response wrapping")
	}
	tok, e, err := st.tokens.Create(ctx, nil, token.CreateRequest{
		Policies:        []string{wrappingPolicy},
		NoDefaultPolicy: true,
		TTL:             logical.Duration(w.TTL),
		DisplayName:     "response-wrapping",
		Path:            w.CreationPath,
	})
	if err != nil {
		return nil, fmt.Errorf("core: create wrapping token: %w", err)
	}
	raw, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("core: encode wrapped response: %w", err)
	}
	if err := st.cubbyhole.Put(ctx, e.CubbyholeID+"/"+wrappedKey, raw); err != nil {
		return nil, fmt.Errorf("core: store wrapped response: %w", err)
	}
	return &logical.WrapInfo{
		Token:        tok,
		Accessor:     e.Accessor,
		TTL:          int64(w.TTL / time.Second),
		CreationTime: w.CreationTime,
		CreationPath: w.CreationPath,
	}, nil
}

// readWrapped finds a wrapping token's stored response.
func (c *Core) readWrapped(ctx context.Context, st *unsealed, tok string) (*token.Entry, *wrapped, error) {
	if tok == "" {
		return nil, nil, logical.Errorf(logical.Invalid, "missing wrapping token")
	}
	e, err := st.tokens.Lookup(ctx, tok)
	if errors.Is(err, token.ErrNotFound) {
		return nil, nil, logical.Errorf(logical.Invalid, "wrapping token is not valid or does not exist")
	}
	if err != nil {
		return nil, nil, err
	}
	if !slices.Contains(e.Policies, wrappingPolicy) {
		return nil, nil, logical.Errorf(logical.Invalid, "wrapping token is not valid or does not exist")
	}
	raw, err := st.cubbyhole.Get(ctx, e.CubbyholeID+"/"+wrappedKey)
	if errors.Is(err, logical.ErrNotFound) {
		return nil, nil, logical.Errorf(logical.Invalid, "wrapping token is not valid or does not exist")
	}
	if err != nil {
		return nil, nil, err
	}
	var w wrapped
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, nil, fmt.Errorf("core: decode wrapped response: %w", err)
	}
	return e, &w, nil
}

type wrappingTokenRequest struct {
	Token string `json:"token"`
}

// wrapping serves sys/wrapping/{wrap,unwrap,lookup,rewrap}.
func (c *Core) wrapping(ctx context.Context, st *unsealed, req *logical.Request) (*logical.Response, error) {
	op := req.Path[len("wrapping/"):]
	if op == "wrap" {
		var data map[string]any
		if err := req.Decode(&data); err != nil {
			return nil, err
		}
		if len(data) == 0 {
			return nil, logical.Errorf(logical.Invalid, "missing data to wrap")
		}
		ttl := req.WrapTTL
		if ttl == 0 {
			ttl = defaultWrapTTL
		}
		return c.wrapResponse(ctx, st, "sys/wrapping/wrap", &logical.Response{Data: data}, ttl)
	}
	var r wrappingTokenRequest
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	tok := r.Token
	if tok == "" {
		tok = req.ClientToken
	}
	_, w, err := c.readWrapped(ctx, st, tok)
	if err != nil {
		return nil, err
	}
	switch op {
	case "lookup":
		return &logical.Response{Data: map[string]any{
			"creation_path": w.CreationPath,
			"creation_time": w.CreationTime.Format(time.RFC3339Nano),
			"creation_ttl":  int64(w.TTL / time.Second),
		}}, nil
	case "unwrap":
		if err := st.tokens.Revoke(ctx, tok); err != nil {
			return nil, err
		}
		resp := &logical.Response{Data: w.Data, Auth: w.Auth, Warnings: w.Warnings}
		if w.LeaseID != "" {
			resp.Lease = &logical.Lease{ID: w.LeaseID, Duration: w.LeaseDuration, Renewable: w.Renewable}
		}
		return resp, nil
	case "rewrap":
		w.CreationTime = c.cfg.Now().UTC()
		info, err := c.storeWrapped(ctx, st, *w)
		if err != nil {
			return nil, err
		}
		if err := st.tokens.Revoke(ctx, tok); err != nil {
			return nil, err
		}
		return &logical.Response{WrapInfo: info}, nil
	}
	return nil, &logical.Error{Code: logical.NotFound, Message: "no handler for route \"sys/" + req.Path + "\". route entry not found."}
}
