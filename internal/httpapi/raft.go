package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coffer-dev/coffer/internal/core"
	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/storage/raft"
)

// Cluster is what the HTTP API needs of a raft server (internal/server
// implements it). A nil Cluster is a single server: no forwarding, no
// sys/storage/raft endpoints.
type Cluster interface {
	// Active reports whether this node is the active node.
	Active() bool
	// Leader describes the active node as this node knows it; ok is false
	// when no active node is known (an election, a minority partition, or
	// this node is sealed and cannot read where the active node is).
	Leader(ctx context.Context) (l LeaderInfo, ok bool)
	// AppliedIndex is the raft index this node has applied.
	AppliedIndex() uint64
	// WaitForIndex waits until this node has applied idx or ctx is done.
	WaitForIndex(ctx context.Context, idx uint64) error
	// InContact reports whether this standby heard from the active node
	// recently enough (raft's heartbeat timeout) to serve reads from its
	// local store; a standby out of contact, for example in a minority
	// partition, forwards instead.
	InContact() bool
	// Join starts joining the cluster whose active node (or any node)
	// answers at leaderAPIAddr, trusting caCertPEM for its API's TLS
	// (empty: the system roots). The node must be uninitialized; it gets
	// the cluster's seal configuration and completes the join once it is
	// unsealed.
	Join(ctx context.Context, leaderAPIAddr string, caCertPEM []byte, nonVoter bool) error
	// Challenge and Answer are the active node's side of a join.
	Challenge(ctx context.Context, serverID string) (*JoinChallenge, error)
	Answer(ctx context.Context, req JoinAnswer) (*JoinCredentials, error)
	// Configuration, RemovePeer, AutopilotState, AutopilotConfig and
	// SetAutopilotConfig are raft's (see internal/storage/raft).
	Configuration() (raft.Configuration, error)
	RemovePeer(ctx context.Context, nodeID string) error
	AutopilotState() (raft.AutopilotState, error)
	AutopilotConfig() raft.AutopilotConfig
	SetAutopilotConfig(ctx context.Context, cfg raft.AutopilotConfig) error
	// Snapshot streams a raft snapshot of this node's applied state.
	Snapshot(ctx context.Context, w io.Writer) (int64, error)
	SnapshotSize() int64
}

// LeaderInfo is the active node as published in storage.
type LeaderInfo struct {
	NodeID      string    `json:"node_id"`
	APIAddr     string    `json:"api_addr"`
	ClusterAddr string    `json:"cluster_addr"`
	ActiveTime  time.Time `json:"active_time"`
	IsSelf      bool      `json:"-"`
}

// JoinChallenge is the active node's answer to bootstrap/challenge: the
// physical entries a joining node needs to be unsealed with the cluster's
// keys (seal configuration, wrapped root key, keyring) and the challenge,
// an entry encrypted by the barrier that only an unsealed node can read.
type JoinChallenge struct {
	ChallengePath string            `json:"challenge_path"`
	Entries       map[string][]byte `json:"entries"`
}

// JoinAnswer is a joining node's bootstrap/answer.
type JoinAnswer struct {
	ServerID    string `json:"server_id"`
	Answer      []byte `json:"answer"`
	ClusterAddr string `json:"cluster_addr"`
	NonVoter    bool   `json:"non_voter"`
}

// JoinCredentials are what a node that answered correctly receives: the
// cluster CA, its node certificate and key (PEM), and the active node's
// applied index to catch up to.
type JoinCredentials struct {
	CACert      []byte `json:"ca_cert"`
	Cert        []byte `json:"cert"`
	Key         []byte `json:"key"`
	LeaderIndex uint64 `json:"leader_index"`
}

// forwardedHeader marks a request forwarded by a standby: a node that is
// not active answers it with 503 instead of forwarding it again.
const forwardedHeader = "X-Coffer-Forwarded"

// indexHeader is Vault's read-your-writes header.
const indexHeader = "X-Vault-Index"

// standbyIndexWait bounds how long a standby waits for a client's index
// before forwarding the request instead.
const standbyIndexWait = 2 * time.Second

