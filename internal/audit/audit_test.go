package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coffer-dev/coffer/internal/logical"
)

func TestHMACKnownAnswer(t *testing.T) {
	for name, tc := range map[string]struct{ salt, in, want string }{
		"Vault's sys/audit-hash example input": {"4d1c8f0e-2b7a-4c3d-9e5f-6a7b8c9d0e1f", "my-secret-vault", "hmac-sha256:98d86a3a570927ccba5fc7ca2f0a37c84d8e15455d8f695171c375a439dd58b2"},
		"empty salt and input":                 {"", "", "hmac-sha256:b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := hmacValue([]byte(tc.salt), tc.in); got != tc.want {
				t.Errorf("hmacValue = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestHashMatchesTheLogAndNothingLeaks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	b := newBroker(t, Config{AllowedDirs: []string{dir}})
	enableFile(t, b, "file", path)

	const canary = "canary-s3cret-value"
	in := request("r1", logical.UpdateOperation, "secret/data/app", `{"data":{"password":"`+canary+`","n":5,"list":["canary-in-list"]}}`)
	if err := b.LogRequest(ctx, in); err != nil {
		t.Fatal(err)
	}
	resp := &logical.Response{
		Data:     map[string]any{"value": canary},
		Auth:     &logical.Auth{ClientToken: "hvs.canary-issued-token", Accessor: "canary-issued-accessor", Policies: []string{"p"}},
		WrapInfo: &logical.WrapInfo{Token: "hvs.canary-wrap-token", Accessor: "canary-wrap-acc", TTL: 60},
		Lease:    &logical.Lease{ID: "secret/creds/x/abc"},
	}
	if err := b.LogResponse(ctx, in, resp, nil); err != nil {
		t.Fatal(err)
	}
	denied := request("r2", logical.ReadOperation, "secret/data/other", "")
	denied.Err = logical.ErrPermissionDenied
	if err := b.LogRequest(ctx, denied); err != nil {
		t.Fatal(err)
	}
	closeBroker(t, b)

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{canary, "canary-in-list", "hvs.token-r1", "acc-r1", "hvs.canary-issued-token", "canary-issued-accessor", "hvs.canary-wrap-token", "canary-wrap-acc", "hvs.token-r2"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the log contains %q in clear", secret)
		}
	}

	d := b.devices["file"]
	hash := func(s string) string {
		m := hmac.New(sha256.New, d.salt)
		m.Write([]byte(s))
		return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
	}
	lines := readLines(t, path)
	var req, res, den map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line is not JSON: %v", err)
		}
		r, _ := m["request"].(map[string]any)
		switch {
		case m["type"] == "request" && r["id"] == "r1":
			req = m
		case m["type"] == "response" && r["id"] == "r1":
			res = m
		case r["id"] == "r2":
			den = m
		}
	}
	if req == nil || res == nil || den == nil {
		t.Fatalf("missing entries in:\n%s", raw)
	}
	get := func(m map[string]any, keys ...string) any {
		var v any = m
		for _, k := range keys {
			v = v.(map[string]any)[k]
		}
		return v
	}
	for name, tc := range map[string]struct {
		got  any
		want any
	}{
		"request data string is the HMAC":       {get(req, "request", "data", "data", "password"), hash(canary)},
		"numbers stay numbers":                  {get(req, "request", "data", "data", "n"), 5.0},
		"strings in lists are HMAC'd":           {get(req, "request", "data", "data", "list").([]any)[0], hash("canary-in-list")},
		"auth client_token is the HMAC":         {get(req, "auth", "client_token"), hash("hvs.token-r1")},
		"auth accessor is the HMAC":             {get(req, "auth", "accessor"), hash("acc-r1")},
		"request client_token is the HMAC":      {get(req, "request", "client_token"), hash("hvs.token-r1")},
		"display name is readable":              {get(req, "auth", "display_name"), "kubernetes-payments-api"},
		"auth metadata is readable":             {get(req, "auth", "metadata", "service_account_namespace"), "payments"},
		"path is readable":                      {get(req, "request", "path"), "secret/data/app"},
		"remote address without port":           {get(req, "request", "remote_address"), "10.0.0.7"},
		"remote port":                           {get(req, "request", "remote_port"), 41234.0},
		"response data is the HMAC":             {get(res, "response", "data", "value"), hash(canary)},
		"issued token is the HMAC":              {get(res, "response", "auth", "client_token"), hash("hvs.canary-issued-token")},
		"wrap token is the HMAC":                {get(res, "response", "wrap_info", "token"), hash("hvs.canary-wrap-token")},
		"lease id is readable, as in Vault":     {get(res, "response", "secret", "lease_id"), "secret/creds/x/abc"},
		"successful response has no error":      {res["error"], ""},
		"denied request is recorded with error": {den["error"], "permission denied"},
	} {
		t.Run(name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
	// sys/audit-hash must give the value in the log; Hash needs an
	// enabled device, so use a second broker over the same device keys.
	got := hmacValue(d.salt, canary)
	if got != get(req, "request", "data", "data", "password") {
		t.Errorf("Hash = %s, not the value in the log", got)
	}
	mustVerify(t, raw)
}

func TestAuditHashEndpointMatchesLog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "a.log")
	b := newBroker(t, Config{AllowedDirs: []string{dir}})
	enableFile(t, b, "file", path)
	if err := b.LogRequest(ctx, request("r1", logical.UpdateOperation, "secret/data/x", `{"k":"needle"}`)); err != nil {
		t.Fatal(err)
	}
	resp, err := b.HandleRequest(ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "audit-hash/file", Body: []byte(`{"input":"needle"}`)})
	if err != nil {
		t.Fatal(err)
	}
	h := resp.Data.(map[string]any)["hash"].(string)
	if !strings.HasPrefix(h, "hmac-sha256:") {
		t.Fatalf("hash = %q", h)
	}
	raw, _ := os.ReadFile(path)
	if !bytes.Contains(raw, []byte(`"k":"`+h+`"`)) {
		t.Errorf("sys/audit-hash %s is not the value in the log:\n%s", h, raw)
	}
	if _, err := b.Hash(ctx, "nope", "x"); !errors.Is(err, ErrNoDevice) || logical.CodeOf(err) != logical.Invalid {
		t.Errorf("Hash on a missing device = %v, want ErrNoDevice (Invalid)", err)
	}
}

