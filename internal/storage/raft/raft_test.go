package raft

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/coffer-dev/coffer/internal/storage"
	"github.com/coffer-dev/coffer/internal/storage/bolt"
	"github.com/coffer-dev/coffer/internal/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		c := newCluster(t, 3)
		return c.leader().b
	})
}

func TestReplication(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.leader()
	select {
	case v := <-leader.b.LeaderCh():
		if !v {
			t.Errorf("LeaderCh on the leader delivered false")
		}
	case <-time.After(5 * time.Second):
		t.Errorf("LeaderCh on the leader delivered nothing")
	}
	for i := range 50 {
		mustApply(t, leader.b, put(fmt.Sprintf("k/%02d", i), fmt.Appendf(nil, "v%d", i)))
	}
	idx := leader.b.AppliedIndex()
	for _, f := range c.followers(leader) {
		waitIndex(t, f.b, idx)
		for i := range 50 {
			wantValue(t, f.b, fmt.Sprintf("k/%02d", i), fmt.Sprintf("v%d", i))
		}
		err := f.b.Apply(context.Background(), []storage.Op{put("x", nil)})
		var nl *NotLeaderError
		if !errors.As(err, &nl) || !errors.Is(err, ErrNotLeader) || nl.LeaderAddr != leader.addr || nl.LeaderID != leader.id {
			t.Errorf("Apply on follower %s = %v, want NotLeaderError naming %s at %s", f.id, err, leader.id, leader.addr)
		}
	}
	wantMissing(t, leader.b, "x")

	cfg, err := c.nodes[1].b.Configuration()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Servers) != 3 {
		t.Fatalf("Configuration = %+v, want 3 servers", cfg)
	}
	for _, s := range cfg.Servers {
		if !s.Voter || s.Leader != (s.NodeID == leader.id) || s.ProtocolVersion != "3" {
			t.Errorf("Configuration server %+v: want a voter, leader only for %s, protocol 3", s, leader.id)
		}
	}
	st, err := leader.b.AutopilotState()
	if err != nil {
		t.Fatal(err)
	}
	if !st.Healthy || st.FailureTolerance != 1 || st.Leader != leader.id || len(st.Voters) != 3 {
		t.Errorf("AutopilotState = %+v, want healthy, tolerance 1, 3 voters", st)
	}
	for id, s := range st.Servers {
		if want := map[bool]string{true: "leader", false: "voter"}[id == leader.id]; s.Status != want || !s.Healthy || s.LastIndex == 0 {
			t.Errorf("AutopilotState server %s = %+v, want healthy %s with an index", id, s, want)
		}
	}
	if _, err := c.followers(leader)[0].b.AutopilotState(); !errors.Is(err, ErrNotLeader) {
		t.Errorf("AutopilotState on a follower = %v, want ErrNotLeader", err)
	}

	// Remove a follower: the configuration shrinks and it gets no writes.
	gone := c.followers(leader)[0]
	if err := leader.b.RemovePeer(context.Background(), gone.id); err != nil {
		t.Fatalf("RemovePeer = %v", err)
	}
	if err := leader.b.RemovePeer(context.Background(), "nobody"); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("RemovePeer(nobody) = %v, want ErrUnknownPeer", err)
	}
	mustApply(t, leader.b, put("after-remove", []byte("v")))
	if cfg, _ := leader.b.Configuration(); len(cfg.Servers) != 2 {
		t.Errorf("Configuration after RemovePeer = %+v, want 2 servers", cfg)
	}
	time.Sleep(3 * testTick)
	wantMissing(t, gone.b, "after-remove")
}

