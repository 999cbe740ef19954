package raft

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"
)

// handshakeTimeout bounds a TLS handshake on the cluster port.
const handshakeTimeout = 10 * time.Second

// netFaults lets tests cut a node's cluster traffic, inbound and outbound.
// It is nil in production.
type netFaults interface {
	// Allowed reports whether traffic may flow now.
	Allowed() bool
	// Track wraps a raw connection so that a later cut can close it.
	Track(net.Conn) net.Conn
}

// streamLayer is raft's NetworkTransport stream layer over mutual TLS: the
// listener accepts only peers presenting a certificate from the cluster CA,
// and Dial presents ours and checks theirs.
type streamLayer struct {
	ln        net.Listener // raw TCP
	advertise net.Addr
	server    *tls.Config
	client    *tls.Config
	faults    netFaults
}

func newStreamLayer(addr, advertise string, cfg *tls.Config, faults netFaults) (*streamLayer, error) {
	if cfg == nil || (len(cfg.Certificates) == 0 && cfg.GetCertificate == nil) || cfg.RootCAs == nil || cfg.ClientCAs == nil {
		return nil, errors.New("raft: Config.TLS needs Certificates, RootCAs and ClientCAs (see NodeTLSConfig)")
	}
	server := cfg.Clone()
	server.ClientAuth = tls.RequireAndVerifyClientCert
	client := cfg.Clone()
	if client.ServerName == "" {
		client.ServerName = ClusterServerName
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("raft: listen on cluster address %s: %w", addr, err)
	}
	s := &streamLayer{ln: ln, advertise: ln.Addr(), server: server, client: client, faults: faults}
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("raft: advertise address %s: %w", advertise, err)
		}
		s.advertise = a
	}
	return s, nil
}

// Accept returns the next inbound connection. The TLS handshake runs on the
// connection's first read or write, bounded by handshakeTimeout, so a slow
// peer cannot hold up the accept loop.
func (s *streamLayer) Accept() (net.Conn, error) {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return nil, err
		}
		if s.faults != nil {
			if !s.faults.Allowed() {
				c.Close()
				continue
			}
			c = s.faults.Track(c)
		}
		return &serverConn{Conn: tls.Server(c, s.server)}, nil
	}
}

func (s *streamLayer) Close() error   { return s.ln.Close() }
func (s *streamLayer) Addr() net.Addr { return s.advertise }

// Dial connects to a peer and completes the TLS handshake within timeout.
func (s *streamLayer) Dial(address hraft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = handshakeTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.dial(ctx, string(address))
}

func (s *streamLayer) dial(ctx context.Context, address string) (net.Conn, error) {
	if s.faults != nil && !s.faults.Allowed() {
		return nil, fmt.Errorf("raft: dial %s: network cut", address)
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	if s.faults != nil {
		raw = s.faults.Track(raw)
	}
	tc := tls.Client(raw, s.client)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("raft: TLS handshake with %s: %w", address, err)
	}
	return tc, nil
}

// serverConn runs the server handshake once, with a deadline, before the
// first read or write.
type serverConn struct {
	*tls.Conn
	once sync.Once
	err  error
}

func (c *serverConn) handshake() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		defer cancel()
		c.err = c.Conn.HandshakeContext(ctx)
	})
	return c.err
}

func (c *serverConn) Read(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *serverConn) Write(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// peerState is what the leader last heard from a follower.
type peerState struct {
	lastContact time.Time
	lastIndex   uint64 // the follower's last log index
	lastTerm    uint64
}

// trackingTransport is raft's NetworkTransport that records, from each
// AppendEntries response (heartbeats included), the follower's last log
// index and the time of contact: the input of autopilot. Pipelining is off
// (raft's own measurements show it does not help with batching), so every
// append goes through AppendEntries.
type trackingTransport struct {
	*hraft.NetworkTransport

	mu    sync.Mutex // guards following
	peers map[hraft.ServerID]peerState
}

func (t *trackingTransport) AppendEntriesPipeline(hraft.ServerID, hraft.ServerAddress) (hraft.AppendPipeline, error) {
	return nil, hraft.ErrPipelineReplicationNotSupported
}

func (t *trackingTransport) AppendEntries(id hraft.ServerID, target hraft.ServerAddress, args *hraft.AppendEntriesRequest, resp *hraft.AppendEntriesResponse) error {
	err := t.NetworkTransport.AppendEntries(id, target, args, resp)
	if err == nil {
		t.mu.Lock()
		t.peers[id] = peerState{lastContact: time.Now(), lastIndex: resp.LastLog, lastTerm: resp.Term}
		t.mu.Unlock()
	}
	return err
}

func (t *trackingTransport) peer(id hraft.ServerID) (peerState, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.peers[id]
	return p, ok
}
