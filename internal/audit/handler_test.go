package audit

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/coffer-dev/coffer/internal/logical"
)

func TestHandleRequest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b := newBroker(t, Config{AllowedDirs: []string{dir}})
	call := func(op logical.Operation, path, body string) (*logical.Response, error) {
		return b.HandleRequest(ctx, &logical.Request{Operation: op, Path: path, Body: []byte(body)})
	}
	file := filepath.Join(dir, "a.log")
	if resp, err := call(logical.UpdateOperation, "audit/file", `{"type":"file","description":"main","options":{"file_path":"`+file+`","mode":"0640"},"local":false}`); err != nil || resp != nil {
		t.Fatalf("enable = %v, %v; want nil, nil (204)", resp, err)
	}
	resp, err := call(logical.ReadOperation, "audit", "")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(resp.Data)
	var list map[string]struct {
		Type        string            `json:"type"`
		Description string            `json:"description"`
		Options     map[string]string `json:"options"`
		Path        string            `json:"path"`
		Local       *bool             `json:"local"`
		PublicKey   string            `json:"public_key"`
		Status      string            `json:"status"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatal(err)
	}
	d, ok := list["file/"]
	if !ok || !resp.Inline || d.Type != "file" || d.Description != "main" || d.Options["file_path"] != file || d.Path != "file/" ||
		d.Local == nil || d.Status != "ok" {
		t.Errorf("list = %s (inline %v)", raw, resp.Inline)
	}
	if _, err := ParsePublicKey(d.PublicKey); err != nil {
		t.Errorf("public_key %q: %v", d.PublicKey, err)
	}
	for name, tc := range map[string]struct {
		op   logical.Operation
		path string
		body string
		code logical.Code
	}{
		"enable twice":                 {logical.UpdateOperation, "audit/file", `{"type":"file","options":{"file_path":"discard"}}`, logical.Invalid},
		"enable with malformed JSON":   {logical.UpdateOperation, "audit/x", `{"type":`, logical.Invalid},
		"enable with an object option": {logical.UpdateOperation, "audit/x", `{"type":"file","options":{"file_path":{}}}`, logical.Invalid},
		"hash without input":           {logical.UpdateOperation, "audit-hash/file", `{}`, logical.Invalid},
		"hash on a missing device":     {logical.UpdateOperation, "audit-hash/nope", `{"input":"x"}`, logical.Invalid},
		"list with a write":            {logical.UpdateOperation, "audit", ``, logical.Unsupported},
		"read a device":                {logical.ReadOperation, "audit/file", ``, logical.Unsupported},
		"an unknown path":              {logical.ReadOperation, "auditx", ``, logical.NotFound},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := call(tc.op, tc.path, tc.body)
			if err == nil || logical.CodeOf(err) != tc.code {
				t.Errorf("%s %s = %v, want code %v", tc.op, tc.path, err, tc.code)
			}
		})
	}
	if resp, err := call(logical.UpdateOperation, "audit-hash/file/", `{"input":"x"}`); err != nil || resp.Data.(map[string]any)["hash"] != hmacValue(b.devices["file"].salt, "x") {
		t.Errorf("audit-hash = %v, %v", resp, err)
	}
	if _, err := call(logical.DeleteOperation, "audit/file", ""); err != nil {
		t.Fatal(err)
	}
	if resp, _ := call(logical.ReadOperation, "audit", ""); len(resp.Data.(map[string]any)) != 0 {
		t.Errorf("list after disable = %v", resp.Data)
	}
}