func (s *server) routeRaft(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/sys/storage/raft/join", s.raftJoin)
	mux.HandleFunc("PUT /v1/sys/storage/raft/join", s.raftJoin)
	mux.HandleFunc("POST /v1/sys/storage/raft/bootstrap/challenge", s.raftChallenge)
	mux.HandleFunc("PUT /v1/sys/storage/raft/bootstrap/challenge", s.raftChallenge)
	mux.HandleFunc("POST /v1/sys/storage/raft/bootstrap/answer", s.raftAnswer)
	mux.HandleFunc("PUT /v1/sys/storage/raft/bootstrap/answer", s.raftAnswer)
	mux.HandleFunc("GET /v1/sys/storage/raft/configuration", s.raftConfiguration)
	mux.HandleFunc("POST /v1/sys/storage/raft/remove-peer", s.raftRemovePeer)
	mux.HandleFunc("PUT /v1/sys/storage/raft/remove-peer", s.raftRemovePeer)
	mux.HandleFunc("GET /v1/sys/storage/raft/autopilot/state", s.raftAutopilotState)
	mux.HandleFunc("GET /v1/sys/storage/raft/autopilot/configuration", s.raftAutopilotConfig)
	mux.HandleFunc("POST /v1/sys/storage/raft/autopilot/configuration", s.raftSetAutopilotConfig)
	mux.HandleFunc("PUT /v1/sys/storage/raft/autopilot/configuration", s.raftSetAutopilotConfig)
	mux.HandleFunc("GET /v1/sys/storage/raft/snapshot", s.raftSnapshot)
	mux.HandleFunc("POST /v1/sys/storage/raft/snapshot", s.raftRestore)
	mux.HandleFunc("PUT /v1/sys/storage/raft/snapshot", s.raftRestore)
	mux.HandleFunc("POST /v1/sys/storage/raft/snapshot-force", s.raftRestore)
	mux.HandleFunc("PUT /v1/sys/storage/raft/snapshot-force", s.raftRestore)
}

// noCluster answers raft endpoints on a server without raft storage.
func (s *server) noCluster(w http.ResponseWriter) bool {
	if s.cluster != nil {
		return false
	}
	writeError(w, s.logger, logical.Errorf(logical.Invalid, "raft storage is not in use: configure storage \"raft\" to use sys/storage/raft"))
	return true
}

// encodeIndex renders idx as Vault's X-Vault-Index state:
// base64("v1:<cluster id>:<local index>:<replicated index>:<hex hmac>").
// The checksum is not keyed: the index only makes a node wait, or forward.
func encodeIndex(clusterID string, idx uint64) string {
	state := fmt.Sprintf("v1:%s:%d:0", clusterID, idx)
	sum := sha256.Sum256([]byte(state))
	return base64.StdEncoding.EncodeToString([]byte(state + ":" + hex.EncodeToString(sum[:])))
}

// decodeIndex returns the highest local index of the X-Vault-Index headers
// (Vault clients may send several), 0 if none parses.
func decodeIndex(values []string) uint64 {
	var best uint64
	for _, v := range values {
		raw, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			continue
		}
		parts := strings.Split(string(raw), ":")
		if len(parts) != 5 || parts[0] != "v1" {
			continue
		}
		if n, err := strconv.ParseUint(parts[2], 10, 64); err == nil && n > best {
			best = n
		}
	}
	return best
}

// setIndex adds X-Vault-Index to the answer to a write on the active node.
func (s *server) setIndex(w http.ResponseWriter, req *logical.Request) {
	if s.cluster == nil || req.Operation == logical.ReadOperation || req.Operation == logical.ListOperation {
		return
	}
	_, id := s.core.ClusterInfo()
	if id == "" {
		id = "coffer"
	}
	w.Header().Set(indexHeader, encodeIndex(id, s.cluster.AppliedIndex()))
}

// standby serves req on a standby: reads of KV mounts locally (after
// waiting for the client's X-Vault-Index), everything else forwarded to the
// active node. A standby that has not heard from the active node within
// raft's heartbeat timeout (Cluster.InContact) serves nothing locally: its
// store may lack writes committed by the rest of the cluster, so it
// forwards, and answers 503 when no active node is reachable. It reports
// false on the active node (or without a cluster): the caller serves the
// request.
func (s *server) standby(w http.ResponseWriter, r *http.Request, req *logical.Request, body []byte) bool {
	if s.cluster == nil || s.cluster.Active() {
		return false
	}
	if r.Header.Get(forwardedHeader) != "" {
		writeError(w, s.logger, logical.Errorf(logical.Unavailable, "this node is no longer the active node: retry the request"))
		return true
	}
	local := s.cluster.InContact()
	if idx := decodeIndex(r.Header.Values(indexHeader)); idx > 0 && local {
		ctx, cancel := context.WithTimeout(r.Context(), standbyIndexWait)
		local = s.cluster.WaitForIndex(ctx, idx) == nil
		cancel()
	}
	if local {
		resp, err := s.core.ServeStandby(r.Context(), req)
		if !errors.Is(err, core.ErrNotServedOnStandby) {
			if err != nil {
				writeError(w, s.logger, err)
				return true
			}
			writeResponse(w, req, resp)
			return true
		}
	}
	s.forward(w, r, body)
	return true
}

