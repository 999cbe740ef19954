package server

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/config"
)

func parse(t *testing.T, src string) *config.Config {
	t.Helper()
	c, err := config.Parse("coffer.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRaftSettings(t *testing.T) {
	c := parse(t, `
storage "raft" {
  path = "/data"
  node_id = "a"
  snapshot_threshold = 100
  retry_join { leader_api_addr = "http://b:8200" }
}
listener "tcp" {
  address = "127.0.0.1:8200"
  tls_disable = true
}
raft_snapshots {
  interval = "30m"
  path = "/snaps"
  retain = 3
}`)
	s, err := raftSettingsFromConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	if s.ClusterListen != "127.0.0.1:8201" || s.APIAddr != "http://127.0.0.1:8200" || s.SnapshotThreshold != 100 {
		t.Errorf("defaults: cluster %q, api %q, threshold %d", s.ClusterListen, s.APIAddr, s.SnapshotThreshold)
	}
	if len(s.RetryJoin) != 1 || s.RetryJoin[0].LeaderAPIAddr != "http://b:8200" {
		t.Errorf("retry_join = %+v", s.RetryJoin)
	}
	if s.Snapshots == nil || s.Snapshots.Interval != 30*time.Minute || s.Snapshots.Retain != 3 {
		t.Errorf("raft_snapshots = %+v", s.Snapshots)
	}
}

func TestRaftSettingsBadInput(t *testing.T) {
	listener := "\nlistener \"tcp\" {\n address = \"127.0.0.1:8200\"\n tls_disable = true\n}\n"
	for name, src := range map[string]string{
		"a path is required":                      "storage \"raft\" {\n node_id = \"a\"\n}",
		"unknown settings are refused":            "storage \"raft\" {\n path = \"/d\"\n bogus = \"1\"\n}",
		"numbers must be numbers":                 "storage \"raft\" {\n path = \"/d\"\n trailing_logs = \"many\"\n}",
		"retry_join needs an http(s) address":     "storage \"raft\" {\n path = \"/d\"\n retry_join {\n leader_api_addr = \"b:8200\"\n }\n}",
		"retry_join refuses unknown settings":     "storage \"raft\" {\n path = \"/d\"\n retry_join {\n leader_api_addr = \"http://b\"\n auto_join = \"x\"\n }\n}",
		"a missing CA file is an error":           "storage \"raft\" {\n path = \"/d\"\n retry_join {\n leader_api_addr = \"http://b\"\n leader_ca_cert_file = \"/nonexistent/ca.pem\"\n }\n}",
		"snapshots need a path":                   "storage \"raft\" {\n path = \"/d\"\n}\nraft_snapshots {\n interval = \"1h\"\n}",
		"snapshot intervals are durations":        "storage \"raft\" {\n path = \"/d\"\n}\nraft_snapshots {\n interval = \"often\"\n path = \"/s\"\n}",
		"snapshot retention is at least one file": "storage \"raft\" {\n path = \"/d\"\n}\nraft_snapshots {\n path = \"/s\"\n retain = 0\n}",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := raftSettingsFromConfig(parse(t, src+listener)); err == nil {
				t.Errorf("accepted %q", src)
			}
		})
	}
}

type fakeSnapshotter struct{ data []byte } // a named fake: only the bytes matter here

func (f fakeSnapshotter) Snapshot(_ context.Context, w io.Writer) (int64, error) {
	n, err := w.Write(f.data)
	return int64(n), err
}

func TestWriteSnapshotKeepsTheNewest(t *testing.T) {
	dir := t.TempDir()
	sc := &snapshotSchedule{Interval: time.Hour, Path: dir, Retain: 2}
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 4 {
		if err := writeSnapshot(fakeSnapshotter{[]byte{byte(i)}}, sc, start.Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 2 {
		t.Fatalf("got files %v, want the 2 newest", files)
	}
	last, _ := os.ReadFile(files[1])
	if !bytes.Equal(last, []byte{3}) {
		t.Errorf("newest snapshot holds %v, want [3]", last)
	}
}
