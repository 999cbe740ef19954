// Package raft is Coffer's replicated storage.Backend, built on
// github.com/hashicorp/raft with raft-boltdb for the log and stable store.
//
// # Data path
//
// Writes go through the leader: Apply encodes its ops as data, a committer
// goroutine packs every Apply waiting at that moment into one raft log entry
// (group commit, as the bolt backend does for fsyncs: no timer, batches grow
// with load, at most maxInflight entries in flight), and Apply returns once
// the entry is committed (stored and fsynced on a quorum) and applied to the
// leader's local store, with the error of that local apply. On a follower,
// Apply returns a *NotLeaderError (errors.Is ErrNotLeader) naming the leader,
// so that the caller can forward the write.
//
// Every node applies committed entries, in log order, to a local in-memory
// store (internal/storage/memtree): raft's fsynced log is the durable
// record, and at every Open raft rebuilds the local store from the latest
// raft snapshot and the log after it. Get and Scan read the local store: on a
// follower they see what it has applied so far. AppliedIndex and
// WaitForIndex let a caller read its own writes on any node (see
// docs/ha.md).
//
// # Cluster
//
// Nodes talk over mutual TLS with certificates from the cluster's own CA
// (NewClusterCA, IssueNodeCert, NodeTLSConfig). One node bootstraps the
// cluster; the leader adds the others with Join, as non-voters first, and a
// small autopilot promotes them to voters once they have kept up for
// AutopilotConfig.ServerStabilizationTime, and optionally removes servers
// that have been unreachable for too long.
package raft

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bbolt "go.etcd.io/bbolt"

	"github.com/coffer-dev/coffer/internal/storage"
	"github.com/coffer-dev/coffer/internal/storage/bolt"
)

const (
	// DefaultPerformanceMultiplier is Vault's default: relaxed timings that
	// suit development; production clusters use 1.
	DefaultPerformanceMultiplier = 5
	// DefaultSnapshotThreshold and DefaultTrailingLogs are Vault's defaults.
	DefaultSnapshotThreshold = 8192
	DefaultTrailingLogs      = 10000

	// maxBatchRequests and maxBatchBytes cap one group-committed entry; an
	// entry always takes at least one request, however large.
	maxBatchRequests = 512
	maxBatchBytes    = 4 << 20
	// maxInflight is how many entries the committer keeps in flight: while
	// they commit, the next batch accumulates.
	maxInflight = 2
	// maxRequestBytes caps the ops of one Apply.
	maxRequestBytes = 64 << 20
)

var (
	// ErrNotLeader is matched (errors.Is) by the *NotLeaderError that writes,
	// membership changes and restores return on a node that is not the
	// leader. Nothing was written: the call may be retried on the leader.
	ErrNotLeader = errors.New("raft: not the leader")

	// ErrLeadershipLost is returned by Apply when this node lost leadership
	// before its entry was known to be committed (a network partition, a
	// leader change, a restore). The write may or may not be applied: the
	// caller should retry it on the new leader (writes are idempotent Puts
	// and Deletes) or report an error that says so.
	ErrLeadershipLost = errors.New("raft: leadership lost while committing; the write may or may not have been applied")

	// ErrInvalidOp is returned by Apply, before anything is written, for an
	// op a snapshot (a bolt file) cannot hold (empty key, key over 32 KiB)
	// or an Apply over 64 MiB.
	ErrInvalidOp = bolt.ErrInvalidOp

	// ErrUnknownPeer is returned by RemovePeer for a node ID that is not in
	// the configuration.
	ErrUnknownPeer = errors.New("raft: no such peer")
)

// NotLeaderError is returned on a node that is not the leader. LeaderID and
// LeaderAddr (its cluster address) are empty when no leader is known, for
// example in a minority partition.
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderAddr == "" {
		return "raft: not the leader, and no leader is known (no quorum?)"
	}
	return fmt.Sprintf("raft: not the leader; the leader is %s at %s", e.LeaderID, e.LeaderAddr)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// Config configures Open.