// forwardIfStandby forwards a bare endpoint's request to the active node
// when this node is a standby; it reports whether it did.
func (s *server) forwardIfStandby(w http.ResponseWriter, r *http.Request) bool {
	if s.cluster == nil || s.cluster.Active() {
		return false
	}
	if r.Header.Get(forwardedHeader) != "" {
		writeError(w, s.logger, logical.Errorf(logical.Unavailable, "this node is no longer the active node: retry the request"))
		return true
	}
	body, err := s.readBody(w, r)
	if err != nil {
		writeError(w, s.logger, err)
		return true
	}
	s.forward(w, r, body)
	return true
}

// hopHeaders are not copied when forwarding.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
}

// forward sends the request to the active node's API with its headers and
// body, and streams the answer back: the client sees no redirect.
func (s *server) forward(w http.ResponseWriter, r *http.Request, body []byte) {
	l, ok := s.cluster.Leader(r.Context())
	if !ok || l.IsSelf || l.APIAddr == "" {
		writeError(w, s.logger, logical.Errorf(logical.Unavailable, "no active node is known (election in progress, or no quorum): retry the request"))
		return
	}
	target := strings.TrimSuffix(l.APIAddr, "/") + r.URL.RequestURI()
	out, err := http.NewRequestWithContext(r.Context(), r.Method, target, bytes.NewReader(body))
	if err != nil {
		writeError(w, s.logger, fmt.Errorf("httpapi: forward: %w", err))
		return
	}
	for k, vs := range r.Header {
		if !hopHeaders[http.CanonicalHeaderKey(k)] {
			out.Header[k] = vs
		}
	}
	out.Header.Set(forwardedHeader, "1")
	out.Header.Set("X-Forwarded-For", r.RemoteAddr)
	resp, err := s.forwarder.Do(out)
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		s.logger.Warn("forwarding to the active node failed", "active", l.APIAddr, "err", err)
		writeError(w, s.logger, logical.Errorf(logical.Unavailable, "the active node could not be reached: retry the request"))
		return
	}
	defer resp.Body.Close()
	h := w.Header()
	for k := range h {
		delete(h, k)
	}
	for k, vs := range resp.Header {
		if !hopHeaders[http.CanonicalHeaderKey(k)] {
			h[k] = vs
		}
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(flushWriter{w}, resp.Body); err != nil && r.Context().Err() == nil {
		s.logger.Warn("streaming the active node's answer failed", "err", err)
	}
}

// flushWriter flushes after every write, so a long answer (a snapshot)
// streams.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

// raftLeader answers sys/leader on a raft server.
func (s *server) raftLeader(w http.ResponseWriter, r *http.Request) {
	l, ok := s.cluster.Leader(r.Context())
	body := map[string]any{
		"ha_enabled":                          true,
		"is_self":                             s.cluster.Active(),
		"active_time":                         "0001-01-01T00:00:00Z",
		"leader_address":                      "",
		"leader_cluster_address":              "",
		"performance_standby":                 false,
		"performance_standby_last_remote_wal": 0,
		"raft_committed_index":                s.cluster.AppliedIndex(),
		"raft_applied_index":                  s.cluster.AppliedIndex(),
	}
	if ok {
		body["leader_address"] = l.APIAddr
		body["leader_cluster_address"] = l.ClusterAddr
		if s.cluster.Active() {
			body["active_time"] = l.ActiveTime.UTC().Format(time.RFC3339Nano)
		}
	}
	writeJSON(w, http.StatusOK, body)
}

type raftJoinRequest struct {
	LeaderAPIAddr    string       `json:"leader_api_addr"`
	LeaderCACert     string       `json:"leader_ca_cert"`
	NonVoter         logical.Bool `json:"non_voter"`
	Retry            logical.Bool `json:"retry"`
	LeaderClientCert string       `json:"leader_client_cert"`
	LeaderClientKey  string       `json:"leader_client_key"`
}

