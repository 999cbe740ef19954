package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// recorded is one request the test server saw.
type recorded struct {
	Method, Path, Query, Token, ContentType, Body string
}

// replay serves testdata files: routes maps "METHOD /v1/path" to a status
// and a golden file name ("" for an empty body).
type replay struct {
	mu   sync.Mutex // guards following
	reqs []recorded
}

type route struct {
	status int
	file   string
}

func newReplay(t *testing.T, routes map[string]route) (*replay, *httptest.Server) {
	t.Helper()
	rp := &replay{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rp.mu.Lock()
		rp.reqs = append(rp.reqs, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("X-Vault-Token"), r.Header.Get("Content-Type"), string(b)})
		rp.mu.Unlock()
		rt, ok := routes[r.Method+" "+r.URL.Path]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"errors":["no handler for route"]}`)
			return
		}
		if rt.file == "" {
			w.WriteHeader(rt.status)
			return
		}
		body, err := os.ReadFile(filepath.Join("testdata", rt.file))
		if err != nil {
			body = []byte(rt.file) // an inline body
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rt.status)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return rp, srv
}

func (rp *replay) last(t *testing.T) recorded {
	t.Helper()
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if len(rp.reqs) == 0 {
		t.Fatal("server saw no request")
	}
	return rp.reqs[len(rp.reqs)-1]
}

func newTestClient(t *testing.T, srv *httptest.Server, token string) *Client {
	t.Helper()
	c, err := NewClient(Config{Address: srv.URL, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestReadDecodesEnvelope(t *testing.T) {
	rp, srv := newReplay(t, map[string]route{"GET /v1/secret/data/myapp": {200, "kv2-read.json"}})
	c := newTestClient(t, srv, "root")
	r, err := c.Read(context.Background(), "secret/data/myapp")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.RequestID, "764491fa-3353-24ec-2826-8025722eb75f"; got != want {
		t.Errorf("RequestID = %q, want %q", got, want)
	}
	data, _ := r.Data["data"].(map[string]any)
	if got, want := data["username"], "admin"; got != want {
		t.Errorf("data.username = %v, want %v", got, want)
	}
	meta, _ := r.Data["metadata"].(map[string]any)
	if got, want := meta["version"], json.Number("2"); got != want {
		t.Errorf("metadata.version = %#v, want %#v (numbers stay json.Number)", got, want)
	}
	req := rp.last(t)
	if req.Token != "root" || req.Method != "GET" || req.Path != "/v1/secret/data/myapp" || req.Body != "" {
		t.Errorf("request = %+v, want GET /v1/secret/data/myapp with token root and no body", req)
	}
}

func TestErrorsInPlainWords(t *testing.T) {
	for name, tc := range map[string]struct {
		status   int
		body     string
		want     string
		sentinel error
	}{
		"missing secret is not found":        {404, "kv2-read-missing.json", "not found", ErrNotFound},
		"no token is permission denied":      {403, "no-token-kv2-read.json", "permission denied", ErrPermissionDenied},
		"vault's sealed message is reworded": {503, `{"errors":["Vault is sealed"]}`, "server is sealed", ErrSealed},
		"coffer's sealed message":            {503, `{"errors":["server is sealed"]}`, "server is sealed", ErrSealed},
		"server message is kept":             {400, "kv2-write-cas-mismatch.json", "check-and-set parameter did not match the current version", nil},
		"body that is not json":              {500, "oops", "internal server error", nil},
	} {
		t.Run(name, func(t *testing.T) {
			_, srv := newReplay(t, map[string]route{"GET /v1/x": {tc.status, tc.body}})
			_, err := newTestClient(t, srv, "").Read(context.Background(), "x")
			var apiErr *Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if apiErr.StatusCode != tc.status {
				t.Errorf("StatusCode = %d, want %d", apiErr.StatusCode, tc.status)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
			for _, s := range []error{ErrNotFound, ErrPermissionDenied, ErrSealed} {
				if got, want := errors.Is(err, s), s == tc.sentinel; got != want {
					t.Errorf("errors.Is(err, %v) = %v, want %v", s, got, want)
				}
			}
		})
	}
}

func TestWriteSendsJSONAnd204IsEmpty(t *testing.T) {
	rp, srv := newReplay(t, map[string]route{"PUT /v1/sys/policies/acl/app": {204, ""}})
	c := newTestClient(t, srv, "tok")
	r, err := c.Write(context.Background(), "sys/policies/acl/app", map[string]any{"policy": "x"})
	if err != nil {
		t.Fatal(err)
	}
	if r == nil || r.Data != nil {
		t.Errorf("Write on 204 = %+v, want an empty Response", r)
	}
	req := rp.last(t)
	if got, want := req.Body, `{"policy":"x"}`; got != want {
		t.Errorf("body = %s, want %s", got, want)
	}
	if got, want := req.ContentType, "application/json"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
}

func TestListReturnsKeys(t *testing.T) {
	rp, srv := newReplay(t, map[string]route{"LIST /v1/secret/metadata/": {200, "kv2-metadata-list.json"}})
	keys, err := newTestClient(t, srv, "t").KVv2("secret").List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"myapp"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("keys = %v, want %v", keys, want)
	}
	if got := rp.last(t).Method; got != "LIST" {
		t.Errorf("method = %s, want LIST", got)
	}
}

func TestKVv2Requests(t *testing.T) {
	ctx := context.Background()
	for name, tc := range map[string]struct {
		call                func(*KVv2) error
		method, path, query string
		body, contentType   string
	}{
		"get a version": {func(kv *KVv2) error { _, err := kv.Get(ctx, "app", 3); return err },
			"GET", "/v1/kv/data/app", "version=3", "", ""},
		"put with cas": {func(kv *KVv2) error { _, err := kv.Put(ctx, "app", map[string]any{"a": "b"}, 1); return err },
			"PUT", "/v1/kv/data/app", "", `{"data":{"a":"b"},"options":{"cas":1}}`, "application/json"},
		"put without cas": {func(kv *KVv2) error { _, err := kv.Put(ctx, "app", map[string]any{"a": "b"}, -1); return err },
			"PUT", "/v1/kv/data/app", "", `{"data":{"a":"b"},"options":{}}`, "application/json"},
		"patch is a merge patch": {func(kv *KVv2) error { _, err := kv.Patch(ctx, "app", map[string]any{"a": nil}, -1); return err },
			"PATCH", "/v1/kv/data/app", "", `{"data":{"a":null},"options":{}}`, "application/merge-patch+json"},
		"delete latest": {func(kv *KVv2) error { return kv.Delete(ctx, "app") },
			"DELETE", "/v1/kv/data/app", "", "", ""},
		"delete versions": {func(kv *KVv2) error { return kv.Delete(ctx, "app", 1, 2) },
			"PUT", "/v1/kv/delete/app", "", `{"versions":[1,2]}`, "application/json"},
		"undelete": {func(kv *KVv2) error { return kv.Undelete(ctx, "app", 2) },
			"PUT", "/v1/kv/undelete/app", "", `{"versions":[2]}`, "application/json"},
		"destroy": {func(kv *KVv2) error { return kv.Destroy(ctx, "app", 1) },
			"PUT", "/v1/kv/destroy/app", "", `{"versions":[1]}`, "application/json"},
		"metadata delete": {func(kv *KVv2) error { return kv.DeleteMetadata(ctx, "app") },
			"DELETE", "/v1/kv/metadata/app", "", "", ""},
	} {
		t.Run(name, func(t *testing.T) {
			rp, srv := newReplay(t, map[string]route{tc.method + " " + tc.path: {200, `{"data":{}}`}})
			if err := tc.call(newTestClient(t, srv, "t").KVv2("/kv/")); err != nil {
				t.Fatal(err)
			}
			got := rp.last(t)
			want := recorded{tc.method, tc.path, tc.query, "t", tc.contentType, tc.body}
			if got != want {
				t.Errorf("request = %+v, want %+v", got, want)
			}
		})
	}
}

func TestSealStatusAndHealth(t *testing.T) {
	_, srv := newReplay(t, map[string]route{
		"GET /v1/sys/seal-status": {200, "sys-seal-status.json"},
		"GET /v1/sys/health":      {503, `{"initialized":true,"sealed":true,"version":"1.0.0"}`},
	})
	c := newTestClient(t, srv, "")
	s, err := c.SealStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Sealed || !s.Initialized || s.T != 1 || s.Version != "2.0.0-HEAD" {
		t.Errorf("SealStatus = %+v", s)
	}
	h, code, err := c.Health(context.Background())
	if err != nil {
		t.Fatalf("Health: %v (a 503 with a body is not an error)", err)
	}
	if code != 503 || !h.Sealed {
		t.Errorf("Health = %+v, %d; want sealed, 503", h, code)
	}
}

func TestConfigFromEnv(t *testing.T) {
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, TokenFile), []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		env  map[string]string
		home string
		want Config
	}{
		"coffer variables win": {map[string]string{"COFFER_ADDR": "https://c:1", "VAULT_ADDR": "https://v:1", "COFFER_TOKEN": "ct", "VAULT_TOKEN": "vt"}, home,
			Config{Address: "https://c:1", Token: "ct"}},
		"vault variables are the fallback": {map[string]string{"VAULT_ADDR": "https://v:1", "VAULT_TOKEN": "vt", "VAULT_CACERT": "/ca.pem", "VAULT_SKIP_VERIFY": "true"}, home,
			Config{Address: "https://v:1", Token: "vt", CACert: "/ca.pem", TLSSkipVerify: true}},
		"token file when no variable": {map[string]string{"COFFER_SKIP_VERIFY": "1"}, home,
			Config{Token: "file-token", TLSSkipVerify: true}},
		"no token file, no token": {nil, t.TempDir(), Config{}},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := ConfigFromEnv(func(k string) string { return tc.env[k] }, tc.home)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("ConfigFromEnv = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNewClientRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"not a url":          {Address: "127.0.0.1:8200"},
		"unsupported scheme": {Address: "ftp://x"},
		"missing ca file":    {CACert: filepath.Join(t.TempDir(), "none.pem")},
		"ca file without pem": {CACert: func() string {
			p := filepath.Join(t.TempDir(), "ca.pem")
			os.WriteFile(p, []byte("nope"), 0o600)
			return p
		}()},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := NewClient(cfg); err == nil {
				t.Errorf("NewClient(%+v) succeeded, want an error", cfg)
			}
		})
	}
	c, err := NewClient(Config{})
	if err != nil || c.Address() != DefaultAddress {
		t.Errorf("NewClient(Config{}) = %v, %v; want address %s", c, err, DefaultAddress)
	}
}

func TestWithTokenAndBaseProxyPath(t *testing.T) {
	rp, srv := newReplay(t, map[string]route{"GET /prefix/v1/auth/token/lookup-self": {200, `{"data":{"id":"x"}}`}})
	c, err := NewClient(Config{Address: srv.URL + "/prefix/", Token: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WithToken("b").Read(context.Background(), "/auth/token/lookup-self"); err != nil {
		t.Fatal(err)
	}
	if got := rp.last(t).Token; got != "b" {
		t.Errorf("token = %q, want b", got)
	}
	if c.Token() != "a" {
		t.Errorf("WithToken changed the original client")
	}
	if !strings.HasPrefix(rp.last(t).Path, "/prefix/v1/") {
		t.Errorf("path = %s", rp.last(t).Path)
	}
}