type Config struct {
	// Path is the node's data directory. Required; created 0700 if missing.
	// It holds raft.db (log and stable store) and snapshots/; the local
	// store is in memory, rebuilt from them at every Open.
	Path string

	// NodeID names the node in the cluster. Required, stable across
	// restarts.
	NodeID string

	// ClusterAddr is the host:port to listen on for raft traffic. Required;
	// port 0 picks a free port (see Addr).
	ClusterAddr string

	// AdvertiseAddr is the address peers dial to reach this node. Zero: the
	// listener's address.
	AdvertiseAddr string

	// TLS is the mutual TLS configuration of the cluster port, usually from
	// NodeTLSConfig. Required: it needs Certificates, RootCAs and ClientCAs.
	// Client certificates are always required and verified.
	TLS *tls.Config

	// Bootstrap makes this node form a new single-voter cluster if it has no
	// raft state yet. Set it on the first node only; it is ignored once the
	// node has state.
	Bootstrap bool

	// PerformanceMultiplier scales raft's timing (heartbeat and election
	// timeouts of 1 s, leader lease of 500 ms, times this). Zero:
	// DefaultPerformanceMultiplier.
	PerformanceMultiplier int

	// SnapshotThreshold is the number of log entries after which a snapshot
	// is taken. Zero: DefaultSnapshotThreshold.
	SnapshotThreshold uint64

	// TrailingLogs is the number of log entries kept after a snapshot, so
	// that a slightly lagging follower catches up without a snapshot. Zero:
	// DefaultTrailingLogs.
	TrailingLogs uint64

	// Autopilot configures promotion and dead-server cleanup. Zero values:
	// see AutopilotConfig.
	Autopilot AutopilotConfig

	// Logger receives operational events. Nil: discard.
	Logger *slog.Logger

	// tick, when set (tests), replaces the 1 s × multiplier time unit and
	// sets the leader lease to a whole unit.
	tick time.Duration
	// faults, when set (tests), can cut the cluster traffic.
	faults netFaults
	// Faults, when set, can cut this node's cluster traffic, inbound and
	// outbound: for partition tests of whole servers only. Nil (always in
	// production): no effect.
	Faults NetFaults
}

// NetFaults is Config.Faults: Allowed reports whether cluster traffic may
// flow now; Track wraps each raw connection so that a later cut can close
// it.
type NetFaults = netFaults

// Backend is a storage.Backend and storage.Snapshotter replicated with raft.
// It is safe for concurrent use. Create it with Open.
type Backend struct {
	cfg    Config
	log    *slog.Logger
	unit   time.Duration
	raft   *hraft.Raft
	fsm    *fsm
	trans  *trackingTransport
	stream *streamLayer
	logs   *raftboltdb.BoltStore
	snaps  *hraft.FileSnapshotStore

	queue    chan *request
	slots    chan struct{} // one per entry in flight
	stop     chan struct{} // closed by Close
	done     chan struct{} // closed when the committer has returned
	wg       sync.WaitGroup
	leaderCh chan bool

	ap autopilot

	mu     sync.RWMutex // guards following
	closed bool
}

// request is one Apply waiting for the committer.
type request struct {
	ops  []storage.Op
	size int
	done chan error // buffered
}