// raftJoin is Vault's sys/storage/raft/join, on the node that joins: it is
// unauthenticated while the node is uninitialized, as in Vault.
func (s *server) raftJoin(w http.ResponseWriter, r *http.Request) {
	if s.noCluster(w) {
		return
	}
	var req raftJoinRequest
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, s.logger, err)
		return
	}
	if req.LeaderAPIAddr == "" || !(strings.HasPrefix(req.LeaderAPIAddr, "http://") || strings.HasPrefix(req.LeaderAPIAddr, "https://")) {
		writeError(w, s.logger, logical.Errorf(logical.Invalid, "leader_api_addr is required: the http(s):// address of a node of the cluster"))
		return
	}
	if err := s.cluster.Join(r.Context(), req.LeaderAPIAddr, []byte(req.LeaderCACert), bool(req.NonVoter)); err != nil {
		writeError(w, s.logger, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"joined": true})
}

type challengeRequest struct {
	ServerID string `json:"server_id"`
}

// raftChallenge and raftAnswer are unauthenticated: the proof is the
// answer, which only a node unsealed with the cluster's keys can give.
func (s *server) raftChallenge(w http.ResponseWriter, r *http.Request) {
	if s.noCluster(w) || s.forwardIfStandby(w, r) {
		return
	}
	var req challengeRequest
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, s.logger, err)
		return
	}
	ch, err := s.cluster.Challenge(r.Context(), req.ServerID)
	if err != nil {
		writeError(w, s.logger, err)
		return
	}
	writeJSON(w, http.StatusOK, ch)
}

func (s *server) raftAnswer(w http.ResponseWriter, r *http.Request) {
	if s.noCluster(w) || s.forwardIfStandby(w, r) {
		return
	}
	var req JoinAnswer
	body, err := s.readBody(w, r)
	if err == nil && json.Unmarshal(body, &req) != nil {
		err = logical.Errorf(logical.Invalid, "invalid JSON body")
	}
	if err != nil {
		writeError(w, s.logger, err)
		return
	}
	creds, err := s.cluster.Answer(r.Context(), req)
	if err != nil {
		writeError(w, s.logger, err)
		return
	}
	writeJSON(w, http.StatusOK, creds)
}

func (s *server) raftAuthorize(w http.ResponseWriter, r *http.Request, op logical.Operation, path string) bool {
	if s.noCluster(w) {
		return false
	}
	if err := s.core.Authorize(clientCtx(r), requestToken(r), op, path); err != nil {
		writeError(w, s.logger, err)
		return false
	}
	return true
}

func (s *server) raftConfiguration(w http.ResponseWriter, r *http.Request) {
	if !s.raftAuthorize(w, r, logical.ReadOperation, "sys/storage/raft/configuration") {
		return
	}
	cfg, err := s.cluster.Configuration()
	if err != nil {
		writeError(w, s.logger, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"config": cfg}})
}

type removePeerRequest struct {
	ServerID string `json:"server_id"`
}

