package compat

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"golang.org/x/net/websocket"
)

// cutFile is the name, in each node's raft directory, of the file that
// cuts the node's cluster network (COFFER_TEST_RAFT_CUT_FILE, see
// internal/server/raft_faults.go).
const cutFile = "network-cut"

// startRaftTrio starts three nodes: n1 initialized, n2 and n3 joined and
// unsealed, all three voters, a KV v2 mount at secret/.
func startRaftTrio(t *testing.T) (nodes []*raftNode, procs []*proc, keys []string, root string) {
	t.Helper()
	for _, name := range []string{"n1", "n2", "n3"} {
		nodes = append(nodes, newRaftNode(t, name, ""))
	}
	p1 := nodes[0].start(t)
	keys, root = initUnseal(t, p1)
	waitFor(t, "node 1 active", 20*time.Second, func() bool { l, ok := leaderOf(t, p1); return ok && l.IsSelf })
	if err := p1.client(t, root).Sys().Mount("secret", &vault.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
		t.Fatal(err)
	}
	if status, raw, _ := rawDo(t, "POST", p1.addr+"/v1/sys/storage/raft/autopilot/configuration", root, []byte(`{"server_stabilization_time":"1s","last_contact_threshold":"5s"}`), nil); status != 204 {
		t.Fatalf("autopilot configuration: %d %s", status, raw)
	}
	procs = []*proc{p1}
	for _, n := range nodes[1:] {
		p := n.start(t)
		if status, raw, _ := rawDo(t, "POST", p.addr+"/v1/sys/storage/raft/join", "", []byte(fmt.Sprintf(`{"leader_api_addr":%q}`, p1.addr)), nil); status != 200 {
			t.Fatalf("join %s: %d %s", n.name, status, raw)
		}
		unseal(t, p, keys)
		procs = append(procs, p)
	}
	waitFor(t, "three voters", 60*time.Second, func() bool { n, _ := voters(t, p1, root); return n == 3 })
	for _, p := range procs[1:] {
		waitFor(t, "standby knows the active node", 20*time.Second, func() bool {
			l, ok := leaderOf(t, p)
			return ok && !l.IsSelf && l.LeaderAddress == p1.addr
		})
	}
	return nodes, procs, keys, root
}

// wantEvent reads events from conn until one for dataPath arrives.
func wantEvent(t *testing.T, conn *websocket.Conn, dataPath string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ev, err := nextEvent(t, conn, time.Until(deadline))
		if err != nil {
			t.Fatalf("event for %s: %v", dataPath, err)
		}
		if ev.Data.Event.Metadata["data_path"] == dataPath {
			return
		}
	}
}