// Open opens (or creates) the node's data directory, starts its raft
// transport on cfg.ClusterAddr and joins the cluster recorded in its state,
// or bootstraps a new one when cfg.Bootstrap is set and there is no state.
// A node that is neither waits for a leader to add it (Join).
func Open(cfg Config) (b *Backend, err error) {
	switch {
	case cfg.Path == "":
		return nil, errors.New("raft: Config.Path is required")
	case cfg.NodeID == "":
		return nil, errors.New("raft: Config.NodeID is required")
	case cfg.ClusterAddr == "":
		return nil, errors.New("raft: Config.ClusterAddr is required")
	case cfg.PerformanceMultiplier < 0 || cfg.PerformanceMultiplier > 10:
		return nil, errors.New("raft: Config.PerformanceMultiplier must be between 0 and 10")
	}
	if cfg.PerformanceMultiplier == 0 {
		cfg.PerformanceMultiplier = DefaultPerformanceMultiplier
	}
	if cfg.SnapshotThreshold == 0 {
		cfg.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if cfg.TrailingLogs == 0 {
		cfg.TrailingLogs = DefaultTrailingLogs
	}
	cfg.Autopilot = cfg.Autopilot.withDefaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	unit := cfg.tick
	if unit == 0 {
		unit = time.Duration(cfg.PerformanceMultiplier) * time.Second
	}
	if err := os.MkdirAll(cfg.Path, 0o700); err != nil {
		return nil, fmt.Errorf("raft: data directory: %w", err)
	}
	stale, _ := filepath.Glob(filepath.Join(cfg.Path, tempPrefix+"*"))
	for _, p := range stale {
		os.Remove(p)
	}

	var closers []func() error
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()
	hl := newHCLog(cfg.Logger)
	if cfg.faults == nil {
		cfg.faults = cfg.Faults
	}
	stream, err := newStreamLayer(cfg.ClusterAddr, cfg.AdvertiseAddr, cfg.TLS, cfg.faults)
	if err != nil {
		return nil, err
	}
	nt := hraft.NewNetworkTransportWithConfig(&hraft.NetworkTransportConfig{
		Stream:          stream,
		MaxPool:         3,
		Timeout:         10 * time.Second,
		Logger:          hl.Named("transport"),
		MaxRPCsInFlight: 1,
	})
	trans := &trackingTransport{NetworkTransport: nt, peers: make(map[hraft.ServerID]peerState)}
	closers = append(closers, trans.Close)

	logs, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(cfg.Path, "raft.db"),
		BoltOptions: &bbolt.Options{Timeout: time.Second, FreelistType: bbolt.FreelistMapType, NoFreelistSync: true},
	})
	if err != nil {
		return nil, fmt.Errorf("raft: log store: %w", err)
	}
	closers = append(closers, logs.Close)
	cache, err := hraft.NewLogCache(512, logs)
	if err != nil {
		return nil, fmt.Errorf("raft: log cache: %w", err)
	}
	snaps, err := hraft.NewFileSnapshotStoreWithLogger(cfg.Path, 2, hl.Named("snapshots"))
	if err != nil {
		return nil, fmt.Errorf("raft: snapshot store: %w", err)
	}
	f := newFSM(cfg.Path, cfg.Logger)
	closers = append(closers, f.store.Close)

	rc := hraft.DefaultConfig()
	rc.LocalID = hraft.ServerID(cfg.NodeID)
	rc.Logger = hl
	rc.HeartbeatTimeout = unit
	rc.ElectionTimeout = unit
	rc.LeaderLeaseTimeout = unit / 2
	if cfg.tick != 0 {
		// Tests run on busy machines: a leader keeps its lease for a whole
		// tick without contact.
		rc.LeaderLeaseTimeout = unit
	}
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.BatchApplyCh = true
	notify := make(chan bool, 16)
	rc.NotifyCh = notify
	if err := hraft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("raft: %w", err)
	}

	if cfg.Bootstrap {
		has, err := hraft.HasExistingState(cache, logs, snaps)
		if err != nil {
			return nil, fmt.Errorf("raft: read state: %w", err)
		}
		if !has {
			conf := hraft.Configuration{Servers: []hraft.Server{{Suffrage: hraft.Voter, ID: rc.LocalID, Address: trans.LocalAddr()}}}
			if err := hraft.BootstrapCluster(rc, cache, logs, snaps, trans, conf); err != nil {
				return nil, fmt.Errorf("raft: bootstrap: %w", err)
			}
		}
	}
	r, err := hraft.NewRaft(rc, f, cache, logs, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("raft: start: %w", err)
	}
	b = &Backend{
		cfg: cfg, log: cfg.Logger, unit: unit,
		raft: r, fsm: f, trans: trans, stream: stream, logs: logs, snaps: snaps,
		queue:    make(chan *request, maxBatchRequests),
		slots:    make(chan struct{}, maxInflight),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		leaderCh: make(chan bool, 1),
	}
	b.ap.init(cfg.Autopilot)
	go b.run()
	b.wg.Add(2)
	go b.watchLeadership(notify)
	go b.runAutopilot()
	return b, nil
}

// Addr returns the cluster address peers use to reach this node.
func (b *Backend) Addr() string { return string(b.trans.LocalAddr()) }

// NodeID returns this node's ID.
func (b *Backend) NodeID() string { return b.cfg.NodeID }

// IsLeader reports whether this node is the raft leader now.
func (b *Backend) IsLeader() bool { return b.raft.State() == hraft.Leader }

// Leader returns the ID and cluster address of the leader this node knows
// of; both are empty when there is none.
func (b *Backend) Leader() (id, addr string) {
	a, i := b.raft.LeaderWithID()
	return string(i), string(a)
}