func TestLeaderFailover(t *testing.T) {
	c := newCluster(t, 3)
	old := c.leader()

	// Acknowledged writes from 8 concurrent writers.
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 10 {
				k := fmt.Sprintf("w/%d/%d", w, i)
				if err := old.b.Apply(context.Background(), []storage.Op{put(k, []byte(k))}); err != nil {
					t.Errorf("Apply(%s) = %v", k, err)
					return
				}
				mu.Lock()
				acked = append(acked, k)
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	// Kill the leader without leaving.
	if err := old.b.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	start := time.Now()
	leader := c.leader()
	// A new leader serves reads once it has applied its predecessors'
	// entries, which LeaderCh announces.
	select {
	case v := <-leader.b.LeaderCh():
		if !v {
			t.Fatal("LeaderCh on the new leader delivered false")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("LeaderCh on the new leader delivered nothing")
	}
	t.Logf("new leader %s active after %v", leader.id, time.Since(start))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("new leader after %v, want within 5s", d)
	}
	for _, k := range acked {
		wantValue(t, leader.b, k, k)
	}
	mustApply(t, leader.b, put("after-failover", []byte("new")))

	// The old leader restarts from its data directory and catches up.
	c.open(old, false)
	waitIndex(t, old.b, leader.b.AppliedIndex())
	for _, k := range acked {
		wantValue(t, old.b, k, k)
	}
	wantValue(t, old.b, "after-failover", "new")
	if old.b.IsLeader() {
		t.Errorf("restarted node took over an existing leadership")
	}
}

func TestMinorityCannotCommit(t *testing.T) {
	c := newCluster(t, 3)
	old := c.leader()
	mustApply(t, old.b, put("before", []byte("v")))

	old.faults.setCut(true)
	start := time.Now()
	err := old.b.Apply(context.Background(), []storage.Op{put("lost", []byte("v"))})
	if !errors.Is(err, ErrLeadershipLost) && !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Apply on a cut-off leader = %v, want ErrLeadershipLost or ErrNotLeader", err)
	}
	t.Logf("cut-off leader failed the write after %v: %v", time.Since(start), err)
	waitFor(t, 5*time.Second, "the cut-off node to step down", func() bool { return !old.b.IsLeader() })
	if err := old.b.Apply(context.Background(), []storage.Op{put("lost2", []byte("v"))}); !errors.Is(err, ErrNotLeader) {
		t.Errorf("Apply on a cut-off follower = %v, want ErrNotLeader", err)
	}

	// The majority elects a leader and accepts writes.
	leader := c.leader()
	if leader == old {
		t.Fatal("the cut-off node is still leader")
	}
	mustApply(t, leader.b, put("majority", []byte("v")))

	// Healed, the old leader follows and drops its uncommitted entry.
	old.faults.setCut(false)
	waitIndex(t, old.b, leader.b.AppliedIndex())
	wantValue(t, old.b, "majority", "v")
	wantValue(t, old.b, "before", "v")
	for _, nd := range c.nodes {
		wantMissing(t, nd.b, "lost")
	}
}

func TestWipedNodeRejoins(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.leader()
	for i := range 20 {
		mustApply(t, leader.b, put(fmt.Sprintf("k%d", i), []byte("v")))
	}
	// Compact the leader's log so that the wiped node needs a snapshot.
	if err := leader.b.raft.Snapshot().Error(); err != nil {
		t.Fatalf("raft snapshot: %v", err)
	}
	f := c.followers(leader)[0]
	if err := f.b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(f.dir); err != nil {
		t.Fatal(err)
	}
	mustApply(t, leader.b, put("while-away", []byte("v")))
	c.open(f, false)
	waitIndex(t, f.b, leader.b.AppliedIndex())
	for i := range 20 {
		wantValue(t, f.b, fmt.Sprintf("k%d", i), "v")
	}
	wantValue(t, f.b, "while-away", "v")
	mustApply(t, leader.b, put("after-rejoin", []byte("v")))
	waitIndex(t, f.b, leader.b.AppliedIndex())
	wantValue(t, f.b, "after-rejoin", "v")
}

