package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/coffer-dev/coffer/internal/core"
	"github.com/coffer-dev/coffer/internal/engine/cubbyhole"
	"github.com/coffer-dev/coffer/internal/engine/kv"
	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/storage"
	"github.com/coffer-dev/coffer/internal/storage/bolt"
	"github.com/coffer-dev/coffer/internal/storage/inmem"
)

// The request pipeline in process, over the real barrier and store: who may
// do what, and what a sealed or restarted core answers. (tests/compat drives
// the same through HTTP with the Vault client.)

const canary = "pipeline-canary-3c7e"

func call(c *core.Core, tok string, op logical.Operation, path, body string) (*logical.Response, error) {
	return c.HandleRequest(context.Background(), &logical.Request{
		Operation: op, Path: path, Body: []byte(body), ClientToken: tok, RemoteAddr: "127.0.0.1:40000",
	})
}

// childToken creates a token with policies under root and returns it.
func childToken(t *testing.T, c *core.Core, root string, policies ...string) string {
	t.Helper()
	body := `{"policies":["` + strings.Join(policies, `","`) + `"],"no_default_policy":true}`
	resp := do(t, c, root, logical.UpdateOperation, "auth/token/create", body)
	if resp == nil || resp.Auth == nil || resp.Auth.ClientToken == "" {
		t.Fatalf("token create returned %+v", resp)
	}
	return resp.Auth.ClientToken
}

func putPolicy(t *testing.T, c *core.Core, root, name, hcl string) {
	t.Helper()
	body := `{"policy":` + quote(hcl) + `}`
	do(t, c, root, logical.UpdateOperation, "sys/policies/acl/"+name, body)
}

func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

func wantCode(t *testing.T, what string, err error, code logical.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want code %d", what, code)
	}
	if got := logical.CodeOf(err); got != code {
		t.Fatalf("%s: %v (code %d), want code %d", what, err, got, code)
	}
	if strings.Contains(err.Error(), canary) {
		t.Errorf("%s: error %q reveals a secret value", what, err)
	}
}

func TestPipelinePolicies(t *testing.T) {
	c, root := newCore(t, inmem.New())
	do(t, c, root, logical.UpdateOperation, "secret/data/app/db", `{"data":{"password":"`+canary+`"}}`)
	do(t, c, root, logical.UpdateOperation, "secret/data/app/admin", `{"data":{"password":"`+canary+`"}}`)
	putPolicy(t, c, root, "app-reader", `
path "secret/data/app/*" { capabilities = ["read", "list"] }
path "secret/data/app/admin" { capabilities = ["deny"] }
path "sys/mounts/*" { capabilities = ["create", "update"] }
path "sys/audit/*" { capabilities = ["create", "update"] }
`)
	tok := childToken(t, c, root, "app-reader")

	resp, err := call(c, tok, logical.ReadOperation, "secret/data/app/db", "")
	if err != nil {
		t.Fatalf("read allowed by the policy: %v", err)
	}
	if data, _ := resp.Data.(map[string]any); data == nil || !strings.Contains(string(mustJSON(t, data["data"])), canary) {
		t.Errorf("read returned %+v, want the stored value", resp.Data)
	}

	for _, tc := range []struct {
		what, tok string
		op        logical.Operation
		path      string
		code      logical.Code
	}{
		{"no token", "", logical.ReadOperation, "secret/data/app/db", logical.PermissionDenied},
		{"bogus token", "hvs.bogus", logical.ReadOperation, "secret/data/app/db", logical.PermissionDenied},
		{"deny wins over a glob", tok, logical.ReadOperation, "secret/data/app/admin", logical.PermissionDenied},
		{"write without update", tok, logical.UpdateOperation, "secret/data/app/db", logical.PermissionDenied},
		{"outside the policy", tok, logical.ReadOperation, "secret/data/other", logical.PermissionDenied},
		{"sudo path without sudo", tok, logical.UpdateOperation, "sys/audit/file", logical.PermissionDenied},
		{"unknown mount (root)", root, logical.ReadOperation, "nowhere/x", logical.NotFound},
	} {
		t.Run(tc.what, func(t *testing.T) {
			_, err := call(c, tc.tok, tc.op, tc.path, `{"data":{"password":"`+canary+`"}}`)
			wantCode(t, tc.what, err, tc.code)
		})
	}

	// The value is untouched by the refused write.
	resp = do(t, c, root, logical.ReadOperation, "secret/data/app/db", "")
	if !strings.Contains(string(mustJSON(t, resp.Data)), canary) {
		t.Errorf("after refused writes the secret reads %+v", resp.Data)
	}

	// Revoking the token ends it at once.
	do(t, c, root, logical.UpdateOperation, "auth/token/revoke", `{"token":"`+tok+`"}`)
	_, err = call(c, tok, logical.ReadOperation, "secret/data/app/db", "")
	wantCode(t, "revoked token", err, logical.PermissionDenied)
}

