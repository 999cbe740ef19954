package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coffer-dev/coffer/internal/config"
	"github.com/coffer-dev/coffer/internal/core"
	"github.com/coffer-dev/coffer/internal/httpapi"
	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/seal"
	"github.com/coffer-dev/coffer/internal/storage"
	"github.com/coffer-dev/coffer/internal/storage/raft"
)

// A raft server: the cluster type below is at once the storage.Backend the
// core runs on (it delegates to the *raft.Backend once raft is open), the
// core's Cluster (bootstrap at init, join at unseal, active/standby) and
// httpapi's Cluster (forwarding, sys/storage/raft). See docs/ha.md for the
// join protocol.

// Barrier paths the cluster keeps.
const (
	caKey          = "core/raft/ca"
	leaderKey      = "core/ha/leader"
	challengeKey   = "core/raft/challenge/"
	generationKey  = "core/ha/generation"
	nodeTLSFile    = "node-tls.json"
	nodeIDFile     = "node-id"
	challengeTTL   = 10 * time.Minute
	joinCatchUp    = 2 * time.Minute
	joinRetryDelay = 2 * time.Second
)

// errNotOpen is returned by storage calls before this node is part of a
// cluster (not initialized, not joined).
var errNotOpen = errors.New("server: raft: this node is not part of a cluster yet: initialize it (sys/init) or join it (sys/storage/raft/join)")

// raftSettings are the storage "raft" block and the addresses around it.
type raftSettings struct {
	Path                  string
	NodeID                string
	ClusterListen         string // host:port to listen on
	ClusterAdvertise      string // host:port peers dial
	APIAddr               string // http(s)://host:port clients and standbys use
	PerformanceMultiplier int
	SnapshotThreshold     uint64
	TrailingLogs          uint64
	RetryJoin             []retryJoin
	Snapshots             *snapshotSchedule
}

type retryJoin struct {
	LeaderAPIAddr string
	CACertPEM     []byte
}

type snapshotSchedule struct {
	Interval time.Duration
	Path     string
	Retain   int
}