func TestSnapshotRestore(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.leader()
	for i := range 30 {
		mustApply(t, leader.b, put(fmt.Sprintf("s/%02d", i), fmt.Appendf(nil, "v%d", i)))
	}
	// A follower's snapshot holds what it has applied.
	waitIndex(t, c.followers(leader)[0].b, leader.b.AppliedIndex())
	var snap bytes.Buffer
	n, err := c.followers(leader)[0].b.Snapshot(context.Background(), &snap)
	if err != nil || n != int64(snap.Len()) {
		t.Fatalf("Snapshot on a follower = %d, %v; wrote %d", n, err, snap.Len())
	}
	mustApply(t, leader.b, put("s/after", []byte("x")))

	// Restore into a fresh single node.
	fresh := &testCluster{t: t, ca: newCA(t)}
	nd := fresh.addNode("fresh")
	fresh.open(nd, true)
	fresh.leader()
	mustApply(t, nd.b, put("s/00", []byte("old")), put("only-fresh", []byte("x")))
	before := nd.b.AppliedIndex()

	if err := nd.b.Restore(context.Background(), bytes.NewReader([]byte("not a snapshot"))); !errors.Is(err, bolt.ErrCorrupt) {
		t.Errorf("Restore(garbage) = %v, want ErrCorrupt", err)
	}
	bad := bytes.Clone(snap.Bytes())
	bad = bad[:len(bad)/2]
	if err := nd.b.Restore(context.Background(), bytes.NewReader(bad)); !errors.Is(err, bolt.ErrCorrupt) {
		t.Errorf("Restore(truncated) = %v, want ErrCorrupt", err)
	}
	wantValue(t, nd.b, "only-fresh", "x")

	if err := nd.b.Restore(context.Background(), bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatalf("Restore = %v", err)
	}
	if nd.b.AppliedIndex() <= before {
		t.Errorf("AppliedIndex after Restore = %d, want above %d", nd.b.AppliedIndex(), before)
	}
	for i := range 30 {
		wantValue(t, nd.b, fmt.Sprintf("s/%02d", i), fmt.Sprintf("v%d", i))
	}
	wantMissing(t, nd.b, "s/after")
	wantMissing(t, nd.b, "only-fresh")
	mustApply(t, nd.b, put("post-restore", []byte("y")))
	wantValue(t, nd.b, "post-restore", "y")

	// Restarted, the node comes back with the restored data.
	nd.b.Close()
	fresh.open(nd, true)
	fresh.leader()
	waitFor(t, 5*time.Second, "replay after restart", func() bool {
		v, err := nd.b.Get(context.Background(), "post-restore")
		return err == nil && string(v) == "y"
	})
	wantValue(t, nd.b, "s/05", "v5")

	// Restore runs on the leader only.
	if err := c.followers(leader)[0].b.Restore(context.Background(), bytes.NewReader(snap.Bytes())); !errors.Is(err, ErrNotLeader) {
		t.Errorf("Restore on a follower = %v, want ErrNotLeader", err)
	}
}

