package cli

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"
)

// runLease runs "lease ..." (registered under the root by the lead) against
// a fake server answering calls in order.
func runLease(t *testing.T, calls []exchange, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	fs := &fakeServer{t: t, token: "root", calls: calls}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	vars := map[string]string{"COFFER_ADDR": srv.URL, "COFFER_TOKEN": "root"}
	var out, errb bytes.Buffer
	a := &app{env: &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return vars[k] }}}
	a.g.format = "table"
	cmd := a.leaseCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	err := cmd.ExecuteContext(t.Context())
	if fs.next != len(fs.calls) {
		t.Errorf("server saw %d of %d expected requests", fs.next, len(fs.calls))
	}
	return out.String(), errb.String(), ExitCode(err)
}

const leaseID = "database/creds/ro/AbC123"

func TestLeaseCommands(t *testing.T) {
	for name, tc := range map[string]struct {
		args     []string
		calls    []exchange
		code     int
		contains []string
	}{
		"lookup sends the lease id in the body": {
			args: []string{"lookup", leaseID},
			calls: []exchange{{method: "PUT", path: "sys/leases/lookup", body: `{"lease_id":"` + leaseID + `"}`, status: 200,
				reply: `{"data":{"id":"` + leaseID + `","issue_time":"2026-11-28T00:00:00Z","expire_time":"2026-11-28T01:00:00Z","last_renewal":null,"renewable":true,"ttl":3599}}`}},
			contains: []string{"id", leaseID, "ttl", "3599", "renewable", "true", "last_renewal", "n/a"},
		},
		"renew with an increment shows the granted lease": {
			args: []string{"renew", "--increment=1h", leaseID},
			calls: []exchange{{method: "PUT", path: "sys/leases/renew", body: `{"lease_id":"` + leaseID + `","increment":"1h"}`, status: 200,
				reply: `{"lease_id":"` + leaseID + `","lease_duration":1800,"renewable":true,"data":null,"warnings":["TTL capped"]}`}},
			contains: []string{"lease_id", leaseID, "lease_duration", "30m", "lease_renewable", "true"},
		},
		"revoke one lease": {
			args:     []string{"revoke", leaseID},
			calls:    []exchange{{method: "PUT", path: "sys/leases/revoke", body: `{"lease_id":"` + leaseID + `"}`, status: 204}},
			contains: []string{"Success! Revoked lease: " + leaseID},
		},
		"revoke a prefix": {
			args:     []string{"revoke", "--prefix", "database/creds/ro/"},
			calls:    []exchange{{method: "PUT", path: "sys/leases/revoke-prefix/database/creds/ro/", status: 204}},
			contains: []string{"Success! Revoked any leases with prefix: database/creds/ro/"},
		},
		"force-revoke a prefix": {
			args:     []string{"revoke", "--prefix", "--force", "database/creds/ro"},
			calls:    []exchange{{method: "PUT", path: "sys/leases/revoke-force/database/creds/ro", status: 204}},
			contains: []string{"Success! Force revoked any leases with prefix: database/creds/ro"},
		},
		"list a prefix": {
			args:     []string{"list", "database/creds/ro"},
			calls:    []exchange{{method: "LIST", path: "sys/leases/lookup/database/creds/ro/", status: 200, reply: `{"data":{"keys":["AbC123","XyZ789"]}}`}},
			contains: []string{"Keys", "AbC123", "XyZ789"},
		},
		"list of nothing is exit 2": {
			args:  []string{"list", "database/creds/none/"},
			calls: []exchange{{method: "LIST", path: "sys/leases/lookup/database/creds/none/", status: 404, reply: `{"errors":[]}`}},
			code:  2, contains: []string{"No value found at sys/leases/lookup/database/creds/none/"},
		},
		"an invalid lease is the server's error": {
			args:  []string{"lookup", "nope"},
			calls: []exchange{{method: "PUT", path: "sys/leases/lookup", body: `{"lease_id":"nope"}`, status: 400, reply: `{"errors":["invalid lease"]}`}},
			code:  1,
		},
		"--force without --prefix is a usage error": {args: []string{"revoke", "--force", leaseID}, code: 2},
		"lookup needs an argument":                  {args: []string{"lookup"}, code: 2},
	} {
		t.Run(name, func(t *testing.T) {
			out, errOut, code := runLease(t, tc.calls, tc.args...)
			if code != tc.code {
				t.Fatalf("exit code = %d, want %d (stdout %q, stderr %q)", code, tc.code, out, errOut)
			}
			for _, s := range tc.contains {
				if !strings.Contains(out+errOut, s) {
					t.Errorf("output does not contain %q:\n%s%s", s, out, errOut)
				}
			}
		})
	}
}
