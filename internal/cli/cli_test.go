package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// exchange is one request a command must send, in order, and the reply.
type exchange struct {
	method, path string // path with its query, if any
	body         string // expected JSON body, compared as JSON; "" for none
	status       int
	reply        string // response body; "@name" is testdata/server/name.json
}

// fakeServer checks that requests arrive as listed.
type fakeServer struct {
	t     *testing.T
	token string // expected X-Vault-Token

	mu    sync.Mutex // guards following
	calls []exchange
	next  int
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	got := r.Method + " " + strings.TrimPrefix(r.URL.RequestURI(), "/v1/")
	if f.next >= len(f.calls) {
		f.t.Errorf("unexpected request %s %s", got, body)
		w.WriteHeader(http.StatusTeapot)
		return
	}
	ex := f.calls[f.next]
	f.next++
	if want := ex.method + " " + ex.path; got != want {
		f.t.Errorf("request %d = %s, want %s", f.next, got, want)
	}
	if tok := r.Header.Get("X-Vault-Token"); tok != f.token {
		f.t.Errorf("request %d: token %q, want %q", f.next, tok, f.token)
	}
	if g, w := canonJSON(f.t, string(body)), canonJSON(f.t, ex.body); g != w {
		f.t.Errorf("request %d (%s) body = %s, want %s", f.next, got, g, w)
	}
	reply := ex.reply
	if name, ok := strings.CutPrefix(reply, "@"); ok {
		b, err := os.ReadFile(filepath.Join("testdata", "server", name+".json"))
		if err != nil {
			f.t.Fatal(err)
		}
		reply = string(b)
	}
	status := ex.status
	if status == 0 {
		status = http.StatusOK
		if reply == "" {
			status = http.StatusNoContent
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, reply)
}

func canonJSON(t *testing.T, s string) string {
	if strings.TrimSpace(s) == "" {
		return ""
	}
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return "not JSON: " + s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// cliCase is one command run against a fake server.
type cliCase struct {
	args  []string
	stdin string
	env   map[string]string // added to COFFER_ADDR (the server) and COFFER_TOKEN=root; "-" unsets
	token string            // expected token ("": root)
	calls []exchange
	code  int
}

type result struct {
	stdout, stderr string
	code           int
}

func runCLI(t *testing.T, tc cliCase, home string) result {
	t.Helper()
	fs := &fakeServer{t: t, token: tc.token, calls: tc.calls}
	if fs.token == "" {
		fs.token = "root"
	}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	vars := map[string]string{"COFFER_ADDR": srv.URL, "COFFER_TOKEN": "root"}
	for k, v := range tc.env {
		vars[k] = strings.ReplaceAll(v, "$SERVER", srv.URL)
		if v == "-" {
			delete(vars, k)
		}
	}
	var stdout, stderr bytes.Buffer
	e := &env{stdin: strings.NewReader(tc.stdin), stdout: &stdout, stderr: &stderr,
		getenv: func(k string) string { return vars[k] }, home: home}
	args := make([]string, len(tc.args))
	for i, a := range tc.args {
		args[i] = strings.ReplaceAll(a, "$SERVER", srv.URL)
	}
	err := Execute(context.Background(), newRoot(e), args)
	fs.mu.Lock()
	if fs.next != len(fs.calls) {
		t.Errorf("server saw %d of %d expected requests", fs.next, len(fs.calls))
	}
	fs.mu.Unlock()
	return result{stdout.String(), strings.ReplaceAll(stderr.String(), srv.URL, "$SERVER"), ExitCode(err)}
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// checkGolden compares got with testdata/<test name>.golden.
func checkGolden(t *testing.T, got string) {
	t.Helper()
	name := unsafeName.ReplaceAllString(strings.TrimPrefix(t.Name(), "TestCommands/"), "_")
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v; run go test -update", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s; run go test -update to accept\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func mounts(path string, version int) exchange {
	if path == "secret" || strings.HasPrefix(path, "secret/") {
		return exchange{method: "GET", path: "sys/internal/ui/mounts/" + path, reply: "@sys-internal-ui-mounts-secret"}
	}
	mount, _, _ := strings.Cut(path, "/")
	return exchange{method: "GET", path: "sys/internal/ui/mounts/" + path,
		reply: fmt.Sprintf(`{"data":{"path":%q,"type":"kv","options":{"version":"%d"}}}`, mount+"/", version)}
}

const (
	sealedStatus = `{"type":"shamir","initialized":true,"sealed":true,"t":2,"n":3,"progress":1,"nonce":"n-1","version":"0.1.0","storage_type":"bolt"}`
	keyStatus    = `{"request_id":"r","data":{"term":2,"install_time":"2026-11-28T00:00:00Z","encryptions":7}}`
)

func TestCommands(t *testing.T) {
	policyFile := filepath.Join("testdata", "app.hcl")
	valueFile := filepath.Join("testdata", "value.txt")

	cases := map[string]cliCase{
		// status and operator
		"status unsealed": {args: []string{"status"},
			calls: []exchange{{method: "GET", path: "sys/seal-status", reply: "@sys-seal-status"}}},
		"status sealed exits 2": {args: []string{"status"}, code: 2,
			calls: []exchange{{method: "GET", path: "sys/seal-status", reply: sealedStatus}}},
		"status json": {args: []string{"status", "-format=json"},
			calls: []exchange{{method: "GET", path: "sys/seal-status", reply: "@sys-seal-status"}}},
		"operator init": {args: []string{"operator", "init", "--key-shares=3", "--key-threshold=2"},
			calls: []exchange{{method: "PUT", path: "sys/init", body: `{"secret_shares":3,"secret_threshold":2}`,
				reply: `{"keys":["aa","bb","cc"],"keys_base64":["qg==","uw==","zA=="],"root_token":"s.root"}`}}},
		"operator init threshold above shares is a usage error": {args: []string{"operator", "init", "-key-shares=3", "-key-threshold=4"}, code: 2},
		"operator unseal with key": {args: []string{"operator", "unseal", "k1"},
			calls: []exchange{{method: "PUT", path: "sys/unseal", body: `{"key":"k1"}`, reply: sealedStatus}}},
		"operator unseal prompts": {args: []string{"operator", "unseal"}, stdin: "k-from-stdin\n",
			calls: []exchange{{method: "PUT", path: "sys/unseal", body: `{"key":"k-from-stdin"}`, reply: "@sys-seal-status"}}},
		"operator unseal reset": {args: []string{"operator", "unseal", "--reset"},
			calls: []exchange{{method: "PUT", path: "sys/unseal", body: `{"reset":true}`, reply: sealedStatus}}},
		"operator seal": {args: []string{"operator", "seal"},
			calls: []exchange{{method: "PUT", path: "sys/seal"}}},
		"operator seal when sealed": {args: []string{"operator", "seal"}, code: 1,
			calls: []exchange{{method: "PUT", path: "sys/seal", status: 503, reply: `{"errors":["Vault is sealed"]}`}}},
		"operator rotate": {args: []string{"operator", "rotate"},
			calls: []exchange{{method: "PUT", path: "sys/rotate"}, {method: "GET", path: "sys/key-status", reply: keyStatus}}},
		"operator key-status json": {args: []string{"operator", "key-status", "--format", "json"},
			calls: []exchange{{method: "GET", path: "sys/key-status", reply: keyStatus}}},
		"generate-root init": {args: []string{"operator", "generate-root", "--init"},
			calls: []exchange{{method: "PUT", path: "sys/generate-root/attempt", body: `{}`,
				reply: `{"started":true,"nonce":"gn","progress":0,"required":2,"complete":false,"otp":"0123456789","otp_length":10}`}}},
		"generate-root update": {args: []string{"operator", "generate-root", "-nonce=gn", "k1"},
			calls: []exchange{{method: "PUT", path: "sys/generate-root/update", body: `{"key":"k1","nonce":"gn"}`,
				reply: `{"started":true,"nonce":"gn","progress":2,"required":2,"complete":true,"encoded_token":"QwE="}`}}},
		"generate-root update needs nonce": {args: []string{"operator", "generate-root", "k1"}, code: 2},
		"generate-root decode":             {args: []string{"operator", "generate-root", "--decode=" + encodeRootToken("s.tok", "abcde"), "--otp=abcde"}},
		"generate-root status": {args: []string{"operator", "generate-root", "--status"},
			calls: []exchange{{method: "GET", path: "sys/generate-root/attempt", reply: `{"started":false,"nonce":"","progress":0,"required":2,"complete":false}`}}},
		"generate-root cancel": {args: []string{"operator", "generate-root", "--cancel"},
			calls: []exchange{{method: "DELETE", path: "sys/generate-root/attempt"}}},
		"rekey init": {args: []string{"operator", "rekey", "--init", "--key-shares=3", "--key-threshold=2"},
			calls: []exchange{{method: "PUT", path: "sys/rekey/init", body: `{"secret_shares":3,"secret_threshold":2}`,
				reply: `{"started":true,"nonce":"rn","t":2,"n":3,"progress":0,"required":1}`}}},
		"rekey update completes": {args: []string{"operator", "rekey", "--nonce=rn", "old"},
			calls: []exchange{{method: "PUT", path: "sys/rekey/update", body: `{"key":"old","nonce":"rn"}`,
				reply: `{"complete":true,"nonce":"rn","keys":["01","02","03"],"keys_base64":["AQ==","Ag==","Aw=="]}`}}},

		// kv
		"kv put v2": {args: []string{"kv", "put", "secret/myapp", "username=admin", "password=@" + valueFile},
			calls: []exchange{mounts("secret/myapp", 2), {method: "PUT", path: "secret/data/myapp",
				body: `{"data":{"username":"admin","password":"from-file"},"options":{}}`, reply: "@kv2-write-v2-cas"}}},
		"kv put with mount and cas": {args: []string{"kv", "put", "-mount=secret", "-cas=1", "myapp", "username=admin"},
			calls: []exchange{mounts("secret", 2), {method: "PUT", path: "secret/data/myapp",
				body: `{"data":{"username":"admin"},"options":{"cas":1}}`, reply: "@kv2-write-v2-cas"}}},
		"kv put json from stdin": {args: []string{"kv", "put", "secret/myapp", "-"}, stdin: `{"n":1,"s":"x"}`,
			calls: []exchange{mounts("secret/myapp", 2), {method: "PUT", path: "secret/data/myapp",
				body: `{"data":{"n":1,"s":"x"},"options":{}}`, reply: "@kv2-write-v2-cas"}}},
		"kv put cas mismatch": {args: []string{"kv", "put", "--cas=1", "secret/myapp", "x=y"}, code: 1,
			calls: []exchange{mounts("secret/myapp", 2), {method: "PUT", path: "secret/data/myapp",
				body: `{"data":{"x":"y"},"options":{"cas":1}}`, status: 400, reply: "@kv2-write-cas-mismatch"}}},
		"kv put bad pair": {args: []string{"kv", "put", "secret/myapp", "novalue"}, code: 2},
		"kv put v1": {args: []string{"kv", "put", "kv1/app", "a=b"},
			calls: []exchange{mounts("kv1/app", 1), {method: "PUT", path: "kv1/app", body: `{"a":"b"}`}}},
		"kv get v2": {args: []string{"kv", "get", "secret/myapp"},
			calls: []exchange{mounts("secret/myapp", 2), {method: "GET", path: "secret/data/myapp", reply: "@kv2-read"}}},
		"kv get field": {args: []string{"kv", "get", "-field=password", "secret/myapp"},
			calls: []exchange{mounts("secret/myapp", 2), {method: "GET", path: "secret/data/myapp", reply: "@kv2-read"}}},
		"kv get missing field": {args: []string{"kv", "get", "-field=nope", "secret/myapp"}, code: 1,
			calls: []exchange{mounts("secret/myapp", 2), {method: "GET", path: "secret/data/myapp", reply: "@kv2-read"}}},
		"kv get version json": {args: []string{"kv", "get", "--version=1", "--format=json", "secret/myapp"},
			calls: []exchange{mounts("secret/myapp", 2), {method: "GET", path: "secret/data/myapp?version=1", reply: "@kv2-read"}}},
		"kv get missing": {args: []string{"kv", "get", "secret/none"}, code: 2,
			calls: []exchange{mounts("secret/none", 2), {method: "GET", path: "secret/data/none", status: 404, reply: "@kv2-read-missing"}}},
		"kv get denied": {args: []string{"kv", "get", "secret/myapp"}, code: 1,
			calls: []exchange{mounts("secret/myapp", 2), {method: "GET", path: "secret/data/myapp", status: 403, reply: "@no-token-kv2-read"}}},
		"kv get v1": {args: []string{"kv", "get", "kv1/app"},
			calls: []exchange{mounts("kv1/app", 1), {method: "GET", path: "kv1/app", reply: `{"data":{"a":"b"},"lease_duration":2764800}`}}},
		"kv patch": {args: []string{"kv", "patch", "secret/myapp", "password=n3w"},
			calls: []exchange{mounts("secret/myapp", 2), {method: "PATCH", path: "secret/data/myapp",
				body: `{"data":{"password":"n3w"},"options":{}}`, reply: "@kv2-write-v2-cas"}}},
		"kv patch on v1 is refused": {args: []string{"kv", "patch", "kv1/app", "a=b"}, code: 2,
			calls: []exchange{mounts("kv1/app", 1)}},
		"kv list": {args: []string{"kv", "list", "secret/"},
			calls: []exchange{mounts("secret/", 2), {method: "LIST", path: "secret/metadata/", reply: "@kv2-metadata-list"}}},
		"kv delete latest": {args: []string{"kv", "delete", "secret/myapp"},
			calls: []exchange{mounts("secret/myapp", 2), {method: "DELETE", path: "secret/data/myapp"}}},
		"kv delete versions": {args: []string{"kv", "delete", "-versions=1,2", "secret/myapp"},
			calls: []exchange{mounts("secret/myapp", 2), {method: "PUT", path: "secret/delete/myapp", body: `{"versions":[1,2]}`}}},
		"kv undelete": {args: []string{"kv", "undelete", "--versions=2", "secret/myapp"},
			calls: []exchange{mounts("secret/myapp", 2), {method: "PUT", path: "secret/undelete/myapp", body: `{"versions":[2]}`}}},
		"kv undelete needs versions": {args: []string{"kv", "undelete", "secret/myapp"}, code: 2},
		"kv destroy": {args: []string{"kv", "destroy", "--versions", "1", "secret/myapp"},
			calls: []exchange{mounts("secret/myapp", 2), {method: "PUT", path: "secret/destroy/myapp", body: `{"versions":[1]}`}}},
		"kv destroy bad version": {args: []string{"kv", "destroy", "--versions=x", "secret/myapp"}, code: 2},
		"kv metadata get": {args: []string{"kv", "metadata", "get", "secret/myapp"},
			calls: []exchange{mounts("secret/myapp", 2), {method: "GET", path: "secret/metadata/myapp", reply: "@kv2-metadata-read"}}},
		"kv metadata put": {args: []string{"kv", "metadata", "put", "-max-versions=5", "-cas-required", "-delete-version-after=1h", "-custom-metadata=owner=team-a", "secret/myapp"},
			calls: []exchange{mounts("secret/myapp", 2), {method: "PUT", path: "secret/metadata/myapp",
				body: `{"max_versions":5,"cas_required":true,"delete_version_after":"1h","custom_metadata":{"owner":"team-a"}}`}}},
		"kv metadata delete": {args: []string{"kv", "metadata", "delete", "secret/myapp"},
			calls: []exchange{mounts("secret/myapp", 2), {method: "DELETE", path: "secret/metadata/myapp"}}},
		"kv on a transit mount is refused": {args: []string{"kv", "get", "transit/keys"}, code: 2,
			calls: []exchange{{method: "GET", path: "sys/internal/ui/mounts/transit/keys", reply: `{"data":{"path":"transit/","type":"transit"}}`}}},

		// policy
		"policy write file": {args: []string{"policy", "write", "app", policyFile},
			calls: []exchange{{method: "PUT", path: "sys/policies/acl/app", body: `{"policy":"path \"secret/data/app\" { capabilities = [\"read\"] }"}`}}},
		"policy write stdin": {args: []string{"policy", "write", "app", "-"}, stdin: `path "x" {}`,
			calls: []exchange{{method: "PUT", path: "sys/policies/acl/app", body: `{"policy":"path \"x\" {}"}`}}},
		"policy write missing file": {args: []string{"policy", "write", "app", "/nonexistent/p.hcl"}, code: 1},
		"policy read": {args: []string{"policy", "read", "app-read"},
			calls: []exchange{{method: "GET", path: "sys/policies/acl/app-read", reply: "@policy-read"}}},
		"policy list": {args: []string{"policy", "list"},
			calls: []exchange{{method: "LIST", path: "sys/policies/acl", reply: "@policy-list"}}},
		"policy delete": {args: []string{"policy", "delete", "app"},
			calls: []exchange{{method: "DELETE", path: "sys/policies/acl/app"}}},

		// token
		"token create": {args: []string{"token", "create", "--policy=app-read", "-policy", "other", "-ttl=1h", "-display-name=app", "-metadata=team=a", "-use-limit=3", "-period=24h"},
			calls: []exchange{{method: "POST", path: "auth/token/create",
				body: `{"policies":["app-read","other"],"ttl":"1h","display_name":"app","meta":{"team":"a"},"num_uses":3,"period":"24h"}`, reply: "@auth-token-create"}}},
		"token create orphan field": {args: []string{"token", "create", "-orphan", "-field=token"},
			calls: []exchange{{method: "POST", path: "auth/token/create-orphan", body: `{}`, reply: "@auth-token-create"}}},
		"token create bad metadata": {args: []string{"token", "create", "--metadata=team"}, code: 2},
		"token lookup self": {args: []string{"token", "lookup"},
			calls: []exchange{{method: "GET", path: "auth/token/lookup-self", reply: "@auth-token-lookup-self"}}},
		"token lookup other": {args: []string{"token", "lookup", "s.other"},
			calls: []exchange{{method: "POST", path: "auth/token/lookup", body: `{"token":"s.other"}`, reply: "@auth-token-lookup-self"}}},
		"token lookup accessor": {args: []string{"token", "lookup", "-accessor", "acc"},
			calls: []exchange{{method: "POST", path: "auth/token/lookup-accessor", body: `{"accessor":"acc"}`, reply: "@auth-token-lookup-self"}}},
		"token lookup accessor needs argument": {args: []string{"token", "lookup", "--accessor"}, code: 2},
		"token renew self": {args: []string{"token", "renew", "-increment=30m"},
			calls: []exchange{{method: "PUT", path: "auth/token/renew-self", body: `{"increment":"30m"}`, reply: "@auth-token-renew-self"}}},
		"token renew other": {args: []string{"token", "renew", "s.other"},
			calls: []exchange{{method: "PUT", path: "auth/token/renew", body: `{"token":"s.other"}`, reply: "@auth-token-renew-self"}}},
		"token revoke self": {args: []string{"token", "revoke", "-self"},
			calls: []exchange{{method: "PUT", path: "auth/token/revoke-self"}}},
		"token revoke token": {args: []string{"token", "revoke", "s.other"},
			calls: []exchange{{method: "PUT", path: "auth/token/revoke", body: `{"token":"s.other"}`}}},
		"token revoke accessor": {args: []string{"token", "revoke", "--accessor", "acc"},
			calls: []exchange{{method: "PUT", path: "auth/token/revoke-accessor", body: `{"accessor":"acc"}`}}},
		"token revoke needs a target": {args: []string{"token", "revoke"}, code: 2},

		// secrets
		"secrets enable kv version 2": {args: []string{"secrets", "enable", "-path=kv2", "-version=2", "kv"},
			calls: []exchange{{method: "POST", path: "sys/mounts/kv2", body: `{"type":"kv","options":{"version":"2"}}`}}},
		"secrets enable kv-v2": {args: []string{"secrets", "enable", "kv-v2"},
			calls: []exchange{{method: "POST", path: "sys/mounts/kv-v2", body: `{"type":"kv","options":{"version":"2"}}`}}},
		"secrets enable with options": {args: []string{"secrets", "enable", "--options=a=b", "--description=keys", "transit"},
			calls: []exchange{{method: "POST", path: "sys/mounts/transit", body: `{"type":"transit","description":"keys","options":{"a":"b"}}`}}},
		"secrets disable": {args: []string{"secrets", "disable", "kv2/"},
			calls: []exchange{{method: "DELETE", path: "sys/mounts/kv2"}}},
		"secrets list": {args: []string{"secrets", "list"},
			calls: []exchange{{method: "GET", path: "sys/mounts", reply: "@sys-mounts"}}},

		// generic
		"read": {args: []string{"read", "secret/data/myapp"},
			calls: []exchange{{method: "GET", path: "secret/data/myapp", reply: "@kv2-read"}}},
		"read field": {args: []string{"read", "-field=data", "secret/data/myapp"},
			calls: []exchange{{method: "GET", path: "secret/data/myapp", reply: "@kv2-read"}}},
		"read json": {args: []string{"read", "-format=json", "secret/data/myapp"},
			calls: []exchange{{method: "GET", path: "secret/data/myapp", reply: "@kv2-read"}}},
		"read missing": {args: []string{"read", "secret/data/none"}, code: 2,
			calls: []exchange{{method: "GET", path: "secret/data/none", status: 404, reply: "@kv2-read-missing"}}},
		"read denied": {args: []string{"read", "secret/data/myapp"}, code: 1,
			calls: []exchange{{method: "GET", path: "secret/data/myapp", status: 403, reply: "@no-token-kv2-read"}}},
		"write without answer": {args: []string{"write", "sys/policies/acl/x", "policy=p"},
			calls: []exchange{{method: "PUT", path: "sys/policies/acl/x", body: `{"policy":"p"}`}}},
		"write with answer": {args: []string{"write", "transit/encrypt/k", "plaintext=aGk="},
			calls: []exchange{{method: "PUT", path: "transit/encrypt/k", body: `{"plaintext":"aGk="}`, reply: `{"data":{"ciphertext":"vault:v1:abc","key_version":1}}`}}},
		"list": {args: []string{"list", "secret/metadata"},
			calls: []exchange{{method: "LIST", path: "secret/metadata/", reply: "@kv2-metadata-list"}}},
		"delete": {args: []string{"delete", "secret/data/myapp"},
			calls: []exchange{{method: "DELETE", path: "secret/data/myapp"}}},

		// usage errors and environment
		"unknown command":    {args: []string{"frobnicate"}, code: 2},
		"unknown subcommand": {args: []string{"kv", "frobnicate"}, code: 2},
		"unknown flag":       {args: []string{"status", "--nope"}, code: 2},
		"bad format":         {args: []string{"status", "-format=yaml"}, code: 2},
		"too many arguments": {args: []string{"read", "a", "b"}, code: 2},
		"vault variables are the fallback": {args: []string{"token", "lookup"}, token: "vault-tok",
			env:   map[string]string{"COFFER_ADDR": "-", "COFFER_TOKEN": "-", "VAULT_ADDR": "$SERVER", "VAULT_TOKEN": "vault-tok"},
			calls: []exchange{{method: "GET", path: "auth/token/lookup-self", reply: "@auth-token-lookup-self"}}},
		"address flag wins": {args: []string{"status", "-address=$SERVER"},
			env:   map[string]string{"COFFER_ADDR": "http://127.0.0.1:1"},
			calls: []exchange{{method: "GET", path: "sys/seal-status", reply: "@sys-seal-status"}}},
		"unreachable server": {args: []string{"status"}, code: 1,
			env: map[string]string{"COFFER_ADDR": "http://127.0.0.1:1"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, tc, t.TempDir())
			if r.code != tc.code {
				t.Errorf("exit code = %d, want %d; stderr: %s", r.code, tc.code, r.stderr)
			}
			checkGolden(t, fmt.Sprintf("$ coffer %s\n--- stdout\n%s--- stderr\n%s--- exit %d\n",
				strings.Join(tc.args, " "), r.stdout, r.stderr, r.code))
		})
	}
}

// encodeRootToken is the server side of generate-root's encoding.
func encodeRootToken(token, otp string) string {
	b := []byte(token)
	for i := range b {
		b[i] ^= otp[i]
	}
	return base64.RawStdEncoding.EncodeToString(b)
}