// raftSettingsFromConfig reads the storage "raft" block, the listeners'
// cluster_address, api_addr, cluster_addr and raft_snapshots.
func raftSettingsFromConfig(cfg *config.Config) (*raftSettings, error) {
	o := cfg.Storage.Options
	s := &raftSettings{Path: o["path"], NodeID: o["node_id"]}
	if s.Path == "" {
		return nil, errors.New("server: storage \"raft\" needs a path, e.g. path = \"/var/lib/coffer/raft\"")
	}
	for k, v := range o {
		var err error
		switch k {
		case "path", "node_id":
		case "performance_multiplier":
			s.PerformanceMultiplier, err = strconv.Atoi(v)
		case "snapshot_threshold":
			s.SnapshotThreshold, err = strconv.ParseUint(v, 10, 64)
		case "trailing_logs":
			s.TrailingLogs, err = strconv.ParseUint(v, 10, 64)
		default:
			return nil, fmt.Errorf("server: storage \"raft\": unknown setting %q", k)
		}
		if err != nil {
			return nil, fmt.Errorf("server: storage \"raft\": %s must be a whole number (got %q)", k, v)
		}
	}
	for _, b := range cfg.Storage.Blocks {
		if b.Type != "retry_join" {
			return nil, fmt.Errorf("server: storage \"raft\": unknown block %q", b.Type)
		}
		var rj retryJoin
		for k, v := range b.Attributes {
			str, _ := v.(string)
			switch k {
			case "leader_api_addr":
				rj.LeaderAPIAddr = str
			case "leader_ca_cert_file":
				pem, err := os.ReadFile(str)
				if err != nil {
					return nil, fmt.Errorf("server: retry_join: leader_ca_cert_file: %w", err)
				}
				rj.CACertPEM = pem
			case "leader_ca_cert":
				rj.CACertPEM = []byte(str)
			default:
				return nil, fmt.Errorf("server: retry_join: unsupported setting %q (Coffer supports leader_api_addr, leader_ca_cert_file, leader_ca_cert)", k)
			}
		}
		if !strings.HasPrefix(rj.LeaderAPIAddr, "http://") && !strings.HasPrefix(rj.LeaderAPIAddr, "https://") {
			return nil, fmt.Errorf("server: retry_join: leader_api_addr must be an http(s):// address (got %q)", rj.LeaderAPIAddr)
		}
		s.RetryJoin = append(s.RetryJoin, rj)
	}
	if len(cfg.Listeners) == 0 {
		return nil, errors.New("server: raft needs a listener")
	}
	l := cfg.Listeners[0]
	s.ClusterListen = l.ClusterAddress
	if s.ClusterListen == "" {
		host, port, err := net.SplitHostPort(l.Address)
		if err != nil {
			return nil, fmt.Errorf("server: listener address %q: %w", l.Address, err)
		}
		n, _ := strconv.Atoi(port)
		s.ClusterListen = net.JoinHostPort(host, strconv.Itoa(n+1))
	}
	s.ClusterAdvertise = s.ClusterListen
	if cfg.ClusterAddr != "" {
		u, err := url.Parse(cfg.ClusterAddr)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("server: cluster_addr must look like https://host:8201 (got %q)", cfg.ClusterAddr)
		}
		s.ClusterAdvertise = u.Host
	}
	s.APIAddr = cfg.APIAddr
	if s.APIAddr == "" {
		scheme := "https"
		if l.TLSDisable {
			scheme = "http"
		}
		s.APIAddr = scheme + "://" + l.Address
	}
	if b := cfg.RaftSnapshots; b != nil {
		sc := &snapshotSchedule{Interval: time.Hour, Retain: 24}
		for k, v := range b.Attributes {
			switch k {
			case "interval":
				str, _ := v.(string)
				d, err := time.ParseDuration(str)
				if err != nil || d < time.Second {
					return nil, fmt.Errorf("server: raft_snapshots: interval must be a duration of at least 1s (got %v)", v)
				}
				sc.Interval = d
			case "path":
				sc.Path, _ = v.(string)
			case "retain":
				n, ok := v.(int64)
				if !ok || n < 1 {
					return nil, fmt.Errorf("server: raft_snapshots: retain must be a whole number of at least 1 (got %v)", v)
				}
				sc.Retain = int(n)
			default:
				return nil, fmt.Errorf("server: raft_snapshots: unknown setting %q", k)
			}
		}
		if sc.Path == "" {
			return nil, errors.New("server: raft_snapshots needs a path")
		}
		s.Snapshots = sc
	}
	return s, nil
}

// nodeTLS is the node's cluster credentials, kept in its data directory
// (0600): the CA certificate and the node's certificate and key. The CA's
// key lives only in the barrier.
type nodeTLS struct {
	CACert []byte `json:"ca_cert"`
	Cert   []byte `json:"cert"`
	Key    []byte `json:"key"`
}

// cluster is a raft node; see the top of the file.
type cluster struct {
	set    *raftSettings
	logger *slog.Logger
	client *http.Client // for joins

	active      atomic.Bool
	stop        chan struct{}
	wg          sync.WaitGroup
	closeOnce   sync.Once
	storageOnce sync.Once

	mu          sync.RWMutex // guards following
	backend     *raft.Backend
	pre         map[string][]byte // physical entries from the leader while joining
	joining     *joinState
	bootCA      *raft.CA        // the first node's CA until it is in the barrier
	store       logical.Storage // the barrier, once unsealed
	activeSince time.Time
	challenges  map[string]pendingChallenge
}

type joinState struct {
	leaderAPI     string
	client        *http.Client
	challengePath string
	nonVoter      bool
}

type pendingChallenge struct {
	answer  []byte
	expires time.Time
}

var _ storage.Backend = (*cluster)(nil)

