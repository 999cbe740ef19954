package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/coffer-dev/coffer/internal/audit"
	"github.com/coffer-dev/coffer/internal/declarative"
	"github.com/coffer-dev/coffer/internal/logical"
)

// Declarative day 0: after every unseal on the active node, the files
// named by the server config's declarative_config are applied: objects
// they describe are created or updated, objects they created and no longer
// describe are removed, and objects they did not create are never touched.
// The set of owned objects lives in the barrier at ownedKey.

const ownedKey = "core/declarative/owned"

// applyDeclarative runs one idempotent apply. Errors are logged by the
// caller; a failed apply is retried at the next unseal.
func (c *Core) applyDeclarative(ctx context.Context, st *unsealed) error {
	desired, err := declarative.Load(c.cfg.DeclarativeConfig)
	if err != nil {
		return err
	}
	owned, err := c.loadOwned(ctx)
	if err != nil {
		return err
	}
	t := &declTarget{sb: &sysBackend{c: c, st: st}, st: st}
	current, err := t.state(ctx)
	if err != nil {
		return err
	}
	changes := declarative.Plan(current, desired, owned)
	for _, ch := range changes {
		if ch.Op == declarative.Conflict {
			c.logger.Warn("declarative config: not applied", "object", ch.Key.String(), "reason", ch.Reason)
		}
	}
	next, applyErr := declarative.Apply(ctx, t, owned, changes)
	if err := c.saveOwned(ctx, next); err != nil {
		return errors.Join(applyErr, err)
	}
	if applyErr == nil && len(changes) > 0 {
		c.logger.Info("declarative config applied", "changes", len(changes))
	}
	return applyErr
}

func (c *Core) loadOwned(ctx context.Context) (declarative.Set, error) {
	owned := declarative.Set{}
	raw, err := c.barrier.Get(ctx, ownedKey)
	if errors.Is(err, logical.ErrNotFound) {
		return owned, nil
	}
	if err != nil {
		return nil, err
	}
	var keys []string
	if err := json.Unmarshal(raw, &keys); err != nil {
		return nil, fmt.Errorf("core: decode declarative owned set: %w", err)
	}
	for _, k := range keys {
		kind, name, _ := strings.Cut(k, " ")
		owned[declarative.Key{Kind: declarative.Kind(kind), Name: name}] = true
	}
	return owned, nil
}

func ownedList(s declarative.Set) []string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k.String())
	}
	sort.Strings(keys)
	return keys
}

func (c *Core) saveOwned(ctx context.Context, s declarative.Set) error {
	raw, err := json.Marshal(ownedList(s))
	if err != nil {
		return err
	}
	return c.barrier.Put(ctx, ownedKey, raw)
}

// declarativeOwned serves GET sys/declarative/owned (Coffer-only, sudo),
// which `coffer operator apply --dry-run` reads.
func (s *sysBackend) declarativeOwned(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if req.Operation != logical.ReadOperation {
		return nil, logical.ErrUnsupportedOperation
	}
	owned, err := s.c.loadOwned(ctx)
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{"owned": ownedList(owned)}}, nil
}

// declTarget carries out declarative changes through the sys backend's
// own handlers, as the system itself (no token).
type declTarget struct {
	sb *sysBackend
	st *unsealed
}

func (t *declTarget) call(ctx context.Context, op logical.Operation, path string, body any) (*logical.Response, error) {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return nil, err
		}
	}
	return t.sb.HandleRequest(ctx, &logical.Request{Operation: op, Path: path, Body: raw})
}

// state is the server's current objects, in the shape the declarative
// package compares.
func (t *declTarget) state(ctx context.Context) (declarative.State, error) {
	cur := declarative.State{}
	for _, e := range t.st.mounts.table.entries() {
		kind, name := declarative.Mount, e.Path
		if strings.HasPrefix(e.Path, "auth/") {
			kind, name = declarative.Auth, strings.TrimPrefix(e.Path, "auth/")
		}
		k := declarative.Key{Kind: kind, Name: name}
		cur[k] = declarative.Object{Key: k, Type: e.Type, Description: e.Description, Options: e.Options,
			Config: map[string]string{
				"default_lease_ttl": fmt.Sprint(int64(e.Config.DefaultLeaseTTL.Seconds())),
				"max_lease_ttl":     fmt.Sprint(int64(e.Config.MaxLeaseTTL.Seconds())),
			}}
	}
	for _, d := range t.st.audit.List() {
		k := declarative.Key{Kind: declarative.Audit, Name: d.Name + "/"}
		cur[k] = declarative.Object{Key: k, Type: d.Type, Description: d.Description, Options: d.Options}
	}
	names, err := t.st.policies.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if n == "root" {
			continue
		}
		text, err := t.st.policies.Text(ctx, n)
		if err != nil {
			return nil, err
		}
		k := declarative.Key{Kind: declarative.Policy, Name: n}
		cur[k] = declarative.Object{Key: k, Text: text}
	}
	return cur, nil
}

func mountBody(o declarative.Object) map[string]any {
	return map[string]any{"type": o.Type, "description": o.Description, "options": o.Options, "config": o.Config}
}

func (t *declTarget) Create(ctx context.Context, o declarative.Object) error {
	switch o.Kind {
	case declarative.Policy:
		return t.st.policies.Put(ctx, o.Name, o.Text)
	case declarative.Mount:
		_, err := t.call(ctx, logical.UpdateOperation, "mounts/"+strings.TrimSuffix(o.Name, "/"), mountBody(o))
		return err
	case declarative.Auth:
		_, err := t.call(ctx, logical.UpdateOperation, "auth/"+strings.TrimSuffix(o.Name, "/"), mountBody(o))
		return err
	case declarative.Audit:
		return t.st.audit.Enable(ctx, strings.TrimSuffix(o.Name, "/"), audit.DeviceConfig{Type: o.Type, Description: o.Description, Options: o.Options}, false)
	}
	return fmt.Errorf("core: unknown declarative kind %q", o.Kind)
}

func (t *declTarget) Update(ctx context.Context, old, o declarative.Object) error {
	switch o.Kind {
	case declarative.Policy:
		return t.st.policies.Put(ctx, o.Name, o.Text)
	case declarative.Mount, declarative.Auth:
		prefix := "mounts/"
		if o.Kind == declarative.Auth {
			prefix = "auth/"
		}
		body := map[string]any{"description": o.Description}
		for k, v := range o.Config {
			body[k] = v
		}
		_, err := t.call(ctx, logical.UpdateOperation, prefix+strings.TrimSuffix(o.Name, "/")+"/tune", body)
		return err
	case declarative.Audit:
		if err := t.Delete(ctx, old); err != nil {
			return err
		}
		return t.Create(ctx, o)
	}
	return fmt.Errorf("core: unknown declarative kind %q", o.Kind)
}

func (t *declTarget) Delete(ctx context.Context, o declarative.Object) error {
	switch o.Kind {
	case declarative.Policy:
		return t.st.policies.Delete(ctx, o.Name)
	case declarative.Mount:
		_, err := t.call(ctx, logical.DeleteOperation, "mounts/"+strings.TrimSuffix(o.Name, "/"), nil)
		return err
	case declarative.Auth:
		_, err := t.call(ctx, logical.DeleteOperation, "auth/"+strings.TrimSuffix(o.Name, "/"), nil)
		return err
	case declarative.Audit:
		return t.st.audit.Disable(ctx, strings.TrimSuffix(o.Name, "/"))
	}
	return fmt.Errorf("core: unknown declarative kind %q", o.Kind)
}