// TestRaftHAStandbyEvents: a subscriber connected to a standby receives
// the events of writes made through the active node (and through another
// standby); the standby proxies the subscription to the active node, which
// checks the token.
func TestRaftHAStandbyEvents(t *testing.T) {
	_, procs, _, root := startRaftTrio(t)
	p1, p2, p3 := procs[0], procs[1], procs[2]

	conn := subscribeWS(t, p2, root, "kv-v2/data-write")
	if _, err := p1.client(t, root).KVv2("secret").Put(ctx(t), "ev/one", map[string]any{"v": "EventCanary"}); err != nil {
		t.Fatal(err)
	}
	wantEvent(t, conn, "secret/data/ev/one", 10*time.Second)
	if _, err := p3.client(t, root).KVv2("secret").Put(ctx(t), "ev/two", map[string]any{"v": "EventCanary"}); err != nil {
		t.Fatal(err)
	}
	wantEvent(t, conn, "secret/data/ev/two", 10*time.Second)

	// The active node's refusal comes back through the standby.
	cfg, _ := websocket.NewConfig(strings.Replace(p3.addr, "http", "ws", 1)+"/v1/sys/events/subscribe/kv*?json=true", p3.addr)
	cfg.Header = map[string][]string{"X-Vault-Token": {"not-a-token"}}
	if c, err := websocket.DialConfig(cfg); err == nil {
		c.Close()
		t.Errorf("a standby accepted a subscription with a bad token")
	}
	status, raw, _ := rawDo(t, "GET", p3.addr+"/v1/sys/events/subscribe/kv*", "not-a-token", nil, map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
	if status != 403 {
		t.Errorf("subscription with a bad token through a standby: %d %s, want 403", status, raw)
	}

	// Durable writes/s on the full three-voter cluster, 16 writers over
	// HTTP (docs/performance.md, "Raft").
	rate := writeRate(t, p1.client(t, root), 16, 3*time.Second)
	t.Logf("durable KV v2 writes through the HTTP API, 3 voters, 16 writers: %.0f/s", rate)
}

// TestRaftHAPartitionAndLeaseExpiry cuts the active node's cluster network
// while a writer runs and while a short-TTL token is alive: the cut node
// stops taking writes and says so; the other two elect a new leader; no
// acknowledged write is lost; the new leader revokes the token on time;
// subscribers on the remaining standby reconnect to the new active node;
// once healed, the old leader follows and catches up.
func TestRaftHAPartitionAndLeaseExpiry(t *testing.T) {
	t.Setenv("COFFER_TEST_RAFT_CUT_FILE", cutFile)
	nodes, procs, _, root := startRaftTrio(t)
	p1 := procs[0]
	c1 := p1.client(t, root)

	// A token created on the active node just before the cut.
	const ttl = 8 * time.Second
	sec, err := c1.Auth().Token().Create(&vault.TokenCreateRequest{TTL: ttl.String(), Policies: []string{"default"}})
	if err != nil {
		t.Fatal(err)
	}
	tok := sec.Auth.ClientToken
	expires := time.Now().Add(ttl)
	sum := sha256.Sum256([]byte(tok))
	tokenID := hex.EncodeToString(sum[:])
	// stored reports whether the token's lease and accessor are in node
	// p's storage (LIST of the lease index and of the accessor index).
	stored := func(p *proc) (lease, accessor bool) {
		_, raw, _ := rawDo(t, "LIST", p.addr+"/v1/sys/leases/lookup/auth/token/create/", root, nil, nil)
		lease = strings.Contains(string(raw), tokenID)
		_, raw, _ = rawDo(t, "LIST", p.addr+"/v1/auth/token/accessors", root, nil, nil)
		accessor = strings.Contains(string(raw), sec.Auth.Accessor)
		return lease, accessor
	}
	if l, a := stored(p1); !l || !a {
		t.Fatalf("the token before the cut: lease stored %v, accessor stored %v; want both", l, a)
	}

	// A secret the majority will overwrite after the cut.
	if _, err := c1.KVv2("secret").Put(ctx(t), "stale", map[string]any{"v": "before-cut"}); err != nil {
		t.Fatal(err)
	}

	// A writer on the active node, recording what was acknowledged.
	var (
		mu    sync.Mutex
		acked []string
	)
	stopW := make(chan struct{})
	wdone := make(chan struct{})
	go func() {
		defer close(wdone)
		for i := 0; ; i++ {
			select {
			case <-stopW:
				return
			default:
			}
			key := fmt.Sprintf("acked/%d", i)
			if _, err := c1.KVv2("secret").Put(ctx(t), key, map[string]any{"v": "x"}); err != nil {
				return // the first refusal ends the writer
			}
			mu.Lock()
			acked = append(acked, key)
			mu.Unlock()
		}
	}()
	time.Sleep(500 * time.Millisecond)

	// Cut node 1's cluster network.
	cut := filepath.Join(nodes[0].dir, "raft", cutFile)
	if err := os.WriteFile(cut, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()

	// The minority stops serving writes and says so.
	took := waitFor(t, "the cut node refuses writes", 20*time.Second, func() bool {
		status, _, _ := rawDo(t, "POST", p1.addr+"/v1/secret/data/minority", root, []byte(`{"data":{"v":"x"}}`), nil)
		return status == 503
	})
	t.Logf("the cut node refuses writes %s after the cut", took.Round(time.Millisecond))
	status, raw, _ := rawDo(t, "POST", p1.addr+"/v1/secret/data/refused", root, []byte(`{"data":{"v":"x"}}`), nil)
	if status != 503 || !strings.Contains(string(raw), "no active node") {
		t.Errorf("write on the cut node: %d %s, want 503 saying no active node is known", status, raw)
	}
	if l, ok := leaderOf(t, p1); !ok || l.IsSelf {
		t.Errorf("cut node sys/leader = %+v, %v: want not active", l, ok)
	}
	if status, _, _ := rawDo(t, "GET", p1.addr+"/v1/sys/health", "", nil, nil); status == 200 {
		t.Errorf("cut node sys/health: 200, want a standby or error code")
	}
	close(stopW)
	<-wdone

	// The majority elects a new leader.
	var next, other *proc
	waitFor(t, "a new leader in the majority", 30*time.Second, func() bool {
		for _, p := range procs[1:] {
			if l, ok := leaderOf(t, p); ok && l.IsSelf {
				next = p
				return true
			}
		}
		return false
	})
	elected := time.Since(cutAt)
	t.Logf("new leader %s after the cut", elected.Round(time.Millisecond))
	if !time.Now().Before(expires) {
		t.Fatalf("the new leader was active only after the token expired (%s after the cut): the failover did not happen in the middle of the lease", elected)
	}
	other = procs[1]
	if next == procs[1] {
		other = procs[2]
	}

	// No acknowledged write is lost.
	cn := next.client(t, root)
	mu.Lock()
	keys := append([]string(nil), acked...)
	mu.Unlock()
	if len(keys) == 0 {
		t.Fatalf("the writer had no write acknowledged before the cut")
	}
	for _, k := range keys {
		if s, err := cn.KVv2("secret").Get(ctx(t), k); err != nil || s.Data["v"] != "x" {
			t.Fatalf("acknowledged write %s lost after the partition: %v %v", k, s, err)
		}
	}
	t.Logf("%d acknowledged writes, all on the new leader", len(keys))
	if _, err := cn.KVv2("secret").Put(ctx(t), "majority", map[string]any{"v": "ok"}); err != nil {
		t.Fatalf("write on the new leader: %v", err)
	}

	// The cut node does not serve its stale copy to a client that sends no
	// X-Vault-Index: it has not heard from a leader, so it does not read
	// locally, and it knows no active node to forward to: a retryable 503.
	if _, err := cn.KVv2("secret").Put(ctx(t), "stale", map[string]any{"v": "after-cut"}); err != nil {
		t.Fatalf("overwrite on the new leader: %v", err)
	}
	for _, path := range []string{"stale", "majority"} {
		status, raw, _ := rawDo(t, "GET", p1.addr+"/v1/secret/data/"+path, root, nil, nil)
		if strings.Contains(string(raw), "before-cut") || status != 503 || !strings.Contains(string(raw), "retry") {
			t.Errorf("read of %s on the cut node: %d %s; want 503 asking to retry, never the value from before the cut", path, status, raw)
		}
	}
	if status, raw, _ := rawDo(t, "LIST", p1.addr+"/v1/secret/metadata/", root, nil, nil); status != 503 {
		t.Errorf("list on the cut node: %d %s, want 503", status, raw)
	}
	// The remaining standby, in contact with the new leader, serves the
	// new value.
	waitFor(t, "the other standby serves the overwrite", 10*time.Second, func() bool {
		status, raw, _ := rawDo(t, "GET", other.addr+"/v1/secret/data/stale", root, nil, nil)
		return status == 200 && strings.Contains(string(raw), "after-cut")
	})

	// Subscribers on the remaining standby are served by the new leader.
	waitFor(t, "the other node follows the new leader", 20*time.Second, func() bool {
		l, ok := leaderOf(t, other)
		return ok && !l.IsSelf && l.LeaderAddress == next.addr
	})
	conn := subscribeWS(t, other, root, "kv-v2/data-write")
	if _, err := cn.KVv2("secret").Put(ctx(t), "ev/after", map[string]any{"v": "ok"}); err != nil {
		t.Fatal(err)
	}
	wantEvent(t, conn, "secret/data/ev/after", 10*time.Second)

	// The token created before the cut is revoked on time by the new
	// leader: lookup fails and its lease is gone from storage.
	time.Sleep(time.Until(expires))
	late := waitFor(t, "the token revoked by the new leader", 15*time.Second, func() bool {
		l, a := stored(next)
		return !l && !a
	})
	t.Logf("token lease revoked %s after its expiry", late.Round(time.Millisecond))
	if _, err := cn.Auth().Token().Lookup(tok); err == nil {
		t.Errorf("lookup of the expired token on the new leader succeeded")
	}
	if _, err := cn.Auth().Token().LookupAccessor(sec.Auth.Accessor); err == nil {
		t.Errorf("the expired token's entry is still in storage (lookup-accessor succeeded)")
	}

	// Heal: the old leader follows the new one and catches up.
	if err := os.Remove(cut); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the healed node follows the new leader", 30*time.Second, func() bool {
		l, ok := leaderOf(t, p1)
		return ok && !l.IsSelf && l.LeaderAddress == next.addr
	})
	waitFor(t, "the healed node catches up", 30*time.Second, func() bool {
		s, err := c1.KVv2("secret").Get(ctx(t), "majority")
		return err == nil && s.Data["v"] == "ok"
	})
	if s, err := c1.KVv2("secret").Get(ctx(t), "refused"); err == nil && s != nil {
		t.Errorf("a write refused by the cut node exists: %v", s.Data)
	}
}
