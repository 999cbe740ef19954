package authbase

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/coffer-dev/coffer/internal/barrier/barriertest"
	"github.com/coffer-dev/coffer/internal/logical"
)

type entry struct {
	Policies []string `json:"policies"`
}

// newRouter returns a Router whose handlers store the request body as the
// role and answer reads with the stored entry.
func newRouter(t *testing.T) *Router {
	s := barriertest.Storage(t)
	return &Router{
		Storage:     s,
		Login:       func(context.Context, *logical.Request) (*logical.Response, error) { return &logical.Response{}, nil },
		ReadConfig:  func(context.Context) (*logical.Response, error) { return &logical.Response{}, nil },
		WriteConfig: func(context.Context, *logical.Request) error { return nil },
		ReadRole: func(ctx context.Context, name string) (*logical.Response, error) {
			e, err := Get[entry](ctx, s, "role/"+name)
			if err != nil || e == nil {
				return nil, err
			}
			return &logical.Response{Data: map[string]any{"policies": e.Policies}}, nil
		},
		WriteRole: func(ctx context.Context, req *logical.Request, name string) error {
			var e entry
			if err := req.Decode(&e); err != nil {
				return err
			}
			return PutJSON(ctx, s, "role/"+name, &e)
		},
	}
}

func TestRouterRolesLifeCycle(t *testing.T) {
	ctx := context.Background()
	r := newRouter(t)
	do := func(op logical.Operation, path, body string) *logical.Response {
		t.Helper()
		resp, err := r.HandleRequest(ctx, &logical.Request{Operation: op, Path: path, Body: []byte(body)})
		if err != nil {
			t.Fatalf("%s %s: %v", op, path, err)
		}
		return resp
	}
	if resp := do(logical.ListOperation, "role", ""); resp != nil {
		t.Errorf("LIST of no roles = %v, want nil (404)", resp)
	}
	do(logical.UpdateOperation, "role/b", `{"policies":["x"]}`)
	do(logical.CreateOperation, "role/a", `{"policies":["y"]}`)
	if got := do(logical.ListOperation, "role", "").Data.(map[string]any)["keys"]; !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("LIST role = %v, want [a b]", got)
	}
	roles, err := Roles(ctx, r.Storage, "role/", func(e *entry) []string { return e.Policies })
	if want := []logical.RoleInfo{{Name: "a", Policies: []string{"y"}}, {Name: "b", Policies: []string{"x"}}}; err != nil || !reflect.DeepEqual(roles, want) {
		t.Errorf("Roles = %v, %v; want %v", roles, err, want)
	}
	if ok, exists, err := r.Exists(ctx, &logical.Request{Path: "role/a"}); !ok || !exists || err != nil {
		t.Errorf("Exists(role/a) = %v, %v, %v; want true, true, nil", ok, exists, err)
	}
	do(logical.DeleteOperation, "role/a", "")
	do(logical.DeleteOperation, "role/a", "") // deleting a missing role is not an error
	if resp := do(logical.ReadOperation, "role/a", ""); resp != nil {
		t.Errorf("read of a deleted role = %v, want nil", resp)
	}
	if ok, exists, err := r.Exists(ctx, &logical.Request{Path: "role/a"}); !ok || exists || err != nil {
		t.Errorf("Exists(deleted role/a) = %v, %v, %v; want true, false, nil", ok, exists, err)
	}
}

func TestRouterRefusesBadRequests(t *testing.T) {
	r := newRouter(t)
	for name, tc := range map[string]struct {
		op   logical.Operation
		path string
		want logical.Code
	}{
		"read of login is unsupported":    {logical.ReadOperation, "login", logical.Unsupported},
		"delete of config is unsupported": {logical.DeleteOperation, "config", logical.Unsupported},
		"write to the role list":          {logical.UpdateOperation, "role", logical.Unsupported},
		"list of one role":                {logical.ListOperation, "role/a", logical.Unsupported},
		"a role name with a slash":        {logical.UpdateOperation, "role/a/b", logical.Invalid},
		"a role name with a space":        {logical.ReadOperation, "role/a b", logical.Invalid},
		"an unknown path":                 {logical.ReadOperation, "users/a", logical.NotFound},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := r.HandleRequest(context.Background(), &logical.Request{Operation: tc.op, Path: tc.path})
			var le *logical.Error
			if !errors.As(err, &le) || le.Code != tc.want {
				t.Errorf("%s %s: got %v, want code %v", tc.op, tc.path, err, tc.want)
			}
		})
	}
	if ok, _, _ := r.Exists(context.Background(), &logical.Request{Path: "config"}); ok {
		t.Error("Exists checked config, want only role/<name>")
	}
}

func TestGetReportsCorruptEntries(t *testing.T) {
	ctx := context.Background()
	s := barriertest.Storage(t)
	if err := s.Put(ctx, "role/x", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if e, err := Get[entry](ctx, s, "role/x"); err == nil {
		t.Errorf("Get of a corrupt entry = %v, nil; want an error", e)
	}
	if e, err := Get[entry](ctx, s, "role/missing"); e != nil || err != nil {
		t.Errorf("Get of a missing entry = %v, %v; want nil, nil", e, err)
	}
}
