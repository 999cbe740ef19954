package raft

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/storage"
)

// testTick is the raft time unit in tests: heartbeat and election timeouts.
const testTick = 400 * time.Millisecond

// faults cuts one node's cluster traffic, both directions.
type faults struct {
	mu    sync.Mutex // guards following
	cut   bool
	conns []net.Conn
}

func (f *faults) Allowed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.cut
}

func (f *faults) Track(c net.Conn) net.Conn {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut {
		c.Close()
	}
	f.conns = append(f.conns, c)
	return c
}

func (f *faults) setCut(cut bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut = cut
	if cut {
		for _, c := range f.conns {
			c.Close()
		}
		f.conns = nil
	}
}

type testNode struct {
	id     string
	dir    string
	addr   string // empty until first opened
	tls    *tls.Config
	faults *faults
	b      *Backend
}

type testCluster struct {
	t     testing.TB
	ca    *CA
	nodes []*testNode
}

func newCA(t testing.TB) *CA {
	t.Helper()
	ca, err := NewClusterCA()
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func nodeTLS(t testing.TB, ca *CA, id string) *tls.Config {
	t.Helper()
	cert, key, err := IssueNodeCert(ca, id)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := NodeTLSConfig(ca.CertPEM(), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// newCluster starts n nodes: the first bootstraps, the others join through
// it and are promoted to voters by autopilot.
func newCluster(t testing.TB, n int) *testCluster {
	t.Helper()
	c := &testCluster{t: t, ca: newCA(t)}
	for i := range n {
		c.addNode(fmt.Sprintf("node%d", i))
	}
	c.open(c.nodes[0], true)
	leader := c.leader()
	for _, nd := range c.nodes[1:] {
		c.open(nd, false)
		if err := leader.b.Join(context.Background(), nd.id, nd.addr, true); err != nil {
			t.Fatalf("Join(%s) = %v", nd.id, err)
		}
	}
	c.waitVoters(leader, n)
	return c
}

func (c *testCluster) addNode(id string) *testNode {
	nd := &testNode{id: id, dir: filepath.Join(c.t.TempDir(), id), tls: nodeTLS(c.t, c.ca, id), faults: &faults{}}
	c.nodes = append(c.nodes, nd)
	return nd
}

func testConfig(nd *testNode, bootstrap bool) Config {
	addr := nd.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	return Config{
		Path:        nd.dir,
		NodeID:      nd.id,
		ClusterAddr: addr,
		TLS:         nd.tls,
		Bootstrap:   bootstrap,
		Autopilot:   AutopilotConfig{ServerStabilizationTime: 100 * time.Millisecond, LastContactThreshold: 2 * time.Second},
		tick:        testTick,
		faults:      nd.faults,
	}
}

// open starts (or restarts) nd from its data directory at its address.
func (c *testCluster) open(nd *testNode, bootstrap bool) {
	c.t.Helper()
	b, err := Open(testConfig(nd, bootstrap))
	if err != nil {
		c.t.Fatalf("Open(%s) = %v", nd.id, err)
	}
	c.t.Cleanup(func() { b.Close() })
	nd.b, nd.addr = b, b.Addr()
}

// leader waits for exactly one open, connected node to be leader.
func (c *testCluster) leader() *testNode {
	c.t.Helper()
	var found *testNode
	waitFor(c.t, 10*time.Second, "a leader", func() bool {
		found = nil
		for _, nd := range c.nodes {
			if nd.b != nil && !nd.b.closedNow() && nd.faults.Allowed() && nd.b.IsLeader() {
				if found != nil {
					return false
				}
				found = nd
			}
		}
		return found != nil
	})
	return found
}

func (c *testCluster) followers(leader *testNode) []*testNode {
	var out []*testNode
	for _, nd := range c.nodes {
		if nd != leader {
			out = append(out, nd)
		}
	}
	return out
}

func (c *testCluster) waitVoters(leader *testNode, n int) {
	c.t.Helper()
	waitFor(c.t, 10*time.Second, fmt.Sprintf("%d voters", n), func() bool {
		cfg, err := leader.b.Configuration()
		if err != nil {
			return false
		}
		voters := 0
		for _, s := range cfg.Servers {
			if s.Voter {
				voters++
			}
		}
		return voters == n
	})
}

func (b *Backend) closedNow() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.closed
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func put(key string, value []byte) storage.Op { return storage.Op{Key: key, Value: value} }

func mustApply(t testing.TB, b storage.Backend, ops ...storage.Op) {
	t.Helper()
	if err := b.Apply(context.Background(), ops); err != nil {
		t.Fatalf("Apply = %v", err)
	}
}

func wantValue(t testing.TB, b storage.Backend, key, want string) {
	t.Helper()
	got, err := b.Get(context.Background(), key)
	if err != nil || string(got) != want {
		t.Errorf("Get(%q) = %q, %v; want %q", key, got, err, want)
	}
}

func wantMissing(t testing.TB, b storage.Backend, key string) {
	t.Helper()
	if v, err := b.Get(context.Background(), key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get(%q) = %q, %v; want ErrNotFound", key, v, err)
	}
}

// waitIndex waits up to 10 s for b to apply idx.
func waitIndex(t testing.TB, b *Backend, idx uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.WaitForIndex(ctx, idx); err != nil {
		t.Fatalf("WaitForIndex(%d) on %s = %v (applied %d)", idx, b.NodeID(), err, b.AppliedIndex())
	}
}