// openCluster prepares the node: it reads (or creates) its node ID and, if
// the node already belongs to a cluster, opens raft. Otherwise raft opens
// at init (bootstrap) or at the first unseal after a join.
func openCluster(s *raftSettings, logger *slog.Logger) (*cluster, error) {
	if err := os.MkdirAll(s.Path, 0o700); err != nil {
		return nil, fmt.Errorf("server: raft data directory: %w", err)
	}
	if s.NodeID == "" {
		idPath := filepath.Join(s.Path, nodeIDFile)
		raw, err := os.ReadFile(idPath)
		switch {
		case err == nil:
			s.NodeID = strings.TrimSpace(string(raw))
		case errors.Is(err, os.ErrNotExist):
			var b [8]byte
			rand.Read(b[:])
			s.NodeID = "node-" + hex.EncodeToString(b[:])
			if err := os.WriteFile(idPath, []byte(s.NodeID+"\n"), 0o600); err != nil {
				return nil, fmt.Errorf("server: raft node id: %w", err)
			}
		default:
			return nil, fmt.Errorf("server: raft node id: %w", err)
		}
	}
	c := &cluster{
		set: s, logger: logger.With("component", "raft"), stop: make(chan struct{}),
		client:     &http.Client{Timeout: 30 * time.Second},
		challenges: map[string]pendingChallenge{},
	}
	creds, err := c.readNodeTLS()
	if err != nil {
		return nil, err
	}
	if creds != nil {
		if err := c.openRaft(creds, false); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *cluster) readNodeTLS() (*nodeTLS, error) {
	raw, err := os.ReadFile(filepath.Join(c.set.Path, nodeTLSFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("server: raft node credentials: %w", err)
	}
	var n nodeTLS
	if err := json.Unmarshal(raw, &n); err != nil {
		return nil, fmt.Errorf("server: raft node credentials %s: %w", nodeTLSFile, err)
	}
	return &n, nil
}

func (c *cluster) writeNodeTLS(n *nodeTLS) error {
	raw, _ := json.Marshal(n)
	tmp := filepath.Join(c.set.Path, nodeTLSFile+".tmp")
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return fmt.Errorf("server: raft node credentials: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(c.set.Path, nodeTLSFile)); err != nil {
		return fmt.Errorf("server: raft node credentials: %w", err)
	}
	return nil
}

// openRaft opens the raft backend with the node's credentials and starts
// watching leadership. c.mu must not be held.
func (c *cluster) openRaft(creds *nodeTLS, bootstrap bool) error {
	tlsCfg, err := raft.NodeTLSConfig(creds.CACert, creds.Cert, creds.Key)
	if err != nil {
		return fmt.Errorf("server: raft node credentials: %w", err)
	}
	rcfg := raft.Config{
		Path:                  c.set.Path,
		NodeID:                c.set.NodeID,
		ClusterAddr:           c.set.ClusterListen,
		AdvertiseAddr:         c.set.ClusterAdvertise,
		TLS:                   tlsCfg,
		Bootstrap:             bootstrap,
		PerformanceMultiplier: c.set.PerformanceMultiplier,
		SnapshotThreshold:     c.set.SnapshotThreshold,
		TrailingLogs:          c.set.TrailingLogs,
		Logger:                c.logger,
	}
	if f := newFileFaults(os.Getenv(cutFileEnv), c.set.Path, c.stop); f != nil {
		c.logger.Warn("raft: test-only network cut enabled", "file", f.path)
		rcfg.Faults = f
	}
	b, err := raft.Open(rcfg)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.backend = b
	c.pre = nil
	c.mu.Unlock()
	c.wg.Add(1)
	go c.watchLeadership(b)
	if c.set.Snapshots != nil {
		c.wg.Add(1)
		go c.runSnapshots(b)
	}
	c.logger.Info("raft: opened", "node_id", c.set.NodeID, "cluster_addr", b.Addr(), "bootstrap", bootstrap)
	return nil
}

func (c *cluster) raft() *raft.Backend {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.backend
}

// watchLeadership follows raft's LeaderCh: on becoming leader this node is
// active (after raft's barrier) and publishes where it is.
func (c *cluster) watchLeadership(b *raft.Backend) {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case leader := <-b.LeaderCh():
			c.active.Store(leader)
			if leader {
				c.mu.Lock()
				c.activeSince = time.Now()
				c.mu.Unlock()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				c.publishLeader(ctx)
				c.loadAutopilot(ctx)
				cancel()
			}
		}
	}
}