func TestNoDeviceIsANoOpAndClosedFails(t *testing.T) {
	ctx := context.Background()
	b := newBroker(t, Config{})
	if err := b.LogRequest(ctx, request("r", logical.ReadOperation, "x", "")); err != nil {
		t.Errorf("LogRequest without devices = %v, want nil", err)
	}
	closeBroker(t, b)
	if err := b.LogRequest(ctx, request("r", logical.ReadOperation, "x", "")); !errors.Is(err, ErrClosed) {
		t.Errorf("LogRequest after Close = %v, want ErrClosed", err)
	}
	if err := b.Close(ctx); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestCheckpointEveryThousandEntries(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "a.log")
	b := newBroker(t, Config{AllowedDirs: []string{dir}})
	enableFile(t, b, "file", path)
	for i := range CheckpointInterval + 5 {
		if err := b.LogRequest(ctx, request("r", logical.ReadOperation, "p", "")); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	closeBroker(t, b)
	var reasons []string
	for _, l := range readLines(t, path) {
		var h lineHeader
		json.Unmarshal([]byte(l), &h)
		if h.Type == "checkpoint" {
			reasons = append(reasons, h.Checkpoint.Reason)
		}
	}
	if got, want := strings.Join(reasons, ","), "start,interval,shutdown"; got != want {
		t.Errorf("checkpoints = %s, want %s", got, want)
	}
	raw, _ := os.ReadFile(path)
	rep := mustVerify(t, raw)
	if rep.Entries != CheckpointInterval+5 || rep.Checkpoints != 3 || rep.Unsigned != 0 {
		t.Errorf("report = %+v", rep)
	}
}

func TestChainSurvivesRestartAndReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "a.log")
	st := newStorage(t)
	b1 := newBroker(t, Config{Storage: st, AllowedDirs: []string{dir}})
	enableFile(t, b1, "file", path)
	for range 3 {
		if err := b1.LogRequest(ctx, request("r1", logical.ReadOperation, "p", "")); err != nil {
			t.Fatal(err)
		}
	}
	pub := b1.List()[0].PublicKey
	closeBroker(t, b1)

	b2 := newBroker(t, Config{Storage: st, AllowedDirs: []string{dir}})
	if l := b2.List(); len(l) != 1 || l[0].PublicKey != pub {
		t.Fatalf("restored devices = %+v, want the same device and key", l)
	}
	for range 3 {
		if err := b2.LogRequest(ctx, request("r2", logical.ReadOperation, "p", "")); err != nil {
			t.Fatal(err)
		}
	}
	rotated := filepath.Join(dir, "a.log.1")
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := b2.Reopen(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := b2.LogRequest(ctx, request("r3", logical.ReadOperation, "p", "")); err != nil {
			t.Fatal(err)
		}
	}
	closeBroker(t, b2)

	old, _ := os.ReadFile(rotated)
	cur, _ := os.ReadFile(path)
	key, _ := ParsePublicKey(pub)
	repOld, err := Verify(bytes.NewReader(old), key)
	if err != nil {
		t.Fatalf("rotated file: %v", err)
	}
	if repOld.Entries != 6 || repOld.Checkpoints != 3 { // start, shutdown, reopen
		t.Errorf("rotated file report = %+v", repOld)
	}
	repCur, err := Verify(bytes.NewReader(cur), key)
	if err != nil {
		t.Fatalf("current file: %v", err)
	}
	if repCur.FirstPrevHash != lineHash(bytes.TrimSuffix(old[bytes.LastIndexByte(old[:len(old)-1], '\n')+1:], []byte("\n"))) {
		t.Errorf("the new file does not continue the chain of the rotated one")
	}
	if _, err := Verify(bytes.NewReader(append(old, cur...)), key); err != nil {
		t.Errorf("rotated + current as one chain: %v", err)
	}
}

