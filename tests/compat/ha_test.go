package compat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// raftNode is one coffer process of a raft cluster; its addresses stay the
// same across restarts.
type raftNode struct {
	name, dir, api, cluster string
	extra                   string
	p                       *proc
}

func newRaftNode(t *testing.T, name, extra string) *raftNode {
	return &raftNode{name: name, dir: t.TempDir(), api: freeAddr(t), cluster: freeAddr(t), extra: extra}
}

func (n *raftNode) start(t *testing.T) *proc {
	t.Helper()
	cfg := fmt.Sprintf(`
storage "raft" {
  path    = %q
  node_id = %q
  performance_multiplier = 1
%s
}
listener "tcp" {
  address         = %q
  cluster_address = %q
  tls_disable     = true
}
api_addr     = "http://%s"
cluster_addr = "https://%s"
log_level    = "warn"
`, filepath.Join(n.dir, "raft"), n.name, n.extra, n.api, n.cluster, n.api, n.cluster)
	path := filepath.Join(n.dir, "coffer.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	n.p = startProc(t, n.dir, n.api, "server", "--config", path)
	return n.p
}

// rawDo sends one request and returns the status, body and headers.
func rawDo(t *testing.T, method, url, token string, body []byte, hdr map[string]string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
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
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, resp.Header
}

type leaderJSON struct {
	HAEnabled        bool   `json:"ha_enabled"`
	IsSelf           bool   `json:"is_self"`
	LeaderAddress    string `json:"leader_address"`
	LeaderClusterAdd string `json:"leader_cluster_address"`
	AppliedIndex     uint64 `json:"raft_applied_index"`
}

func leaderOf(t *testing.T, p *proc) (leaderJSON, bool) {
	resp, err := http.Get(p.addr + "/v1/sys/leader")
	if err != nil {
		return leaderJSON{}, false
	}
	defer resp.Body.Close()
	var l leaderJSON
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&l) != nil {
		return leaderJSON{}, false
	}
	return l, true
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

type raftConfigJSON struct {
	Data struct {
		Config struct {
			Servers []struct {
				NodeID string `json:"node_id"`
				Leader bool   `json:"leader"`
				Voter  bool   `json:"voter"`
			} `json:"servers"`
		} `json:"config"`
	} `json:"data"`
}

func voters(t *testing.T, p *proc, token string) (n int, leader string) {
	status, raw, _ := rawDo(t, "GET", p.addr+"/v1/sys/storage/raft/configuration", token, nil, nil)
	if status != 200 {
		return 0, ""
	}
	var cfg raftConfigJSON
	json.Unmarshal(raw, &cfg)
	for _, s := range cfg.Data.Config.Servers {
		if s.Voter {
			n++
		}
		if s.Leader {
			leader = s.NodeID
		}
	}
	return n, leader
}

func TestRaftHACluster(t *testing.T) {
	n1 := newRaftNode(t, "n1", "")
	n2 := newRaftNode(t, "n2", "")
	n3 := newRaftNode(t, "n3", "")
	n3.extra = fmt.Sprintf("  retry_join {\n    leader_api_addr = \"http://%s\"\n  }", n1.api)

	// Node 1: init bootstraps the cluster.
	p1 := n1.start(t)
	keys, root := initUnseal(t, p1)
	waitFor(t, "node 1 active", 20*time.Second, func() bool { l, ok := leaderOf(t, p1); return ok && l.HAEnabled && l.IsSelf })
	c1 := p1.client(t, root)
	if err := c1.Sys().Mount("secret", &vault.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
		t.Fatal(err)
	}
	// Promote quickly (autopilot configuration, Vault's shape).
	if status, raw, _ := rawDo(t, "POST", p1.addr+"/v1/sys/storage/raft/autopilot/configuration", root, []byte(`{"server_stabilization_time":"1s","last_contact_threshold":"5s"}`), nil); status != 204 {
		t.Fatalf("autopilot configuration: %d %s", status, raw)
	}
	if status, raw, _ := rawDo(t, "POST", p1.addr+"/v1/sys/storage/raft/autopilot/configuration", root, []byte(`{"min_quorum":-1}`), nil); status != 400 {
		t.Errorf("negative min_quorum: got %d %s, want 400", status, raw)
	}

	// Node 2 joins through the API, node 3 through retry_join; both are
	// then unsealed with the cluster's keys.
	p2 := n2.start(t)
	if status, raw, _ := rawDo(t, "POST", p2.addr+"/v1/sys/storage/raft/join", "", []byte(`{"leader_api_addr":"ftp://nowhere"}`), nil); status != 400 {
		t.Errorf("join with a bad address: got %d %s, want 400", status, raw)
	}
	if status, raw, _ := rawDo(t, "POST", p1.addr+"/v1/sys/storage/raft/bootstrap/answer", "", []byte(`{"server_id":"evil","answer":"AAAA","cluster_addr":"127.0.0.1:1"}`), nil); status != 403 {
		t.Errorf("a made-up answer: got %d %s, want 403", status, raw)
	}
	if status, raw, _ := rawDo(t, "POST", p2.addr+"/v1/sys/storage/raft/join", "", []byte(fmt.Sprintf(`{"leader_api_addr":%q}`, p1.addr)), nil); status != 200 {
		t.Fatalf("join: %d %s", status, raw)
	}
	st, err := p2.client(t, "").Sys().SealStatus()
	if err != nil || !st.Initialized || !st.Sealed || st.T != 3 {
		t.Fatalf("joining node's seal status = %+v, %v; want initialized, sealed, t=3", st, err)
	}
	unseal(t, p2, keys)
	p3 := n3.start(t)
	waitFor(t, "node 3 joining through retry_join", 30*time.Second, func() bool {
		st, err := p3.client(t, "").Sys().SealStatus()
		return err == nil && st.Initialized
	})
	unseal(t, p3, keys)
	took := waitFor(t, "three voters", 60*time.Second, func() bool { n, _ := voters(t, p1, root); return n == 3 })
	t.Logf("three voters %s after the last unseal", took.Round(time.Millisecond))

	// The CLI lists the peers.
	out, err := raftCLI(p2, root, "operator", "raft", "list-peers")
	if err != nil || !strings.Contains(out, "n1") || !strings.Contains(out, "n3") || !strings.Contains(out, "leader") {
		t.Errorf("coffer operator raft list-peers: %v\n%s", err, out)
	}
	if out, err := raftCLI(p1, root, "operator", "raft", "remove-peer", "no-such-node"); err == nil {
		t.Errorf("remove-peer of an unknown node succeeded:\n%s", out)
	}

	// 50 writes through the leader.
	for i := range 50 {
		if _, err := c1.KVv2("secret").Put(ctx(t), fmt.Sprintf("k%d", i), map[string]any{"v": fmt.Sprint(i)}); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	// A standby serves a read; with the index of a write it waits for it.
	status, raw, hdr := rawDo(t, "POST", p1.addr+"/v1/secret/data/ryw", root, []byte(`{"data":{"v":"fresh"}}`), nil)
	if status != 200 || hdr.Get("X-Vault-Index") == "" {
		t.Fatalf("write on the leader: %d %s, X-Vault-Index %q", status, raw, hdr.Get("X-Vault-Index"))
	}
	status, raw, _ = rawDo(t, "GET", p2.addr+"/v1/secret/data/ryw", root, nil, map[string]string{"X-Vault-Index": hdr.Get("X-Vault-Index")})
	if status != 200 || !strings.Contains(string(raw), "fresh") {
		t.Fatalf("read-your-write on a standby: %d %s", status, raw)
	}
	if l, _ := leaderOf(t, p2); l.IsSelf || l.LeaderAddress != p1.addr {
		t.Errorf("node 2 sys/leader = %+v, want a standby naming %s", l, p1.addr)
	}
	if status, _, _ := rawDo(t, "GET", p2.addr+"/v1/sys/health", "", nil, nil); status != 429 {
		t.Errorf("standby health: %d, want 429", status)
	}
	if status, raw, _ := rawDo(t, "GET", p2.addr+"/v1/sys/health?standbyok=true", "", nil, nil); status != 200 || !strings.Contains(string(raw), `"standby":true`) {
		t.Errorf("standby health?standbyok=true: %d %s", status, raw)
	}
	c2 := p2.client(t, root)
	if s, err := c2.KVv2("secret").Get(ctx(t), "k49"); err != nil || s.Data["v"] != "49" {
		t.Fatalf("standby read: %v %v", s, err)
	}
	// A write through a standby is forwarded.
	if _, err := p3.client(t, root).KVv2("secret").Put(ctx(t), "via-standby", map[string]any{"v": "ok"}); err != nil {
		t.Fatalf("write through a standby: %v", err)
	}
	if s, err := c1.KVv2("secret").Get(ctx(t), "via-standby"); err != nil || s.Data["v"] != "ok" {
		t.Fatalf("forwarded write not on the leader: %v %v", s, err)
	}

	// A snapshot.
	status, snap, _ := rawDo(t, "GET", p2.addr+"/v1/sys/storage/raft/snapshot", root, nil, nil)
	if status != 200 || len(snap) < 1024 {
		t.Fatalf("snapshot: %d, %d bytes", status, len(snap))
	}
	snapFile := filepath.Join(t.TempDir(), "cluster.snap")
	if out, err := raftCLI(p3, root, "operator", "raft", "snapshot", "save", snapFile); err != nil {
		t.Errorf("coffer operator raft snapshot save: %v\n%s", err, out)
	} else if fi, err := os.Stat(snapFile); err != nil || fi.Size() < 1024 {
		t.Errorf("CLI snapshot file: %v %v", fi, err)
	}
	if status, _, _ := rawDo(t, "GET", p2.addr+"/v1/sys/storage/raft/snapshot", "", nil, nil); status != 403 {
		t.Errorf("snapshot without a token: %d, want 403", status)
	}

	// SIGKILL the leader: a new one within seconds, nothing lost.
	p1.kill()
	var next, other *proc
	took = waitFor(t, "a new leader", 30*time.Second, func() bool {
		for _, p := range []*proc{p2, p3} {
			if l, ok := leaderOf(t, p); ok && l.IsSelf {
				next = p
				return true
			}
		}
		return false
	})
	other = p2
	if next == p2 {
		other = p3
	}
	t.Logf("new leader %s after SIGKILL of the old one", took.Round(time.Millisecond))
	// The new active node uses the autopilot configuration set on the old
	// one (stored through raft), and a standby answers with it too.
	for _, p := range []*proc{next, other} {
		waitFor(t, "the autopilot configuration after failover", 10*time.Second, func() bool {
			status, raw, _ := rawDo(t, "GET", p.addr+"/v1/sys/storage/raft/autopilot/configuration", root, nil, nil)
			return status == 200 && strings.Contains(string(raw), `"server_stabilization_time":"1s"`) && strings.Contains(string(raw), `"last_contact_threshold":"5s"`)
		})
	}
	cn := next.client(t, root)
	for i := range 50 {
		s, err := cn.KVv2("secret").Get(ctx(t), fmt.Sprintf("k%d", i))
		if err != nil || s.Data["v"] != fmt.Sprint(i) {
			t.Fatalf("acknowledged write k%d after failover: %v %v", i, s, err)
		}
	}
	if _, err := cn.KVv2("secret").Put(ctx(t), "after", map[string]any{"v": "failover"}); err != nil {
		t.Fatalf("write after failover: %v", err)
	}
	waitFor(t, "the other node forwards to the new leader", 20*time.Second, func() bool {
		_, err := other.client(t, root).KVv2("secret").Put(ctx(t), "after2", map[string]any{"v": "forwarded"})
		return err == nil
	})

	// Durable writes/s with 16 writers for 3 s on the surviving two-voter
	// quorum (every write fsynced on a majority).
	rate := writeRate(t, cn, 16, 3*time.Second)
	t.Logf("durable KV v2 writes through the HTTP API on the raft cluster: %.0f/s", rate)

	// The old leader restarts, rejoins and catches up.
	// Its local store is rebuilt from raft: it knows it is initialized once
	// the leader has sent it the committed log.
	p1 = n1.start(t)
	waitFor(t, "restarted node catches up with the log", 30*time.Second, func() bool {
		st, err := p1.client(t, "").Sys().SealStatus()
		return err == nil && st.Initialized
	})
	unseal(t, p1, keys)
	waitFor(t, "old leader catches up", 30*time.Second, func() bool {
		s, err := p1.client(t, root).KVv2("secret").Get(ctx(t), "after2")
		return err == nil && s.Data["v"] == "forwarded"
	})
	if l, _ := leaderOf(t, p1); l.IsSelf {
		t.Errorf("restarted old leader claims to be active")
	}
	if n, _ := voters(t, next, root); n != 3 {
		t.Errorf("voters after the old leader rejoined = %d, want 3", n)
	}

	// Restore the snapshot into a fresh single node.
	n4 := newRaftNode(t, "n4", "")
	p4 := n4.start(t)
	keys4, root4 := initUnseal(t, p4)
	waitFor(t, "node 4 active", 20*time.Second, func() bool { l, ok := leaderOf(t, p4); return ok && l.IsSelf })
	if status, raw, _ := rawDo(t, "POST", p4.addr+"/v1/sys/storage/raft/snapshot-force", root4, []byte("not a snapshot"), nil); status != 400 {
		t.Errorf("restore of garbage: %d %s, want 400", status, raw)
	}
	unseal(t, p4, keys4) // a failed restore keeps the data but seals
	waitFor(t, "node 4 active again", 20*time.Second, func() bool { l, ok := leaderOf(t, p4); return ok && l.IsSelf })
	if status, raw, _ := rawDo(t, "POST", p4.addr+"/v1/sys/storage/raft/snapshot-force", root4, snap, nil); status != 204 {
		t.Fatalf("restore: %d %s", status, raw)
	}
	unseal(t, p4, keys)
	c4 := p4.client(t, root)
	waitFor(t, "restored node active", 20*time.Second, func() bool { l, ok := leaderOf(t, p4); return ok && l.IsSelf })
	for i := range 50 {
		s, err := c4.KVv2("secret").Get(ctx(t), fmt.Sprintf("k%d", i))
		if err != nil || s.Data["v"] != fmt.Sprint(i) {
			t.Fatalf("k%d after restore: %v %v", i, s, err)
		}
	}
	if _, err := c4.KVv2("secret").Put(ctx(t), "on-restored", map[string]any{"v": "1"}); err != nil {
		t.Fatalf("write on the restored node: %v", err)
	}
}

// raftCLI runs the coffer CLI against p.
func raftCLI(p *proc, token string, args ...string) (string, error) {
	cmd := exec.Command(cofferBin, args...)
	cmd.Env = append(os.Environ(), "COFFER_ADDR="+p.addr, "COFFER_TOKEN="+token)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// writeRate runs writers concurrent KV v2 writers for d and returns the
// acknowledged writes per second.
func writeRate(t *testing.T, c *vault.Client, writers int, d time.Duration) float64 {
	t.Helper()
	var n atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				if _, err := c.KVv2("secret").Put(ctx(t), fmt.Sprintf("bench/%d/%d", w, i%64), map[string]any{"v": "x"}); err != nil {
					t.Errorf("bench write: %v", err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds()
}