func TestPipelineSealedAndRestarted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "coffer.db")
	be, err := bolt.Open(bolt.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	c, err := core.New(core.Config{Backend: be, Engines: map[string]logical.Factory{"kv": kv.Factory, "cubbyhole": cubbyhole.Factory}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := c.Init(ctx, core.InitRequest{SecretShares: 3, SecretThreshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range res.Keys[:2] {
		if _, err := c.Unseal(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	root := res.RootToken
	do(t, c, root, logical.UpdateOperation, "sys/mounts/secret", `{"type":"kv","options":{"version":"2"}}`)
	do(t, c, root, logical.UpdateOperation, "secret/data/k", `{"data":{"v":"`+canary+`"}}`)
	tok := childToken(t, c, root, "some-policy")

	if err := c.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = call(c, root, logical.ReadOperation, "secret/data/k", "")
	wantCode(t, "read while sealed", err, logical.Sealed)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}

	// A new process over the same file: sealed until two shares.
	be, err = bolt.Open(bolt.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	c, err = core.New(core.Config{Backend: be, Engines: map[string]logical.Factory{"kv": kv.Factory, "cubbyhole": cubbyhole.Factory}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_, err = call(c, root, logical.ReadOperation, "secret/data/k", "")
	wantCode(t, "read before unseal", err, logical.Sealed)
	if _, err := c.Unseal(ctx, res.Keys[2]); err != nil {
		t.Fatal(err)
	}
	if !c.Sealed() {
		t.Fatal("unsealed with one share of a 2-of-3 split")
	}
	if _, err := c.Unseal(ctx, res.Keys[0]); err != nil {
		t.Fatal(err)
	}
	resp := do(t, c, root, logical.ReadOperation, "secret/data/k", "")
	if !strings.Contains(string(mustJSON(t, resp.Data)), canary) {
		t.Errorf("after restart the secret reads %+v", resp.Data)
	}
	if _, err := call(c, root, logical.UpdateOperation, "auth/token/lookup", `{"token":"`+tok+`"}`); err != nil {
		t.Errorf("lookup of a token created before the restart: %v", err)
	}
}

func TestPipelineBadInput(t *testing.T) {
	c, root := newCore(t, inmem.New())
	for _, tc := range []struct {
		what, path, body string
		code             logical.Code
	}{
		{"malformed JSON", "secret/data/x", `{"data":`, logical.Invalid},
		{"data of the wrong type", "secret/data/x", `{"data":"` + canary + `"}`, logical.Invalid},
		{"options of the wrong type", "secret/data/x", `{"options":[1],"data":{}}`, logical.Invalid},
	} {
		t.Run(tc.what, func(t *testing.T) {
			_, err := call(c, root, logical.UpdateOperation, tc.path, tc.body)
			wantCode(t, tc.what, err, tc.code)
		})
	}
	if _, err := call(c, root, logical.ReadOperation, "secret/data/x", ""); err != nil && !errors.Is(err, logical.ErrNotFound) {
		t.Errorf("read after refused writes: %v", err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixedRole is a core.Cluster whose role is set by the test: two cores
// over one real store stand for an active node and a standby that sees its
// writes at once (what raft replication gives, without the delay).
type fixedRole struct{ active bool }

func (fixedRole) BeforeInit(context.Context) error                { return nil }
func (fixedRole) Unsealed(context.Context, logical.Storage) error { return nil }
func (r fixedRole) Active() bool                                  { return r.active }

// A standby serves KV reads of a mount created after it built its state:
// the generation marker makes it rebuild first, instead of sending every
// read of the new mount to the active node for good.
func TestStandbyServesANewMount(t *testing.T) {
	ctx := context.Background()
	be := inmem.New()
	engines := map[string]logical.Factory{"kv": kv.Factory, "cubbyhole": cubbyhole.Factory}
	active, err := core.New(core.Config{Backend: be, Engines: engines, Cluster: fixedRole{active: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { active.Close() })
	res, err := active.Init(ctx, core.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := active.Unseal(ctx, res.Keys[0]); err != nil {
		t.Fatal(err)
	}
	standby, err := core.New(core.Config{Backend: be, Engines: engines, Cluster: fixedRole{active: false}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { standby.Close() })
	if _, err := standby.Unseal(ctx, res.Keys[0]); err != nil {
		t.Fatal(err)
	}
	root := res.RootToken
	read := &logical.Request{Operation: logical.ReadOperation, Path: "late/data/k", ClientToken: root}

	// The standby built its state before the mount existed.
	if _, err := standby.ServeStandby(ctx, read); !errors.Is(err, core.ErrNotServedOnStandby) {
		t.Fatalf("read of a missing mount on the standby = %v, want ErrNotServedOnStandby", err)
	}
	do(t, active, root, logical.UpdateOperation, "sys/mounts/late", `{"type":"kv","options":{"version":"2"}}`)
	do(t, active, root, logical.UpdateOperation, "late/data/k", `{"data":{"v":"`+canary+`"}}`)

	resp, err := standby.ServeStandby(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "late/data/k", ClientToken: root})
	if err != nil {
		t.Fatalf("standby read of the new mount = %v, want it served locally", err)
	}
	if !strings.Contains(string(mustJSON(t, resp.Data)), canary) {
		t.Errorf("standby read returned %+v", resp.Data)
	}
}

// replicated is the real in-memory store with a counter of applied writes,
// bumped after each write is visible: what raft's applied index is to a
// standby.
type replicated struct {
	*inmem.Backend
	applied atomic.Uint64
}

func (r *replicated) Apply(ctx context.Context, ops []storage.Op) error {
	err := r.Backend.Apply(ctx, ops)
	r.applied.Add(1)
	return err
}

// epochRole is a standby's role with an epoch (core.Epocher), so that its
// token and KV caches are on.
type epochRole struct {
	fixedRole
	r *replicated
}

func (e epochRole) AppliedIndex() uint64 { return e.r.applied.Load() }

// A standby with caches serves what the active node wrote last, across
// overwrites, deletes and token revocation.
func TestStandbyCachesFollowReplication(t *testing.T) {
	ctx := context.Background()
	be := &replicated{Backend: inmem.New()}
	engines := map[string]logical.Factory{"kv": kv.Factory, "cubbyhole": cubbyhole.Factory}
	active, err := core.New(core.Config{Backend: be, Engines: engines, Cluster: fixedRole{active: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { active.Close() })
	res, err := active.Init(ctx, core.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := active.Unseal(ctx, res.Keys[0]); err != nil {
		t.Fatal(err)
	}
	root := res.RootToken
	do(t, active, root, logical.UpdateOperation, "sys/mounts/secret", `{"type":"kv","options":{"version":"2"}}`)
	putPolicy(t, active, root, "reader", `path "secret/data/*" { capabilities = ["read"] }`)
	reader := childToken(t, active, root, "reader")

	standby, err := core.New(core.Config{Backend: be, Engines: engines, Cluster: epochRole{r: be}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { standby.Close() })
	if _, err := standby.Unseal(ctx, res.Keys[0]); err != nil {
		t.Fatal(err)
	}
	read := func() (*logical.Response, error) {
		return standby.ServeStandby(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "secret/data/k", ClientToken: reader})
	}
	for i := range 5 {
		v := fmt.Sprintf("v%d", i)
		do(t, active, root, logical.UpdateOperation, "secret/data/k", `{"data":{"v":"`+v+`"}}`)
		for range 2 { // the second read comes from the caches
			resp, err := read()
			if err != nil {
				t.Fatalf("standby read after write %d: %v", i, err)
			}
			if got := string(mustJSON(t, resp.Data)); !strings.Contains(got, `"v":"`+v+`"`) {
				t.Fatalf("standby read after write %d = %s, want %s", i, got, v)
			}
		}
	}
	do(t, active, root, logical.DeleteOperation, "secret/metadata/k", "")
	if resp, err := read(); err != nil || resp != nil {
		t.Errorf("standby read of a deleted key = %+v, %v; want nothing", resp, err)
	}
	do(t, active, root, logical.UpdateOperation, "auth/token/revoke", `{"token":"`+reader+`"}`)
	_, err = read()
	wantCode(t, "standby read with a revoked token", err, logical.PermissionDenied)
}
