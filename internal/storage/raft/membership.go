package raft

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"
)

// AutopilotConfig is Vault's sys/storage/raft/autopilot/configuration.
type AutopilotConfig struct {
	// CleanupDeadServers removes voters and non-voters that the leader has
	// not heard from for DeadServerLastContactThreshold, as long as at
	// least MinQuorum voters remain. Zero: off.
	CleanupDeadServers bool
	// DeadServerLastContactThreshold: zero: 24 h.
	DeadServerLastContactThreshold time.Duration
	// LastContactThreshold is how recent a server's last contact with the
	// leader must be for it to be healthy. Zero: 10 s.
	LastContactThreshold time.Duration
	// MaxTrailingLogs is how far a server's log may lag the leader's for it
	// to be healthy. Zero: 1000.
	MaxTrailingLogs uint64
	// MinQuorum is the fewest voters dead-server cleanup leaves. Zero: 3.
	MinQuorum int
	// ServerStabilizationTime is how long a non-voter must stay healthy
	// before it is promoted to voter. Zero: 10 s.
	ServerStabilizationTime time.Duration
}

func (c AutopilotConfig) withDefaults() AutopilotConfig {
	if c.DeadServerLastContactThreshold == 0 {
		c.DeadServerLastContactThreshold = 24 * time.Hour
	}
	if c.LastContactThreshold == 0 {
		c.LastContactThreshold = 10 * time.Second
	}
	if c.MaxTrailingLogs == 0 {
		c.MaxTrailingLogs = 1000
	}
	if c.MinQuorum == 0 {
		c.MinQuorum = 3
	}
	if c.ServerStabilizationTime == 0 {
		c.ServerStabilizationTime = 10 * time.Second
	}
	return c
}

// autopilot is the leader's view of its followers' health.
type autopilot struct {
	mu           sync.Mutex // guards following
	cfg          AutopilotConfig
	nonVoters    map[hraft.ServerID]bool      // joined with voter=false: never promoted
	healthySince map[hraft.ServerID]time.Time // zero: not healthy
	firstSeen    map[hraft.ServerID]time.Time
}

func (a *autopilot) init(cfg AutopilotConfig) {
	a.cfg = cfg
	a.nonVoters = make(map[hraft.ServerID]bool)
	a.healthySince = make(map[hraft.ServerID]time.Time)
	a.firstSeen = make(map[hraft.ServerID]time.Time)
}

// AutopilotConfig returns the autopilot configuration in use.
func (b *Backend) AutopilotConfig() AutopilotConfig {
	b.ap.mu.Lock()
	defer b.ap.mu.Unlock()
	return b.ap.cfg
}

// SetAutopilotConfig replaces the autopilot configuration (zero fields take
// their defaults). It is not replicated: the core persists it and sets it on
// each node (only the leader's is used).
func (b *Backend) SetAutopilotConfig(cfg AutopilotConfig) {
	b.ap.mu.Lock()
	defer b.ap.mu.Unlock()
	b.ap.cfg = cfg.withDefaults()
}

// Server is one member of the configuration, in Vault's
// sys/storage/raft/configuration shape.
type Server struct {
	NodeID          string `json:"node_id"`
	Address         string `json:"address"`
	Leader          bool   `json:"leader"`
	ProtocolVersion string `json:"protocol_version"`
	Voter           bool   `json:"voter"`
}

// Configuration is Vault's sys/storage/raft/configuration "config" object.
type Configuration struct {
	Servers []Server `json:"servers"`
	Index   uint64   `json:"index"`
}

// Configuration returns the latest cluster configuration this node knows.
func (b *Backend) Configuration() (Configuration, error) {
	f := b.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return Configuration{}, fmt.Errorf("raft: configuration: %w", err)
	}
	leaderID, _ := b.Leader()
	out := Configuration{Index: f.Index(), Servers: []Server{}}
	for _, s := range f.Configuration().Servers {
		out.Servers = append(out.Servers, Server{
			NodeID:          string(s.ID),
			Address:         string(s.Address),
			Leader:          string(s.ID) == leaderID,
			ProtocolVersion: fmt.Sprint(hraft.ProtocolVersionMax),
			Voter:           s.Suffrage == hraft.Voter,
		})
	}
	return out, nil
}