// publishLeader writes this node's addresses at leaderKey, if the barrier
// is open; the core's Unsealed hook calls it again after an unseal.
func (c *cluster) publishLeader(ctx context.Context) {
	c.mu.RLock()
	st, since := c.store, c.activeSince
	c.mu.RUnlock()
	if st == nil || !c.Active() {
		return
	}
	raw, _ := json.Marshal(httpapi.LeaderInfo{NodeID: c.set.NodeID, APIAddr: c.set.APIAddr, ClusterAddr: "https://" + c.set.ClusterAdvertise, ActiveTime: since})
	if err := st.Put(ctx, leaderKey, raw); err != nil {
		c.logger.Debug("raft: could not publish the active node's address yet", "err", err)
	}
}

// Active implements core.Cluster and httpapi.Cluster.
func (c *cluster) Active() bool {
	b := c.raft()
	return b != nil && c.active.Load() && b.IsLeader()
}

// BeforeInit implements core.Cluster: the first node bootstraps a
// one-voter cluster with a new CA and waits to be its active node.
func (c *cluster) BeforeInit(ctx context.Context) error {
	c.mu.Lock()
	joining, opened := c.joining != nil, c.backend != nil
	c.mu.Unlock()
	if joining {
		return logical.Errorf(logical.Invalid, "this node is joining a cluster: unseal it with the cluster's keys instead of initializing it")
	}
	if !opened {
		ca, err := raft.NewClusterCA()
		if err != nil {
			return err
		}
		cert, key, err := raft.IssueNodeCert(ca, c.set.NodeID)
		if err != nil {
			return err
		}
		creds := &nodeTLS{CACert: ca.CertPEM(), Cert: cert, Key: key}
		if err := c.writeNodeTLS(creds); err != nil {
			return err
		}
		c.mu.Lock()
		c.bootCA = ca
		c.mu.Unlock()
		if err := c.openRaft(creds, true); err != nil {
			return err
		}
	}
	for !c.Active() {
		select {
		case <-ctx.Done():
			return logical.Errorf(logical.Unavailable, "this node did not become the active node of its raft cluster: init must run on the active node")
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// Unsealed implements core.Cluster.
func (c *cluster) Unsealed(ctx context.Context, s logical.Storage) error {
	c.mu.Lock()
	c.store = s
	js := c.joining
	c.mu.Unlock()
	if js != nil {
		if err := c.completeJoin(ctx, s, js); err != nil {
			return err
		}
	}
	c.mu.Lock()
	ca := c.bootCA
	c.mu.Unlock()
	if ca != nil {
		key, err := ca.KeyPEM()
		if err != nil {
			return err
		}
		raw, _ := json.Marshal(map[string][]byte{"cert": ca.CertPEM(), "key": key})
		if err := s.Put(ctx, caKey, raw); err != nil {
			return fmt.Errorf("server: store the cluster CA: %w", err)
		}
		c.mu.Lock()
		c.bootCA = nil
		c.mu.Unlock()
	}
	if c.Active() {
		c.publishLeader(ctx)
		c.loadAutopilot(ctx)
		var b [16]byte
		rand.Read(b[:])
		if err := s.Put(ctx, generationKey, []byte(hex.EncodeToString(b[:]))); err != nil {
			return fmt.Errorf("server: publish a new generation: %w", err)
		}
	}
	return nil
}

// Leader implements httpapi.Cluster.
func (c *cluster) Leader(ctx context.Context) (httpapi.LeaderInfo, bool) {
	b := c.raft()
	c.mu.RLock()
	st := c.store
	c.mu.RUnlock()
	if b == nil || st == nil {
		return httpapi.LeaderInfo{}, false
	}
	id, _ := b.Leader()
	if id == "" {
		return httpapi.LeaderInfo{}, false
	}
	raw, err := st.Get(ctx, leaderKey)
	if err != nil {
		return httpapi.LeaderInfo{}, false
	}
	var l httpapi.LeaderInfo
	if json.Unmarshal(raw, &l) != nil || l.NodeID != id {
		return httpapi.LeaderInfo{}, false // the new active node has not published yet
	}
	l.IsSelf = id == c.set.NodeID
	return l, true
}

// AppliedIndex implements httpapi.Cluster.
func (c *cluster) AppliedIndex() uint64 {
	if b := c.raft(); b != nil {
		return b.AppliedIndex()
	}
	return 0
}

// InContact implements httpapi.Cluster: raft's follower contact with the
// leader, within the heartbeat timeout.
func (c *cluster) InContact() bool {
	b := c.raft()
	return b != nil && b.InContact()
}

// WaitForIndex implements httpapi.Cluster.
func (c *cluster) WaitForIndex(ctx context.Context, idx uint64) error {
	b := c.raft()
	if b == nil {
		return errNotOpen
	}
	return b.WaitForIndex(ctx, idx)
}

// Join implements httpapi.Cluster on the joining node: it fetches the
// challenge and the seal entries from the cluster; the join completes at
// unseal (completeJoin).
func (c *cluster) Join(ctx context.Context, leaderAPI string, caCertPEM []byte, nonVoter bool) error {
	c.mu.RLock()
	opened := c.backend != nil
	c.mu.RUnlock()
	if opened {
		return logical.Errorf(logical.Invalid, "this node is already part of a raft cluster")
	}
	client := c.client
	if len(caCertPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caCertPEM) {
			return logical.Errorf(logical.Invalid, "leader_ca_cert is not a PEM certificate")
		}
		client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	var ch httpapi.JoinChallenge
	if err := postJSON(ctx, client, leaderAPI+"/v1/sys/storage/raft/bootstrap/challenge", map[string]string{"server_id": c.set.NodeID}, &ch); err != nil {
		return logical.Errorf(logical.Unavailable, "join: asking %s for a challenge failed: %v", leaderAPI, err)
	}
	if ch.ChallengePath == "" || len(ch.Entries) == 0 {
		return logical.Errorf(logical.Unavailable, "join: %s sent an empty challenge", leaderAPI)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.backend != nil {
		return logical.Errorf(logical.Invalid, "this node is already part of a raft cluster")
	}
	c.pre = ch.Entries
	c.joining = &joinState{leaderAPI: leaderAPI, client: client, challengePath: ch.ChallengePath, nonVoter: nonVoter}
	c.logger.Info("raft: joining; unseal this node with the cluster's keys to complete the join", "leader", leaderAPI)
	return nil
}

// completeJoin runs at unseal on a joining node: read the challenge through
// the barrier (possible only with the cluster's keys), answer it, receive
// the node certificate, open raft and catch up with the active node.
func (c *cluster) completeJoin(ctx context.Context, s logical.Storage, js *joinState) error {
	plain, err := s.Get(ctx, js.challengePath)
	if err != nil {
		return fmt.Errorf("server: join: read the challenge: %w", err)
	}
	var creds httpapi.JoinCredentials
	ans := httpapi.JoinAnswer{ServerID: c.set.NodeID, Answer: plain, ClusterAddr: c.set.ClusterAdvertise, NonVoter: js.nonVoter}
	if err := postJSON(ctx, js.client, js.leaderAPI+"/v1/sys/storage/raft/bootstrap/answer", ans, &creds); err != nil {
		return logical.Errorf(logical.Unavailable, "join: answering the challenge failed: %v", err)
	}
	n := &nodeTLS{CACert: creds.CACert, Cert: creds.Cert, Key: creds.Key}
	if err := c.writeNodeTLS(n); err != nil {
		return err
	}
	if err := c.openRaft(n, false); err != nil {
		return err
	}
	c.mu.Lock()
	c.joining = nil
	c.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, joinCatchUp)
	defer cancel()
	if err := c.raft().WaitForIndex(wctx, creds.LeaderIndex); err != nil {
		return fmt.Errorf("server: join: catching up with the active node: %w", err)
	}
	c.logger.Info("raft: joined the cluster", "node_id", c.set.NodeID, "index", c.raft().AppliedIndex())
	return nil
}

func postJSON(ctx context.Context, client *http.Client, url string, in, out any) error {
	body, _ := json.Marshal(in)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Errors []string }
		_ = json.Unmarshal(raw, &e)
		return fmt.Errorf("status %d: %s", resp.StatusCode, strings.Join(e.Errors, "; "))
	}
	return json.Unmarshal(raw, out)
}

// sealEntries are the physical entries a joining node needs to unseal.
var sealEntries = []string{seal.ConfigPath, seal.RootKeyPath, seal.KEKPath, seal.RecoveryCheckPath, "core/keyring"}

// recorder collects the physical ops of the barrier writes made with its
// context, so the active node can send a joining node the encrypted
// challenge entry exactly as stored.
type recorder struct {
	mu  sync.Mutex
	ops []storage.Op
}

type recorderKey struct{}

// Challenge implements httpapi.Cluster on the active node.
func (c *cluster) Challenge(ctx context.Context, serverID string) (*httpapi.JoinChallenge, error) {
	if serverID == "" || strings.ContainsAny(serverID, "/ ") || len(serverID) > 128 {
		return nil, logical.Errorf(logical.Invalid, "server_id is required: the joining node's ID (no '/' or spaces)")
	}
	b := c.raft()
	c.mu.RLock()
	st := c.store
	c.mu.RUnlock()
	if b == nil || st == nil || !c.Active() {
		return nil, logical.Errorf(logical.Unavailable, "this node is not the unsealed active node of a cluster")
	}
	answer := make([]byte, 32)
	rand.Read(answer)
	rec := &recorder{}
	path := challengeKey + serverID
	if err := st.Put(context.WithValue(ctx, recorderKey{}, rec), path, answer); err != nil {
		return nil, fmt.Errorf("server: store the challenge: %w", err)
	}
	out := &httpapi.JoinChallenge{ChallengePath: path, Entries: map[string][]byte{}}
	for _, op := range rec.ops {
		if !op.Delete {
			out.Entries[op.Key] = op.Value
		}
	}
	for _, k := range sealEntries {
		v, err := b.Get(ctx, k)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out.Entries[k] = v
	}
	c.mu.Lock()
	now := time.Now()
	for id, p := range c.challenges {
		if now.After(p.expires) {
			delete(c.challenges, id)
		}
	}
	c.challenges[serverID] = pendingChallenge{answer: answer, expires: now.Add(challengeTTL)}
	c.mu.Unlock()
	return out, nil
}

// Answer implements httpapi.Cluster on the active node: a correct answer
// gets a node certificate, and the node is added to raft as a non-voter
// once its cluster port answers (autopilot promotes it later).
func (c *cluster) Answer(ctx context.Context, req httpapi.JoinAnswer) (*httpapi.JoinCredentials, error) {
	c.mu.Lock()
	p, ok := c.challenges[req.ServerID]
	if ok && time.Now().After(p.expires) {
		ok = false
	}
	if ok && subtle.ConstantTimeCompare(p.answer, req.Answer) == 1 {
		delete(c.challenges, req.ServerID)
	} else {
		ok = false
	}
	st := c.store
	c.mu.Unlock()
	if !ok {
		return nil, logical.Errorf(logical.PermissionDenied, "permission denied: the answer does not match a pending challenge for this server_id")
	}
	if _, _, err := net.SplitHostPort(req.ClusterAddr); err != nil {
		return nil, logical.Errorf(logical.Invalid, "cluster_addr must be host:port")
	}
	b := c.raft()
	if b == nil || st == nil || !c.Active() {
		return nil, logical.Errorf(logical.Unavailable, "this node is no longer the active node: join again")
	}
	raw, err := st.Get(ctx, caKey)
	if err != nil {
		return nil, fmt.Errorf("server: read the cluster CA: %w", err)
	}
	var stored map[string][]byte
	if err := json.Unmarshal(raw, &stored); err != nil {
		return nil, fmt.Errorf("server: read the cluster CA: %w", err)
	}
	ca, err := raft.ParseCA(stored["cert"], stored["key"])
	if err != nil {
		return nil, err
	}
	cert, key, err := raft.IssueNodeCert(ca, req.ServerID)
	if err != nil {
		return nil, err
	}
	_ = st.Delete(ctx, challengeKey+req.ServerID)
	c.wg.Add(1)
	go c.addPeer(b, req.ServerID, req.ClusterAddr, !req.NonVoter)
	c.logger.Info("raft: join challenge answered; adding the node", "node_id", req.ServerID, "cluster_addr", req.ClusterAddr)
	return &httpapi.JoinCredentials{CACert: ca.CertPEM(), Cert: cert, Key: key, LeaderIndex: b.AppliedIndex()}, nil
}

// addPeer retries raft's Join until the new node's cluster port completes a
// handshake (it opens raft right after receiving its certificate).
func (c *cluster) addPeer(b *raft.Backend, id, addr string, voter bool) {
	defer c.wg.Done()
	deadline := time.Now().Add(joinCatchUp)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := b.Join(ctx, id, addr, voter)
		cancel()
		if err == nil {
			return
		}
		if errors.Is(err, raft.ErrNotLeader) || time.Now().After(deadline) {
			c.logger.Warn("raft: adding a node failed", "node_id", id, "err", err)
			return
		}
		select {
		case <-c.stop:
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Configuration, RemovePeer, AutopilotState implement httpapi.Cluster.
func (c *cluster) Configuration() (raft.Configuration, error) {
	b := c.raft()
	if b == nil {
		return raft.Configuration{}, logical.Errorf(logical.Invalid, "this node is not part of a raft cluster yet")
	}
	return b.Configuration()
}

func (c *cluster) RemovePeer(ctx context.Context, id string) error {
	b := c.raft()
	if b == nil {
		return errNotOpen
	}
	return b.RemovePeer(ctx, id)
}

func (c *cluster) AutopilotState() (raft.AutopilotState, error) {
	b := c.raft()
	if b == nil {
		return raft.AutopilotState{}, errNotOpen
	}
	return b.AutopilotState()
}

const autopilotKey = "core/raft/autopilot"

// AutopilotConfig returns the configuration in use on this node.
func (c *cluster) AutopilotConfig() raft.AutopilotConfig {
	if b := c.raft(); b != nil {
		return b.AutopilotConfig()
	}
	return raft.AutopilotConfig{}
}

// loadAutopilot applies the autopilot configuration stored at
// autopilotKey, if the barrier is open and one was stored: every node that
// becomes the active node calls it (on leadership and at unseal), so the
// configuration survives a failover. Nothing stored: the defaults stay.
func (c *cluster) loadAutopilot(ctx context.Context) {
	b := c.raft()
	c.mu.RLock()
	st := c.store
	c.mu.RUnlock()
	if b == nil || st == nil || !c.Active() {
		return
	}
	raw, err := st.Get(ctx, autopilotKey)
	if errors.Is(err, logical.ErrNotFound) {
		return
	}
	var cfg raft.AutopilotConfig
	if err == nil {
		err = json.Unmarshal(raw, &cfg)
	}
	if err != nil {
		c.logger.Warn("raft: could not load the stored autopilot configuration; keeping the one in use", "err", err)
		return
	}
	b.SetAutopilotConfig(cfg)
	c.logger.Info("raft: autopilot configuration loaded")
}

// SetAutopilotConfig stores the configuration in the barrier (replicated
// through raft, so a new active node applies it: loadAutopilot) and
// applies it here.
func (c *cluster) SetAutopilotConfig(ctx context.Context, cfg raft.AutopilotConfig) error {
	b := c.raft()
	c.mu.RLock()
	st := c.store
	c.mu.RUnlock()
	if b == nil || st == nil {
		return errNotOpen
	}
	raw, _ := json.Marshal(cfg)
	if err := st.Put(ctx, autopilotKey, raw); err != nil {
		return fmt.Errorf("server: store the autopilot configuration: %w", err)
	}
	b.SetAutopilotConfig(cfg)
	return nil
}

// Snapshot and SnapshotSize implement httpapi.Cluster and the core's
// backup; Restore the core's restore.
func (c *cluster) Snapshot(ctx context.Context, w io.Writer) (int64, error) {
	b := c.raft()
	if b == nil {
		return 0, errNotOpen
	}
	return b.Snapshot(ctx, w)
}

func (c *cluster) SnapshotSize() int64 {
	if b := c.raft(); b != nil {
		return b.SnapshotSize()
	}
	return 0
}

func (c *cluster) Restore(ctx context.Context, r io.Reader) error {
	b := c.raft()
	if b == nil {
		return errNotOpen
	}
	return b.Restore(ctx, r)
}

// Get, Scan, Apply and Close implement storage.Backend: the raft backend
// once open; before that, the seal entries a joining node received (so it
// can be unsealed), or nothing (an uninitialized node).
func (c *cluster) Get(ctx context.Context, key string) ([]byte, error) {
	c.mu.RLock()
	b, pre := c.backend, c.pre
	c.mu.RUnlock()
	if b != nil {
		return b.Get(ctx, key)
	}
	if v, ok := pre[key]; ok {
		return append([]byte(nil), v...), nil
	}
	return nil, storage.ErrNotFound
}

func (c *cluster) Scan(ctx context.Context, prefix string, fn func(string, []byte) error) error {
	c.mu.RLock()
	b, pre := c.backend, c.pre
	c.mu.RUnlock()
	if b != nil {
		return b.Scan(ctx, prefix, fn)
	}
	keys := make([]string, 0, len(pre))
	for k := range pre {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn(k, pre[k]); err != nil {
			return err
		}
	}
	return nil
}

func (c *cluster) Apply(ctx context.Context, ops []storage.Op) error {
	b := c.raft()
	if b == nil {
		return errNotOpen
	}
	if err := b.Apply(ctx, ops); err != nil {
		return err
	}
	if rec, ok := ctx.Value(recorderKey{}).(*recorder); ok {
		rec.mu.Lock()
		rec.ops = append(rec.ops, ops...)
		rec.mu.Unlock()
	}
	return nil
}

// Close stops the cluster's goroutines and closes raft. It is idempotent.
func (c *cluster) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.stop)
		c.wg.Wait()
		if b := c.raft(); b != nil {
			err = b.Close()
		}
	})
	return err
}

