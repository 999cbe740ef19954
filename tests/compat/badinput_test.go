package compat

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

type rawResult struct {
	status int
	errors []string
	body   string
}

func doRaw(t *testing.T, method, url, token string, body io.Reader, hdr map[string]string) rawResult {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct {
		Errors []string `json:"errors"`
	}
	_ = json.Unmarshal(b, &e)
	return rawResult{status: resp.StatusCode, errors: e.Errors, body: string(b)}
}

// TestBadInput sends what clients get wrong and checks each answer: a
// Vault-style {"errors":[...]} with the right status, no secret in it, and
// a server that stays healthy and keeps its data.
func TestBadInput(t *testing.T) {
	p, c := startDev(t)
	if _, err := c.KVv2("secret").Put(ctx(t), "keep", map[string]any{"v": "canary-value-123"}); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("a"), 33<<20)
	for name, tc := range map[string]struct {
		method, path, token, body string
		raw                       []byte
		hdr                       map[string]string
		status                    int
		errContains               string
	}{
		"malformed JSON":              {method: "POST", path: "/v1/secret/data/x", token: "root", body: `{"data": {`, status: 400, errContains: "malformed JSON"},
		"data of the wrong type":      {method: "POST", path: "/v1/secret/data/x", token: "root", body: `{"data": "a string"}`, status: 400},
		"body that is not an object":  {method: "POST", path: "/v1/secret/data/x", token: "root", body: `[1,2]`, status: 400},
		"missing token":               {method: "GET", path: "/v1/secret/data/keep", status: 403, errContains: "permission denied"},
		"bogus token":                 {method: "GET", path: "/v1/secret/data/keep", token: "hvs.bogus", status: 403, errContains: "permission denied"},
		"bearer bogus token":          {method: "GET", path: "/v1/secret/data/keep", hdr: map[string]string{"Authorization": "Bearer nope"}, status: 403},
		"unknown mount":               {method: "GET", path: "/v1/nonexistent/foo", token: "root", status: 404, errContains: "no handler for route"},
		"33 MiB body":                 {method: "POST", path: "/v1/secret/data/big", token: "root", raw: big, status: 413},
		"traversal with ..":           {method: "GET", path: "/v1/secret/data/../../sys/mounts", token: "root", status: 400, errContains: "invalid request path"},
		"encoded traversal":           {method: "GET", path: "/v1/secret/data/%2e%2e/%2e%2e/sys/mounts", token: "root", status: 400},
		"double slash":                {method: "GET", path: "/v1/secret//data/keep", token: "root", status: 400},
		"namespace header":            {method: "GET", path: "/v1/secret/data/keep", token: "root", hdr: map[string]string{"X-Vault-Namespace": "team-a"}, status: 400, errContains: "namespaces are not supported"},
		"unsupported method":          {method: "TRACE", path: "/v1/secret/data/keep", token: "root", status: 405},
		"corrupted unseal share":      {method: "PUT", path: "/v1/sys/unseal", body: `{"key":"zz-not-a-key"}`, status: 400},
		"wrong type for max_versions": {method: "POST", path: "/v1/secret/config", token: "root", body: `{"max_versions": {"a":1}}`, status: 400},
	} {
		t.Run(name, func(t *testing.T) {
			var body io.Reader
			if tc.raw != nil {
				body = bytes.NewReader(tc.raw)
			} else if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			r := doRaw(t, tc.method, p.addr+tc.path, tc.token, body, tc.hdr)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d; body %s", r.status, tc.status, r.body)
			}
			if len(r.errors) == 0 {
				t.Fatalf("no errors array in %s", r.body)
			}
			if tc.errContains != "" && !strings.Contains(strings.Join(r.errors, " "), tc.errContains) {
				t.Errorf("errors = %q, want one containing %q", r.errors, tc.errContains)
			}
			if strings.Contains(r.body, "canary-value-123") {
				t.Errorf("error body leaks a secret value: %s", r.body)
			}
		})
	}
	// Still healthy, data intact.
	if r := doRaw(t, "GET", p.addr+"/v1/sys/health", "", nil, nil); r.status != 200 {
		t.Errorf("health after bad input = %d %s", r.status, r.body)
	}
	s, err := c.KVv2("secret").Get(ctx(t), "keep")
	if err != nil || s.Data["v"] != "canary-value-123" {
		t.Errorf("data after bad input = %v, %v", s, err)
	}
	if s, err := c.KVv2("secret").Get(ctx(t), "big"); err == nil {
		t.Errorf("the 33 MiB write was stored: version %d", s.VersionMetadata.Version)
	}
}

// TestListVerbs checks LIST and GET ?list=true agree.
func TestListVerbs(t *testing.T) {
	p, c := startDev(t)
	if _, err := c.KVv2("secret").Put(ctx(t), "a/b", map[string]any{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ method, path string }{{"LIST", "/v1/secret/metadata/"}, {"GET", "/v1/secret/metadata/?list=true"}, {"GET", "/v1/secret/metadata?list=true"}} {
		r := doRaw(t, tc.method, p.addr+tc.path, "root", nil, nil)
		if r.status != 200 || !strings.Contains(r.body, `"keys":["a/"]`) {
			t.Errorf("%s %s = %d %s", tc.method, tc.path, r.status, r.body)
		}
	}
}