// Join adds nodeID at addr (its cluster address) to the cluster; call it on
// the leader once the node has proved it may join and is running Open with
// its certificate. Join first checks that addr completes a mutual TLS
// handshake with this node's certificate and CA, then adds the node as a
// non-voter; when voter is true, autopilot promotes it once it has kept up
// for ServerStabilizationTime. Joining a member again at the same address is
// a no-op. Errors: *NotLeaderError; a handshake error, with nothing changed.
func (b *Backend) Join(ctx context.Context, nodeID, addr string, voter bool) error {
	if nodeID == "" || addr == "" {
		return fmt.Errorf("raft: join: node ID and address are required")
	}
	if !b.IsLeader() {
		return b.notLeader()
	}
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	conn, err := b.stream.dial(hctx, addr)
	cancel()
	if err != nil {
		return fmt.Errorf("raft: join %s: %w", nodeID, err)
	}
	conn.Close()

	id := hraft.ServerID(nodeID)
	b.ap.mu.Lock()
	if voter {
		delete(b.ap.nonVoters, id)
	} else {
		b.ap.nonVoters[id] = true
	}
	b.ap.mu.Unlock()

	cf := b.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("raft: join %s: %w", nodeID, err)
	}
	var f hraft.IndexFuture
	for _, s := range cf.Configuration().Servers {
		if s.ID != id {
			continue
		}
		if string(s.Address) == addr {
			return nil
		}
		if s.Suffrage == hraft.Voter { // same node at a new address
			f = b.raft.AddVoter(id, hraft.ServerAddress(addr), 0, 0)
		}
	}
	if f == nil {
		f = b.raft.AddNonvoter(id, hraft.ServerAddress(addr), 0, 0)
	}
	if err := waitFuture(ctx, f); err != nil {
		return fmt.Errorf("raft: join %s: %w", nodeID, b.membershipErr(err))
	}
	b.log.Info("raft: node joined as non-voter", "node_id", nodeID, "address", addr, "promote", voter)
	return nil
}

// RemovePeer removes nodeID from the cluster (Vault's remove-peer). It runs
// on the leader; removing the leader itself makes it step down. Errors:
// *NotLeaderError, ErrUnknownPeer.
func (b *Backend) RemovePeer(ctx context.Context, nodeID string) error {
	if !b.IsLeader() {
		return b.notLeader()
	}
	cf := b.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("raft: remove peer: %w", err)
	}
	found := false
	for _, s := range cf.Configuration().Servers {
		found = found || string(s.ID) == nodeID
	}
	if !found {
		return fmt.Errorf("raft: remove peer %q: %w", nodeID, ErrUnknownPeer)
	}
	if err := waitFuture(ctx, b.raft.RemoveServer(hraft.ServerID(nodeID), 0, 0)); err != nil {
		return fmt.Errorf("raft: remove peer %q: %w", nodeID, b.membershipErr(err))
	}
	b.log.Info("raft: peer removed", "node_id", nodeID)
	return nil
}

func (b *Backend) membershipErr(err error) error {
	if err == hraft.ErrNotLeader || err == hraft.ErrLeadershipLost {
		return b.notLeader()
	}
	return err
}

// waitFuture waits for f or ctx. raft futures cannot be cancelled: on ctx
// done the change may still happen.
func waitFuture(ctx context.Context, f hraft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// AutopilotServer is one server in Vault's autopilot/state shape.
type AutopilotServer struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Address     string `json:"address"`
	NodeStatus  string `json:"node_status"` // alive, left (unreachable)
	LastContact string `json:"last_contact"`
	LastTerm    uint64 `json:"last_term"`
	LastIndex   uint64 `json:"last_index"`
	Healthy     bool   `json:"healthy"`
	StableSince string `json:"stable_since"` // RFC 3339; empty when unhealthy
	Status      string `json:"status"`       // leader, voter, non-voter
	NodeType    string `json:"node_type"`    // voter, non-voter
}

// AutopilotState is Vault's sys/storage/raft/autopilot/state.
type AutopilotState struct {
	Healthy          bool                       `json:"healthy"`
	FailureTolerance int                        `json:"failure_tolerance"`
	Leader           string                     `json:"leader"`
	Voters           []string                   `json:"voters"`
	NonVoters        []string                   `json:"non_voters,omitempty"`
	Servers          map[string]AutopilotServer `json:"servers"`
}

