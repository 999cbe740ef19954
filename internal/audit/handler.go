package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/coffer-dev/coffer/internal/logical"
)

// HandleRequest serves the audit endpoints under "sys/"; req.Path is
// relative to "sys/":
//
//	GET    audit              list: {"<name>/": {type, description, options, path, local, ...}}
//	PUT    audit/<name>       enable: {type, description, options, local}; 204
//	DELETE audit/<name>       disable; 204
//	PUT    audit-hash/<name>  {input} → {hash}
//
// Each device in the list also carries Coffer's fields: public_key,
// status ("ok" or "failed"), status_reason and from_config. The caller
// (the core) checks the sudo capability first. Errors are *logical.Error.
func (b *Broker) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	op := req.Operation
	write := op == logical.UpdateOperation || op == logical.CreateOperation
	switch p := strings.TrimSuffix(req.Path, "/"); {
	case p == "audit":
		if op != logical.ReadOperation {
			return nil, logical.ErrUnsupportedOperation
		}
		return b.handleList(), nil
	case strings.HasPrefix(p, "audit/"):
		name := strings.TrimPrefix(p, "audit/")
		switch {
		case write:
			return nil, b.handleEnable(ctx, name, req)
		case op == logical.DeleteOperation:
			if err := checkName(name); err != nil {
				return nil, err
			}
			return nil, b.Disable(ctx, name)
		}
		return nil, logical.ErrUnsupportedOperation
	case strings.HasPrefix(p, "audit-hash/"):
		if !write {
			return nil, logical.ErrUnsupportedOperation
		}
		var body struct {
			Input *string `json:"input"`
		}
		if err := req.Decode(&body); err != nil {
			return nil, err
		}
		if body.Input == nil {
			return nil, logical.Errorf(logical.Invalid, "missing required field: input")
		}
		h, err := b.Hash(ctx, strings.TrimPrefix(p, "audit-hash/"), *body.Input)
		if err != nil {
			return nil, err
		}
		return &logical.Response{Data: map[string]any{"hash": h}, Inline: true}, nil
	}
	return nil, logical.ErrUnsupportedPath(req.Path)
}

func (b *Broker) handleList() *logical.Response {
	data := map[string]any{}
	for _, d := range b.List() {
		opts := d.Options
		if opts == nil {
			opts = map[string]string{}
		}
		status := "ok"
		if d.Failed {
			status = "failed"
		}
		data[d.Name+"/"] = map[string]any{
			"type": d.Type, "description": d.Description, "options": opts, "path": d.Name + "/",
			"local": d.Local, "public_key": d.PublicKey, "status": status, "status_reason": d.Reason,
			"from_config": d.FromConfig,
		}
	}
	return &logical.Response{Data: data, Inline: true}
}

func (b *Broker) handleEnable(ctx context.Context, name string, req *logical.Request) error {
	var body struct {
		Type        string         `json:"type"`
		Description string         `json:"description"`
		Options     map[string]any `json:"options"`
		Local       logical.Bool   `json:"local"`
	}
	if err := req.Decode(&body); err != nil {
		return err
	}
	opts := make(map[string]string, len(body.Options))
	for k, v := range body.Options {
		switch v := v.(type) {
		case string:
			opts[k] = v
		case json.Number, bool:
			opts[k] = fmt.Sprint(v)
		case nil:
		default:
			return logical.Errorf(logical.Invalid, "audit: option %q must be a string", k)
		}
	}
	return b.Enable(ctx, name, DeviceConfig{Type: body.Type, Description: body.Description, Options: opts, Local: bool(body.Local)}, false)
}