// runSnapshots writes a snapshot every interval while this node is active
// (raft_snapshots, Coffer-only), keeping the newest Retain files.
func (c *cluster) runSnapshots(b *raft.Backend) {
	defer c.wg.Done()
	sc := c.set.Snapshots
	t := time.NewTicker(sc.Interval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		if !c.Active() {
			continue
		}
		if err := writeSnapshot(b, sc, time.Now()); err != nil {
			c.logger.Error("raft: automated snapshot failed", "err", err)
		}
	}
}

// writeSnapshot saves one snapshot atomically (temp file, fsync, rename)
// and prunes the oldest beyond sc.Retain.
func writeSnapshot(b interface {
	Snapshot(context.Context, io.Writer) (int64, error)
}, sc *snapshotSchedule, now time.Time) error {
	if err := os.MkdirAll(sc.Path, 0o700); err != nil {
		return err
	}
	name := filepath.Join(sc.Path, "coffer-snapshot-"+now.UTC().Format("20060102T150405.000Z")+".snap")
	tmp, err := os.CreateTemp(sc.Path, ".snapshot-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if _, err := b.Snapshot(ctx, tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return err
	}
	old, _ := filepath.Glob(filepath.Join(sc.Path, "coffer-snapshot-*.snap"))
	sort.Strings(old)
	for len(old) > sc.Retain {
		os.Remove(old[0])
		old = old[1:]
	}
	return nil
}

