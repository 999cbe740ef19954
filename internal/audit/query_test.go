package audit

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func TestQuery(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "a.log")
	day := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := &clock{t: day.Add(-48 * time.Hour)}
	b := newBroker(t, Config{AllowedDirs: []string{dir}, Now: clk.now})
	enableFile(t, b, "file", path, "hmac_accessor", "false")

	logPair := func(in *Input, resp *logical.Response, err error) {
		t.Helper()
		if e := b.LogRequest(ctx, in); e != nil {
			t.Fatal(e)
		}
		if e := b.LogResponse(ctx, in, resp, err); e != nil {
			t.Fatal(e)
		}
	}
	logPair(request("old", logical.ReadOperation, "secret/data/db", ""), &logical.Response{Data: map[string]any{"v": "s"}}, nil)
	clk.set(day)
	logPair(request("ok", logical.ReadOperation, "secret/data/db", ""), &logical.Response{Data: map[string]any{"v": "s"}}, nil)
	denied := request("denied", logical.ReadOperation, "secret/data/db", "")
	denied.Caller.DisplayName = "token-bob"
	denied.Err = logical.ErrPermissionDenied
	if err := b.LogRequest(ctx, denied); err != nil {
		t.Fatal(err)
	}
	logPair(request("write", logical.UpdateOperation, "secret/data/db", `{"v":"x"}`), nil, nil)
	logPair(request("other", logical.ReadOperation, "secret/data/other", ""), nil, nil)
	pending := request("pending", logical.ReadOperation, "secret/data/db", "")
	if err := b.LogRequest(ctx, pending); err != nil {
		t.Fatal(err)
	}
	closeBroker(t, b)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	ids := func(rs []Record) string {
		var s []string
		for _, r := range rs {
			s = append(s, r.RequestID+"="+r.Outcome)
		}
		return strings.Join(s, ",")
	}
	for name, tc := range map[string]struct {
		f    Filter
		want string
	}{
		"reads of one path in the last day": {Filter{Path: "secret/data/db", Operation: "read", Since: day.Add(-24 * time.Hour)}, "ok=ok,denied=error: permission denied,pending=no response"},
		"every operation on the path":       {Filter{Path: "secret/data/db"}, "old=ok,ok=ok,denied=error: permission denied,write=ok,pending=no response"},
		"a prefix":                          {Filter{Path: "secret/data/o*"}, "other=ok"},
		"writes only":                       {Filter{Operation: "update"}, "write=ok"},
		"nothing matches":                   {Filter{Path: "secret/data/none"}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := Query(bytes.NewReader(raw), tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if ids(got) != tc.want {
				t.Errorf("Query = %s, want %s", ids(got), tc.want)
			}
		})
	}
	got, _ := Query(bytes.NewReader(raw), Filter{Path: "secret/data/db", Since: day})
	r := got[0]
	if r.DisplayName != "kubernetes-payments-api" || r.Accessor != "acc-ok" || r.Metadata["service_account_name"] != "api" ||
		r.RemoteAddress != "10.0.0.7" || !r.Time.Equal(day) || r.Operation != "read" {
		t.Errorf("record = %+v", r)
	}
	if _, err := Query(strings.NewReader("not json\n"), Filter{}); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("Query(garbage) = %v, want an error naming line 1", err)
	}
	if got, err := Query(bytes.NewReader(append(raw, `{"type":"requ`...)), Filter{}); err != nil || len(got) != 6 {
		t.Errorf("Query with a torn last line = %d records, %v; want 6, nil", len(got), err)
	}
}