func (s *server) raftRemovePeer(w http.ResponseWriter, r *http.Request) {
	if s.noCluster(w) || s.forwardIfStandby(w, r) || !s.raftAuthorize(w, r, logical.UpdateOperation, "sys/storage/raft/remove-peer") {
		return
	}
	var req removePeerRequest
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, s.logger, err)
		return
	}
	if req.ServerID == "" {
		writeError(w, s.logger, logical.Errorf(logical.Invalid, "server_id is required"))
		return
	}
	if err := s.cluster.RemovePeer(r.Context(), req.ServerID); err != nil {
		if errors.Is(err, raft.ErrUnknownPeer) {
			err = logical.Errorf(logical.Invalid, "no server with ID %q in the raft configuration", req.ServerID)
		}
		writeError(w, s.logger, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) raftAutopilotState(w http.ResponseWriter, r *http.Request) {
	if s.noCluster(w) || s.forwardIfStandby(w, r) || !s.raftAuthorize(w, r, logical.ReadOperation, "sys/storage/raft/autopilot/state") {
		return
	}
	st, err := s.cluster.AutopilotState()
	if err != nil {
		writeError(w, s.logger, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": st})
}

// autopilotConfigJSON is Vault's autopilot/configuration shape.
type autopilotConfigJSON struct {
	CleanupDeadServers             bool   `json:"cleanup_dead_servers"`
	LastContactThreshold           string `json:"last_contact_threshold"`
	DeadServerLastContactThreshold string `json:"dead_server_last_contact_threshold"`
	MaxTrailingLogs                uint64 `json:"max_trailing_logs"`
	MinQuorum                      int    `json:"min_quorum"`
	ServerStabilizationTime        string `json:"server_stabilization_time"`
	DisableUpgradeMigration        bool   `json:"disable_upgrade_migration"`
}

// raftAutopilotConfig answers with the active node's configuration (a
// standby forwards): the one autopilot uses.
func (s *server) raftAutopilotConfig(w http.ResponseWriter, r *http.Request) {
	if s.noCluster(w) || s.forwardIfStandby(w, r) || !s.raftAuthorize(w, r, logical.ReadOperation, "sys/storage/raft/autopilot/configuration") {
		return
	}
	c := s.cluster.AutopilotConfig()
	writeJSON(w, http.StatusOK, map[string]any{"data": autopilotConfigJSON{
		CleanupDeadServers:             c.CleanupDeadServers,
		LastContactThreshold:           c.LastContactThreshold.String(),
		DeadServerLastContactThreshold: c.DeadServerLastContactThreshold.String(),
		MaxTrailingLogs:                c.MaxTrailingLogs,
		MinQuorum:                      c.MinQuorum,
		ServerStabilizationTime:        c.ServerStabilizationTime.String(),
	}})
}

type autopilotConfigRequest struct {
	CleanupDeadServers             *logical.Bool     `json:"cleanup_dead_servers"`
	LastContactThreshold           *logical.Duration `json:"last_contact_threshold"`
	DeadServerLastContactThreshold *logical.Duration `json:"dead_server_last_contact_threshold"`
	MaxTrailingLogs                *logical.Int      `json:"max_trailing_logs"`
	MinQuorum                      *logical.Int      `json:"min_quorum"`
	ServerStabilizationTime        *logical.Duration `json:"server_stabilization_time"`
}

func (s *server) raftSetAutopilotConfig(w http.ResponseWriter, r *http.Request) {
	if s.noCluster(w) || s.forwardIfStandby(w, r) || !s.raftAuthorize(w, r, logical.UpdateOperation, "sys/storage/raft/autopilot/configuration") {
		return
	}
	var req autopilotConfigRequest
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, s.logger, err)
		return
	}
	c := s.cluster.AutopilotConfig()
	if req.CleanupDeadServers != nil {
		c.CleanupDeadServers = bool(*req.CleanupDeadServers)
	}
	if req.LastContactThreshold != nil {
		c.LastContactThreshold = time.Duration(*req.LastContactThreshold)
	}
	if req.DeadServerLastContactThreshold != nil {
		c.DeadServerLastContactThreshold = time.Duration(*req.DeadServerLastContactThreshold)
	}
	if req.MaxTrailingLogs != nil {
		if *req.MaxTrailingLogs < 0 {
			writeError(w, s.logger, logical.Errorf(logical.Invalid, "max_trailing_logs must not be negative"))
			return
		}
		c.MaxTrailingLogs = uint64(*req.MaxTrailingLogs)
	}
	if req.MinQuorum != nil {
		if *req.MinQuorum < 0 {
			writeError(w, s.logger, logical.Errorf(logical.Invalid, "min_quorum must not be negative"))
			return
		}
		c.MinQuorum = int(*req.MinQuorum)
	}
	if req.ServerStabilizationTime != nil {
		c.ServerStabilizationTime = time.Duration(*req.ServerStabilizationTime)
	}
	if c.LastContactThreshold < 0 || c.DeadServerLastContactThreshold < 0 || c.ServerStabilizationTime < 0 {
		writeError(w, s.logger, logical.Errorf(logical.Invalid, "durations must not be negative"))
		return
	}
	if err := s.cluster.SetAutopilotConfig(r.Context(), c); err != nil {
		writeError(w, s.logger, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// raftSnapshot streams a snapshot of this node's applied state (any node).
func (s *server) raftSnapshot(w http.ResponseWriter, r *http.Request) {
	if !s.raftAuthorize(w, r, logical.ReadOperation, "sys/storage/raft/snapshot") {
		return
	}
	w.Header().Set("Content-Type", "application/gzip")
	if n := s.cluster.SnapshotSize(); n > 0 {
		w.Header().Set("X-Coffer-Snapshot-Size", strconv.FormatInt(n, 10))
	}
	if _, err := s.cluster.Snapshot(r.Context(), w); err != nil {
		s.logger.Error("raft snapshot failed", "err", err)
	}
}

// raftRestore installs a snapshot on the whole cluster through the active
// node; the active node seals and must be unsealed with the keys of the
// snapshot's cluster (snapshot and snapshot-force alike).
func (s *server) raftRestore(w http.ResponseWriter, r *http.Request) {
	if s.noCluster(w) || s.forwardIfStandby(w, r) || !s.raftAuthorize(w, r, logical.UpdateOperation, strings.TrimPrefix(r.URL.Path, "/v1/")) {
		return
	}
	body := io.LimitReader(r.Body, maxRestoreSize)
	if err := s.core.Restore(clientCtx(r), requestToken(r), body); err != nil {
		writeError(w, s.logger, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
