package database

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/barrier/barriertest"
	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/pgtest"
)

// pg is the package's real PostgreSQL, started by TestMain.
var pg *pgtest.Server

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &pg)) }

// clock is the real time plus a settable offset, so that VALID UNTIL
// times stay meaningful to PostgreSQL while tests move forward.
type clock struct {
	mu     sync.Mutex // guards following
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// newStorage returns a mount view over a real, unsealed barrier over the
// in-memory physical backend.
func newStorage(t testing.TB) logical.Storage {
	t.Helper()
	return logical.NewView(barriertest.New(t), "logical/database/")
}

type env struct {
	t       *testing.T
	storage logical.Storage
	b       *Backend
	clock   *clock
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c := &clock{}
	s := newStorage(t)
	b, err := New(Config{Storage: s, Now: c.Now, Logger: slog.New(slog.DiscardHandler), ConnectTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &env{t: t, storage: s, b: b, clock: c}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// do sends one request as a caller named "token".
func (e *env) do(op logical.Operation, path string, body map[string]any) (*logical.Response, error) {
	e.t.Helper()
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			e.t.Fatal(err)
		}
	}
	req := &logical.Request{Operation: op, Path: path, Body: raw, MountPoint: "database/",
		Caller: &logical.Caller{DisplayName: "token", Policies: []string{"root"}}}
	return e.b.HandleRequest(ctxT(e.t), req)
}

func (e *env) must(op logical.Operation, path string, body map[string]any) *logical.Response {
	e.t.Helper()
	r, err := e.do(op, path, body)
	if err != nil {
		e.t.Fatalf("%s %s: %v", op, path, err)
	}
	return r
}

// configure writes config/<name> for the package's superuser.
func (e *env) configure(name string, extra map[string]any) {
	e.t.Helper()
	body := map[string]any{
		"plugin_name":    PluginName,
		"connection_url": pg.TemplateURL(),
		"username":       pg.SuperUser,
		"password":       pg.SuperPassword,
		"allowed_roles":  []string{"*"},
	}
	for k, v := range extra {
		body[k] = v
	}
	e.must(logical.UpdateOperation, "config/"+name, body)
}

// creds issues credentials of role and returns them with the lease as the
// core would record it.
func (e *env) creds(role string) (user, pw string, s *logical.LeasedSecret) {
	e.t.Helper()
	r := e.must(logical.ReadOperation, "creds/"+role, nil)
	data := r.Data.(map[string]any)
	user, pw = data["username"].(string), data["password"].(string)
	if r.Secret == nil {
		e.t.Fatalf("creds/%s returned no Secret lease", role)
	}
	now := e.clock.Now()
	s = &logical.LeasedSecret{LeaseID: "database/creds/" + role + "/" + user, Path: "creds/" + role,
		IssueTime: now, ExpireTime: now.Add(r.Secret.TTL), TTL: r.Secret.TTL, MaxTTL: r.Secret.MaxTTL,
		InternalData: r.Secret.InternalData}
	return user, pw, s
}

func adminExec(t *testing.T, sql string) {
	t.Helper()
	if err := pg.Exec(ctxT(t), sql); err != nil {
		t.Fatal(err)
	}
}

func roleExists(t *testing.T, name string) bool {
	t.Helper()
	ok, err := pg.RoleExists(ctxT(t), name)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// canLogin reports whether user logs in with pw over TCP.
func canLogin(t *testing.T, user, pw string) bool {
	t.Helper()
	c, err := pg.Connect(ctxT(t), user, pw)
	if err != nil {
		return false
	}
	c.Close(context.Background())
	return true
}