// LeaderAddr returns the cluster address of the known leader, or "".
func (b *Backend) LeaderAddr() string {
	_, addr := b.Leader()
	return addr
}

// ReadBound is how long a follower may go without hearing from the leader
// and still serve reads from its local store: the heartbeat timeout (1 s ×
// PerformanceMultiplier). A follower cut off from the leader for longer has
// stopped believing in it (raft starts an election after the same timeout),
// and the rest of the cluster may already have committed writes it lacks.
func (b *Backend) ReadBound() time.Duration { return b.unit }

// InContact reports whether this node is a follower that heard from a known
// leader (an append or a heartbeat) within ReadBound. It is false on the
// leader itself, on a candidate, and on a follower in a minority
// partition: such a node should not serve reads without an index from its
// local store, since a write committed elsewhere may be missing from it.
// While it is true, the local store lags the leader's by at most ReadBound
// plus the time to apply what arrived.
func (b *Backend) InContact() bool {
	if b.raft.State() != hraft.Follower {
		return false
	}
	if addr, _ := b.raft.LeaderWithID(); addr == "" {
		return false
	}
	last := b.raft.LastContact()
	return !last.IsZero() && time.Since(last) <= b.unit
}

// LeaderCh delivers true when this node becomes leader, after it has
// applied every entry committed by earlier leaders (a raft barrier), and
// false when it stops being leader. Only the latest value is kept: a slow
// reader sees the current state, not every transition. There is one
// channel; it is never closed.
func (b *Backend) LeaderCh() <-chan bool { return b.leaderCh }

func (b *Backend) watchLeadership(notify <-chan bool) {
	defer b.wg.Done()
	for {
		select {
		case <-b.stop:
			return
		case leader := <-notify:
			if leader {
				if err := b.raft.Barrier(0).Error(); err != nil {
					b.log.Warn("raft: barrier after election failed; not announcing leadership", "err", err)
					continue
				}
				b.log.Info("raft: this node is the leader", "node_id", b.cfg.NodeID)
			} else {
				b.log.Info("raft: this node is no longer the leader", "node_id", b.cfg.NodeID)
			}
			select {
			case <-b.leaderCh:
			default:
			}
			b.leaderCh <- leader
		}
	}
}

func (b *Backend) notLeader() error {
	id, addr := b.Leader()
	return &NotLeaderError{LeaderID: id, LeaderAddr: addr}
}

// Get implements storage.Backend on the local store: on a follower it
// returns the value as of AppliedIndex. It returns ErrNotFound for a
// missing key, ErrClosed after Close, ErrStoreFailed if the local store
// failed to apply an entry.
func (b *Backend) Get(ctx context.Context, key string) ([]byte, error) {
	if b.fsm.broken.Load() {
		return nil, ErrStoreFailed
	}
	return b.fsm.store.Get(ctx, key)
}

// Scan implements storage.Backend on the local store: fn runs with no lock
// held and may call Get and Apply; each chunk of entries is read at one
// point in time (see memtree.Tree.Scan).
func (b *Backend) Scan(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	if b.fsm.broken.Load() {
		return ErrStoreFailed
	}
	return b.fsm.store.Scan(ctx, prefix, fn)
}

// AppliedIndex returns the raft index of the last entry applied to this
// node's local store. After an Apply returns nil on the leader,
// AppliedIndex there is at least the index of that write; any node whose
// AppliedIndex has reached that value serves it.
func (b *Backend) AppliedIndex() uint64 { return b.fsm.appliedIndex() }

// WaitForIndex blocks until this node has applied the entry at idx, ctx is
// done (its error is returned) or the backend is closed (ErrClosed).
func (b *Backend) WaitForIndex(ctx context.Context, idx uint64) error {
	b.mu.RLock()
	closed := b.closed
	b.mu.RUnlock()
	if closed {
		return storage.ErrClosed
	}
	return b.fsm.wait(ctx, idx, b.stop)
}