func TestRestoreFromBoltBackup(t *testing.T) {
	bb, err := bolt.Open(bolt.Config{Path: t.TempDir() + "/coffer.db", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bb.Close()
	mustApply(t, bb, put("from-bolt", []byte("v")))
	var buf bytes.Buffer
	if _, err := bb.Snapshot(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, ca: newCA(t)}
	nd := c.addNode("n")
	c.open(nd, true)
	c.leader()
	if err := nd.b.Restore(context.Background(), &buf); err != nil {
		t.Fatalf("Restore(bolt backup) = %v", err)
	}
	wantValue(t, nd.b, "from-bolt", "v")
}

func TestForeignCertificateCannotJoin(t *testing.T) {
	c := newCluster(t, 1)
	leader := c.leader()
	mustApply(t, leader.b, put("secret", []byte("v")))

	other := newCA(t)
	intruder := &testNode{id: "intruder", dir: t.TempDir(), tls: nodeTLS(t, other, "intruder"), faults: &faults{}}
	c.open(intruder, false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := leader.b.Join(ctx, intruder.id, intruder.addr, true)
	if err == nil {
		t.Fatal("Join of a node with a certificate from another CA succeeded")
	}
	t.Logf("Join(intruder) = %v", err)
	cfg, _ := leader.b.Configuration()
	if len(cfg.Servers) != 1 {
		t.Errorf("Configuration after a refused join = %+v, want only the leader", cfg)
	}
	// Even if added by mistake, its traffic is refused in both directions.
	if err := leader.b.raft.AddNonvoter("intruder", hraft.ServerAddress(intruder.addr), 0, 0).Error(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * testTick)
	wantMissing(t, intruder.b, "secret")
	if intruder.b.AppliedIndex() != 0 {
		t.Errorf("intruder applied index %d, want 0", intruder.b.AppliedIndex())
	}
}

func TestOpenValidates(t *testing.T) {
	ca := newCA(t)
	good := nodeTLS(t, ca, "n")
	for name, cfg := range map[string]Config{
		"path is required":         {NodeID: "n", ClusterAddr: "127.0.0.1:0", TLS: good},
		"node ID is required":      {Path: t.TempDir(), ClusterAddr: "127.0.0.1:0", TLS: good},
		"cluster addr is required": {Path: t.TempDir(), NodeID: "n", TLS: good},
		"TLS is required":          {Path: t.TempDir(), NodeID: "n", ClusterAddr: "127.0.0.1:0"},
		"TLS needs a client CA":    {Path: t.TempDir(), NodeID: "n", ClusterAddr: "127.0.0.1:0", TLS: &tls.Config{Certificates: good.Certificates, RootCAs: good.RootCAs}},
		"multiplier over 10":       {Path: t.TempDir(), NodeID: "n", ClusterAddr: "127.0.0.1:0", TLS: good, PerformanceMultiplier: 11},
		"bad listen address":       {Path: t.TempDir(), NodeID: "n", ClusterAddr: "256.0.0.1:x", TLS: good},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := Open(cfg)
			if err == nil {
				b.Close()
				t.Fatal("Open succeeded, want an error")
			}
		})
	}
}

func TestApplyRejectsBadOps(t *testing.T) {
	c := newCluster(t, 1)
	b := c.leader().b
	for name, ops := range map[string][]storage.Op{
		"empty key":    {put("", []byte("v"))},
		"huge key":     {put(string(make([]byte, 40000)), nil)},
		"huge request": {put("a", make([]byte, maxRequestBytes)), put("b", []byte("x"))},
	} {
		t.Run(name, func(t *testing.T) {
			if err := b.Apply(context.Background(), ops); !errors.Is(err, ErrInvalidOp) {
				t.Errorf("Apply = %v, want ErrInvalidOp", err)
			}
		})
	}
	wantMissing(t, b, "b")
}

// TestInContact: followers that hear from the leader may serve local reads;
// the leader, and a follower cut off for longer than ReadBound, may not.
func TestInContact(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.leader()
	if leader.b.InContact() {
		t.Errorf("the leader says InContact")
	}
	var follower *testNode
	for _, nd := range c.nodes {
		if nd != leader {
			follower = nd
		}
	}
	waitFor(t, 5*time.Second, "a follower in contact", follower.b.InContact)
	follower.faults.setCut(true)
	start := time.Now()
	waitFor(t, 10*time.Second, "the cut follower out of contact", func() bool { return !follower.b.InContact() })
	if took := time.Since(start); took > follower.b.ReadBound()+2*time.Second {
		t.Errorf("out of contact %v after the cut, want about ReadBound (%v)", took, follower.b.ReadBound())
	}
	follower.faults.setCut(false)
	waitFor(t, 20*time.Second, "the healed follower back in contact", follower.b.InContact)
}

// TestRestartRebuildsLocalStore: the in-memory local store comes back after
// a restart from the node's own snapshot plus the log after it, and the
// files of earlier versions (fsm.db) and of interrupted snapshots are
// removed.
func TestRestartRebuildsLocalStore(t *testing.T) {
	c := newCluster(t, 1)
	nd := c.leader()
	for i := range 20 {
		mustApply(t, nd.b, put(fmt.Sprintf("k%02d", i), []byte("before-snapshot")))
	}
	if err := nd.b.raft.Snapshot().Error(); err != nil {
		t.Fatalf("raft snapshot: %v", err)
	}
	mustApply(t, nd.b, put("k00", []byte("after-snapshot")), storage.Op{Key: "k01", Delete: true}, put("new", []byte("v")))
	idx := nd.b.AppliedIndex()
	if err := nd.b.Close(); err != nil {
		t.Fatal(err)
	}
	leftovers := []string{filepath.Join(nd.dir, legacyStore), filepath.Join(nd.dir, tempPrefix+"123")}
	for _, p := range leftovers {
		if err := os.WriteFile(p, []byte("stale"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.open(nd, true)
	c.leader()
	waitIndex(t, nd.b, idx)
	wantValue(t, nd.b, "k00", "after-snapshot")
	wantMissing(t, nd.b, "k01")
	wantValue(t, nd.b, "k02", "before-snapshot")
	wantValue(t, nd.b, "new", "v")
	for _, p := range leftovers {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after restart: %v, want removed", filepath.Base(p), err)
		}
	}
}