// AutopilotState reports the health of every server as the leader sees it.
// It runs on the leader (else *NotLeaderError).
func (b *Backend) AutopilotState() (AutopilotState, error) {
	if !b.IsLeader() {
		return AutopilotState{}, b.notLeader()
	}
	cf := b.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return AutopilotState{}, fmt.Errorf("raft: autopilot state: %w", err)
	}
	b.ap.mu.Lock()
	defer b.ap.mu.Unlock()
	now := time.Now()
	lastIndex, term := b.raft.LastIndex(), b.raft.CurrentTerm()
	st := AutopilotState{Healthy: true, Leader: b.cfg.NodeID, Servers: map[string]AutopilotServer{}, Voters: []string{}}
	healthyVoters := 0
	for _, s := range cf.Configuration().Servers {
		srv := AutopilotServer{ID: string(s.ID), Name: string(s.ID), Address: string(s.Address), NodeStatus: "alive", NodeType: "voter", Status: "voter"}
		if s.Suffrage != hraft.Voter {
			srv.NodeType, srv.Status = "non-voter", "non-voter"
		}
		if string(s.ID) == b.cfg.NodeID {
			srv.Status, srv.LastContact, srv.LastIndex, srv.LastTerm, srv.Healthy = "leader", "0s", lastIndex, term, true
		} else {
			p, ok := b.trans.peer(s.ID)
			srv.Healthy = ok && b.healthyLocked(p, now, lastIndex)
			if ok {
				srv.LastContact = now.Sub(p.lastContact).Round(time.Millisecond).String()
				srv.LastIndex, srv.LastTerm = p.lastIndex, p.lastTerm
			}
			if !ok || now.Sub(p.lastContact) > b.ap.cfg.LastContactThreshold {
				srv.NodeStatus = "left"
			}
		}
		if since := b.ap.healthySince[s.ID]; srv.Healthy && !since.IsZero() {
			srv.StableSince = since.UTC().Format(time.RFC3339Nano)
		}
		if s.Suffrage == hraft.Voter {
			st.Voters = append(st.Voters, string(s.ID))
			if srv.Healthy {
				healthyVoters++
			}
		} else {
			st.NonVoters = append(st.NonVoters, string(s.ID))
		}
		st.Healthy = st.Healthy && srv.Healthy
		st.Servers[string(s.ID)] = srv
	}
	sort.Strings(st.Voters)
	sort.Strings(st.NonVoters)
	st.FailureTolerance = max(0, healthyVoters-(len(st.Voters)/2+1))
	return st, nil
}

func (b *Backend) healthyLocked(p peerState, now time.Time, leaderIndex uint64) bool {
	if now.Sub(p.lastContact) > b.ap.cfg.LastContactThreshold {
		return false
	}
	return p.lastIndex+b.ap.cfg.MaxTrailingLogs >= leaderIndex
}

// runAutopilot promotes stable non-voters and cleans up dead servers while
// this node is the leader.
func (b *Backend) runAutopilot() {
	defer b.wg.Done()
	interval := max(b.unit/4, 50*time.Millisecond)
	t := time.NewTicker(interval)
	defer t.Stop()
	wasLeader := false
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		leader := b.IsLeader()
		if leader && !wasLeader {
			b.ap.mu.Lock()
			clear(b.ap.healthySince)
			clear(b.ap.firstSeen)
			b.ap.mu.Unlock()
		}
		wasLeader = leader
		if leader {
			b.autopilotStep(time.Now())
		}
	}
}

func (b *Backend) autopilotStep(now time.Time) {
	cf := b.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	servers := cf.Configuration().Servers
	lastIndex := b.raft.LastIndex()
	voters := 0
	for _, s := range servers {
		if s.Suffrage == hraft.Voter {
			voters++
		}
	}
	type change struct {
		promote bool
		s       hraft.Server
	}
	var changes []change
	b.ap.mu.Lock()
	for _, s := range servers {
		if string(s.ID) == b.cfg.NodeID {
			continue
		}
		if _, ok := b.ap.firstSeen[s.ID]; !ok {
			b.ap.firstSeen[s.ID] = now
		}
		p, ok := b.trans.peer(s.ID)
		if ok && b.healthyLocked(p, now, lastIndex) {
			if b.ap.healthySince[s.ID].IsZero() {
				b.ap.healthySince[s.ID] = now
			}
		} else {
			delete(b.ap.healthySince, s.ID)
		}
		since := b.ap.healthySince[s.ID]
		if s.Suffrage != hraft.Voter && !b.ap.nonVoters[s.ID] && !since.IsZero() && now.Sub(since) >= b.ap.cfg.ServerStabilizationTime {
			changes = append(changes, change{true, s})
		}
		if b.ap.cfg.CleanupDeadServers {
			last := b.ap.firstSeen[s.ID]
			if ok && p.lastContact.After(last) {
				last = p.lastContact
			}
			dead := now.Sub(last) > b.ap.cfg.DeadServerLastContactThreshold
			if dead && (s.Suffrage != hraft.Voter || voters-1 >= b.ap.cfg.MinQuorum) {
				changes = append(changes, change{false, s})
				if s.Suffrage == hraft.Voter {
					voters--
				}
			}
		}
	}
	b.ap.mu.Unlock()
	for _, c := range changes {
		if c.promote {
			if err := b.raft.AddVoter(c.s.ID, c.s.Address, 0, 0).Error(); err != nil {
				b.log.Warn("raft: autopilot: promotion failed", "node_id", c.s.ID, "err", err)
				continue
			}
			b.log.Info("raft: autopilot: promoted to voter", "node_id", c.s.ID)
			continue
		}
		if err := b.raft.RemoveServer(c.s.ID, 0, 0).Error(); err != nil {
			b.log.Warn("raft: autopilot: dead server removal failed", "node_id", c.s.ID, "err", err)
			continue
		}
		b.log.Info("raft: autopilot: removed dead server", "node_id", c.s.ID)
	}
}