func TestEnableRefusesBadConfig(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b := newBroker(t, Config{AllowedDirs: []string{dir}})
	enableFile(t, b, "file", filepath.Join(dir, "a.log"))
	for name, tc := range map[string]struct {
		name string
		dc   DeviceConfig
		want error
	}{
		"the same path twice":        {"file/", DeviceConfig{Type: "file", Options: map[string]string{"file_path": "discard"}}, ErrExists},
		"an unknown type":            {"x", DeviceConfig{Type: "syslog"}, nil},
		"no file_path":               {"x", DeviceConfig{Type: "file"}, nil},
		"a relative file_path":       {"x", DeviceConfig{Type: "file", Options: map[string]string{"file_path": "a.log"}}, nil},
		"log_raw":                    {"x", DeviceConfig{Type: "file", Options: map[string]string{"file_path": "discard", "log_raw": "true"}}, nil},
		"an unknown option":          {"x", DeviceConfig{Type: "file", Options: map[string]string{"file_path": "discard", "colour": "red"}}, nil},
		"a bad timeout":              {"x", DeviceConfig{Type: "file", Options: map[string]string{"file_path": "discard", "timeout": "-1s"}}, nil},
		"a bad name":                 {"a/../b", DeviceConfig{Type: "file", Options: map[string]string{"file_path": "discard"}}, nil},
		"a socket without address":   {"x", DeviceConfig{Type: "socket"}, nil},
		"a socket nobody listens on": {"x", DeviceConfig{Type: "socket", Options: map[string]string{"address": filepath.Join(dir, "none.sock"), "socket_type": "unix", "timeout": "200ms"}}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			err := b.Enable(ctx, tc.name, tc.dc, false)
			if err == nil || logical.CodeOf(err) != logical.Invalid || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("Enable = %v, want an Invalid error (%v)", err, tc.want)
			}
		})
	}
	if n := len(b.List()); n != 1 {
		t.Errorf("%d devices enabled after refusals, want 1", n)
	}
}

func TestDisableForgetsAndConfigDevicesStay(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := newStorage(t)
	b := newBroker(t, Config{Storage: st, AllowedDirs: []string{dir}})
	enableFile(t, b, "api", filepath.Join(dir, "a.log"))
	outside := filepath.Join(t.TempDir(), "cfg.log")
	if err := b.Enable(ctx, "cfg", DeviceConfig{Type: "file", Options: map[string]string{"file_path": outside}}, true); err != nil {
		t.Fatalf("config-declared device outside the allowed dirs: %v", err)
	}
	cfgKey := b.List()[1].PublicKey
	if err := b.Disable(ctx, "cfg"); !errors.Is(err, ErrDeclared) {
		t.Errorf("Disable(config device) = %v, want ErrDeclared", err)
	}
	if err := b.Disable(ctx, "api"); err != nil {
		t.Fatal(err)
	}
	if err := b.Disable(ctx, "never"); err != nil {
		t.Errorf("Disable(missing) = %v, want nil", err)
	}
	lines := readLines(t, filepath.Join(dir, "a.log"))
	if !strings.Contains(lines[len(lines)-1], `"reason":"disable"`) {
		t.Errorf("last line after Disable = %s, want a disable checkpoint", lines[len(lines)-1])
	}
	closeBroker(t, b)

	b2 := newBroker(t, Config{Storage: st, AllowedDirs: []string{dir}})
	if n := len(b2.List()); n != 0 {
		t.Errorf("after restart %d devices, want 0 (api disabled, cfg waits for the config)", n)
	}
	if err := b2.Enable(ctx, "cfg", DeviceConfig{Type: "file", Options: map[string]string{"file_path": outside}}, true); err != nil {
		t.Fatal(err)
	}
	if got := b2.List()[0].PublicKey; got != cfgKey {
		t.Errorf("config device key changed across restart")
	}
	closeBroker(t, b2)
	raw, _ := os.ReadFile(outside)
	mustVerify(t, raw)
}

func TestReEnableAfterDisableStartsAFreshChain(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := newStorage(t)
	b := newBroker(t, Config{Storage: st, AllowedDirs: []string{dir}})
	first := filepath.Join(dir, "1.log")
	enableFile(t, b, "file", first)
	for range 3 {
		if err := b.LogRequest(ctx, request("r", logical.ReadOperation, "p", "")); err != nil {
			t.Fatal(err)
		}
	}
	key1 := b.List()[0].PublicKey
	if err := b.Disable(ctx, "file"); err != nil {
		t.Fatal(err)
	}
	second := filepath.Join(dir, "2.log")
	enableFile(t, b, "file", second)
	if b.List()[0].PublicKey == key1 {
		t.Errorf("re-enabled device kept its old key")
	}
	closeBroker(t, b)
	raw, _ := os.ReadFile(second)
	if rep := mustVerify(t, raw); rep.FirstSeq != 1 || rep.FirstPrevHash != zeroHash {
		t.Errorf("re-enabled device continues the old chain: %+v", rep)
	}
}
