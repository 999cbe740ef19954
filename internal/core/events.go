package core

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/coffer-dev/coffer/internal/events"
	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/policy"
)

// Events: the core turns successful writes to KV mounts into events with
// Vault's types and metadata (never values), and lets tokens subscribe
// to them (Vault's sys/events/subscribe, which needs the subscribe
// capability on that path and read on each event's data path).

// kvEvent names the event a KV write is, or "" if it is none.
func kvEvent(m *mount, rel string, op logical.Operation) (typ, dataPath, operation string) {
	if m.entry.Type != "kv" {
		return "", "", ""
	}
	write := op == logical.CreateOperation || op == logical.UpdateOperation
	if m.entry.Options["version"] != "2" {
		switch {
		case write:
			return "kv-v1/write", m.entry.Path + rel, "write"
		case op == logical.DeleteOperation:
			return "kv-v1/delete", m.entry.Path + rel, "delete"
		}
		return "", "", ""
	}
	kind, key, _ := strings.Cut(rel, "/")
	dataPath = m.entry.Path + "data/" + key
	switch {
	case kind == "data" && write:
		operation = "data-write"
	case kind == "data" && op == logical.PatchOperation:
		operation = "data-patch"
	case kind == "data" && op == logical.DeleteOperation, kind == "delete" && write:
		operation = "delete"
	case kind == "undelete" && write:
		operation = "undelete"
	case kind == "destroy" && write:
		operation = "destroy"
	case kind == "metadata" && write:
		operation = "metadata-write"
	case kind == "metadata" && op == logical.PatchOperation:
		operation = "metadata-patch"
	case kind == "metadata" && op == logical.DeleteOperation:
		operation = "metadata-delete"
	default:
		return "", "", ""
	}
	return "kv-v2/" + operation, dataPath, operation
}

// publishWrite sends the event of a successful engine write, if it is one.
func (c *Core) publishWrite(m *mount, path, rel string, op logical.Operation, resp *logical.Response) {
	if c.events.Subscribers() == 0 {
		return // nobody listens: build nothing
	}
	typ, dataPath, operation := kvEvent(m, rel, op)
	if typ == "" {
		return
	}
	md := map[string]string{
		"path":      path,
		"data_path": dataPath,
		"operation": operation,
		"modified":  "true",
	}
	if resp != nil {
		if d, ok := resp.Data.(map[string]any); ok {
			if v, ok := d["version"]; ok {
				md["current_version"] = fmt.Sprint(v)
			}
		}
	}
	c.events.Publish(events.Event{
		ID:            c.newID(),
		Type:          typ,
		Time:          c.cfg.Now().UTC(),
		Metadata:      md,
		MountPath:     m.entry.Path,
		MountAccessor: m.entry.Accessor,
		MountClass:    "secret",
		Plugin:        m.entry.Type,
		DataPath:      dataPath,
	})
}

// Subscribe opens a subscription to the events matching pattern for tok:
// it needs the subscribe capability on sys/events/subscribe/<pattern>, and
// receives only events whose data path it may read. The caller closes the
// subscription; it should re-check the token with Authorize from time to
// time, since the subscription outlives no revocation by much. A token
// with bound CIDRs is checked against the address in ctx
// (logical.WithRemoteAddr); without one it is refused.
func (c *Core) Subscribe(ctx context.Context, tok, pattern string) (*events.Subscription, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	st := c.state
	if st == nil {
		return nil, logical.ErrSealed
	}
	e, err := c.authenticate(ctx, st, tok, logical.RemoteAddrFrom(ctx))
	if err != nil {
		return nil, err
	}
	if e.IsRoot() {
		return c.events.Subscribe(pattern, nil), nil
	}
	acl, err := st.policies.ACL(ctx, e.Policies)
	if err != nil {
		return nil, err
	}
	if !acl.Allowed(policy.Subscribe, "sys/events/subscribe/"+pattern) {
		return nil, logical.ErrPermissionDenied
	}
	return c.events.Subscribe(pattern, func(ev events.Event) bool {
		return acl.Allowed(policy.Read, ev.DataPath)
	}), nil
}

// eventRecheck is how often a subscription's token is checked again.
const eventRecheck = 30 * time.Second

// EventRecheckInterval tells httpapi how often to re-check a subscriber.
func EventRecheckInterval() time.Duration { return eventRecheck }

// CheckToken reports whether tok still authenticates (not revoked, not
// expired, used from an address its bound CIDRs allow — the one in ctx,
// see logical.WithRemoteAddr): nil, or the error a request with it would
// get.
func (c *Core) CheckToken(ctx context.Context, tok string) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.state == nil {
		return logical.ErrSealed
	}
	_, err := c.authenticate(ctx, c.state, tok, logical.RemoteAddrFrom(ctx))
	return err
}