// Apply implements storage.Backend. On the leader it returns once ops are
// committed on a quorum (each member's log fsynced) and applied locally,
// possibly in one entry with other callers' ops. A cancelled ctx stops
// Apply only before its ops are queued; once queued, Apply waits for the
// outcome. Errors: *NotLeaderError (ErrNotLeader) on a follower, nothing
// written; ErrLeadershipLost when the outcome is unknown; ErrInvalidOp;
// ErrClosed after Close.
func (b *Backend) Apply(ctx context.Context, ops []storage.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	size := 0
	for i, op := range ops {
		switch {
		case op.Key == "":
			return fmt.Errorf("raft: apply: op %d: empty key: %w", i, ErrInvalidOp)
		case len(op.Key) > bbolt.MaxKeySize:
			return fmt.Errorf("raft: apply: op %d: key of %d bytes: %w", i, len(op.Key), ErrInvalidOp)
		}
		size += len(op.Key) + len(op.Value)
	}
	if size > maxRequestBytes {
		return fmt.Errorf("raft: apply: %d bytes in one batch: %w", size, ErrInvalidOp)
	}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return storage.ErrClosed
	}
	if len(ops) == 0 {
		b.mu.RUnlock()
		return nil
	}
	if !b.IsLeader() {
		b.mu.RUnlock()
		return b.notLeader()
	}
	req := &request{ops: ops, size: size, done: make(chan error, 1)}
	select {
	case b.queue <- req:
	case <-ctx.Done():
		b.mu.RUnlock()
		return ctx.Err()
	}
	b.mu.RUnlock()
	return <-req.done
}

// run is the committer: it packs the waiting requests into one entry.
func (b *Backend) run() {
	defer close(b.done)
	batch := make([]*request, 0, maxBatchRequests)
	for {
		select {
		case b.slots <- struct{}{}:
		case <-b.stop:
			b.failQueued()
			return
		}
		select {
		case r := <-b.queue:
			batch = append(batch[:0], r)
		case <-b.stop:
			<-b.slots
			b.failQueued()
			return
		}
		size := batch[0].size
	drain:
		for len(batch) < maxBatchRequests && size < maxBatchBytes {
			select {
			case r := <-b.queue:
				batch = append(batch, r)
				size += r.size
			default:
				break drain
			}
		}
		b.submit(batch)
		batch = make([]*request, 0, maxBatchRequests)
	}
}

// failQueued answers every queued request with ErrClosed. Close sets closed
// under mu before stopping the committer, so no request arrives later.
func (b *Backend) failQueued() {
	for {
		select {
		case r := <-b.queue:
			r.done <- storage.ErrClosed
		default:
			return
		}
	}
}

// submit hands one entry to raft; a goroutine waits for its outcome,
// answers the requests and frees the slot.
func (b *Backend) submit(batch []*request) {
	all := make([][]storage.Op, len(batch))
	for i, r := range batch {
		all[i] = r.ops
	}
	future := b.raft.Apply(encodeOps(all...), 0)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		err := b.outcome(future)
		<-b.slots
		for _, r := range batch {
			r.done <- err
		}
	}()
}

func (b *Backend) outcome(f hraft.ApplyFuture) error {
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, hraft.ErrNotLeader), errors.Is(err, hraft.ErrLeadershipTransferInProgress):
			return b.notLeader()
		case errors.Is(err, hraft.ErrLeadershipLost), errors.Is(err, hraft.ErrAbortedByRestore):
			return fmt.Errorf("%w (%v)", ErrLeadershipLost, err)
		case errors.Is(err, hraft.ErrRaftShutdown):
			return storage.ErrClosed
		default:
			return fmt.Errorf("raft: apply: %w", err)
		}
	}
	if err, ok := f.Response().(error); ok {
		return err
	}
	return nil
}

// Close shuts the node down without leaving the cluster (the others see it
// as failed until it comes back, or until it is removed with RemovePeer).
// Pending Applies return ErrClosed or ErrLeadershipLost. It is idempotent.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	close(b.stop)
	var errs []error
	if err := b.raft.Shutdown().Error(); err != nil {
		errs = append(errs, fmt.Errorf("raft: shutdown: %w", err))
	}
	<-b.done
	b.wg.Wait()
	for _, c := range []func() error{b.trans.Close, b.logs.Close, b.fsm.store.Close} {
		if err := c(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("raft: close: %w", err)
	}
	return nil
}