// retryJoinLoop joins through the retry_join blocks until this node is
// part of a cluster (or is joining) or ctx is done.
func (c *cluster) retryJoinLoop(ctx context.Context) {
	for {
		c.mu.RLock()
		done := c.backend != nil || c.joining != nil
		c.mu.RUnlock()
		if done {
			return
		}
		for _, rj := range c.set.RetryJoin {
			if err := c.Join(ctx, rj.LeaderAPIAddr, rj.CACertPEM, false); err != nil {
				c.logger.Debug("raft: retry_join attempt failed", "leader", rj.LeaderAPIAddr, "err", err)
				continue
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(joinRetryDelay):
		}
	}
}

// openBackend opens the configured storage; for raft it also returns the
// cluster (nil otherwise) and starts retry_join.
func openBackend(ctx context.Context, cfg *config.Config, logger *slog.Logger) (storage.Backend, *cluster, error) {
	if cfg.Storage.Type != "raft" {
		b, err := openStorage(cfg.Storage, logger)
		return b, nil, err
	}
	set, err := raftSettingsFromConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	cl, err := openCluster(set, logger)
	if err != nil {
		return nil, nil, err
	}
	if len(set.RetryJoin) > 0 {
		go cl.retryJoinLoop(ctx)
	}
	return cl, cl, nil
}

// coreCluster and apiCluster avoid a typed nil in an interface.
func coreCluster(c *cluster) core.Cluster {
	if c == nil {
		return nil
	}
	return c
}

func apiCluster(c *cluster) httpapi.Cluster {
	if c == nil {
		return nil
	}
	return c
}