// Snapshot implements storage.Snapshotter (sys/storage/raft/snapshot): it
// takes a raft snapshot (or reuses the latest one when nothing was applied
// since) and streams it to w. It works on any node and returns the bytes
// written; ctx stops a long copy.
func (b *Backend) Snapshot(ctx context.Context, w io.Writer) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return 0, storage.ErrClosed
	}
	rc, err := b.openSnapshot()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	n, err := io.Copy(ctxWriter{ctx, w}, rc)
	if err != nil {
		return n, fmt.Errorf("raft: snapshot: %w", err)
	}
	return n, nil
}

func (b *Backend) openSnapshot() (io.ReadCloser, error) {
	f := b.raft.Snapshot()
	err := f.Error()
	if err == nil {
		_, rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("raft: snapshot: %w", err)
		}
		return rc, nil
	}
	if !errors.Is(err, hraft.ErrNothingNewToSnapshot) {
		return nil, fmt.Errorf("raft: snapshot: %w", err)
	}
	metas, err := b.snaps.List()
	if err != nil {
		return nil, fmt.Errorf("raft: snapshot: %w", err)
	}
	if len(metas) > 0 {
		_, rc, err := b.snaps.Open(metas[0].ID)
		if err != nil {
			return nil, fmt.Errorf("raft: snapshot: %w", err)
		}
		return rc, nil
	}
	// Nothing was ever applied: the store is empty and still.
	s, err := b.fsm.Snapshot()
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		defer s.Release()
		pw.CloseWithError(s.(*fsmSnapshot).write(pw))
	}()
	return pr, nil
}

// SnapshotSize estimates the bytes Snapshot will write, for a progress bar
// (from the number and size of the entries; the bolt file's layout makes
// the real size differ by some percent). It returns 0 after Close.
func (b *Backend) SnapshotSize() int64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return 0
	}
	return b.fsm.snapshotSize()
}

// Restore replaces the whole cluster's data with a snapshot read from r (one
// written by Snapshot, or a backup of the bolt backend, to move from bolt to
// raft). It runs on the leader (else *NotLeaderError): the stream is checked
// first (ErrCorrupt-wrapped error, nothing changed, for a bad stream), then
// installed through raft, which sends it to every follower. Applies in
// flight fail with ErrLeadershipLost.
func (b *Backend) Restore(ctx context.Context, r io.Reader) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return storage.ErrClosed
	}
	if !b.IsLeader() {
		return b.notLeader()
	}
	dir, err := os.MkdirTemp(b.cfg.Path, "restore-*")
	if err != nil {
		return fmt.Errorf("raft: restore: %w", err)
	}
	defer os.RemoveAll(dir)
	path, err := checkSnapshot(ctx, dir, r, b.log)
	if err != nil {
		return err
	}
	file, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("raft: restore: %w", err)
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return fmt.Errorf("raft: restore: %w", err)
	}
	// Index 0 in the header: the restored data takes the index raft gives
	// it (after the current one), so AppliedIndex never goes back.
	meta := &hraft.SnapshotMeta{Version: hraft.SnapshotVersionMax, Size: int64(headerSize) + fi.Size()}
	if err := b.raft.Restore(meta, io.MultiReader(bytes.NewReader(header(0)), file), 0); err != nil {
		if errors.Is(err, hraft.ErrNotLeader) {
			return b.notLeader()
		}
		return fmt.Errorf("raft: restore: %w", err)
	}
	b.fsm.advance(b.raft.AppliedIndex())
	b.log.Info("raft: restored snapshot", "index", b.raft.AppliedIndex())
	return nil
}

// checkSnapshot reads a snapshot stream (with or without our header) into a
// bolt file in dir, checked by bolt's Restore, and returns its path.
func checkSnapshot(ctx context.Context, dir string, r io.Reader, log *slog.Logger) (string, error) {
	br := bufio.NewReader(r)
	if head, _ := br.Peek(len(snapshotMagic)); string(head) == snapshotMagic {
		if _, err := readHeader(br); err != nil {
			return "", fmt.Errorf("raft: restore: %w: %w", bolt.ErrCorrupt, err)
		}
	}
	path := filepath.Join(dir, "check.db")
	scratch, err := bolt.Open(bolt.Config{Path: path, NoSync: true, Logger: log})
	if err != nil {
		return "", fmt.Errorf("raft: restore: %w", err)
	}
	err = scratch.Restore(ctx, br)
	if cerr := scratch.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("raft: restore: %w", err)
	}
	return path, nil
}

// ctxWriter stops a long copy once ctx is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
