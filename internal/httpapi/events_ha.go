package httpapi

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// Events on a raft cluster: events are published in memory by the node
// that served the write, which is always the active node (standbys forward
// writes). A subscription made on a standby is therefore proxied, as one
// WebSocket connection, to the active node, which checks the token and
// serves the stream. When the active node changes, every stream that
// depended on the old one ends (the proxied ones on standbys and the local
// ones on a demoted node): the client reconnects and is served by the new
// active node. Events of writes made during the switch may be missed, as
// with Vault's own subscriptions.

// roleCheckInterval is how often a subscription checks that the node's
// role and the active node are still those it started with.
const roleCheckInterval = 250 * time.Millisecond

// roleChanged returns a channel closed once this node's role or the
// active node differs from what it is now, or ctx is done. Without a
// cluster it is never closed before ctx.
func (s *server) roleChanged(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{})
	if s.cluster == nil {
		go func() { <-ctx.Done(); close(ch) }()
		return ch
	}
	active := s.cluster.Active()
	l, _ := s.cluster.Leader(ctx)
	go func() {
		defer close(ch)
		t := time.NewTicker(roleCheckInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if s.cluster.Active() != active {
				return
			}
			if !active {
				now, ok := s.cluster.Leader(ctx)
				if !ok || now.APIAddr != l.APIAddr {
					return
				}
			}
		}
	}()
	return ch
}

// subscribeStandby proxies a sys/events/subscribe WebSocket from a
// standby to the active node; it reports false on the active node (or
// without a cluster): the caller serves the subscription locally. A
// refusal by the active node (bad token, bad pattern) is passed back
// as it is.
func (s *server) subscribeStandby(w http.ResponseWriter, r *http.Request) bool {
	if s.cluster == nil || s.cluster.Active() {
		return false
	}
	if r.Header.Get(forwardedHeader) != "" {
		writeError(w, s.logger, logical.Errorf(logical.Unavailable, "this node is no longer the active node: subscribe again"))
		return true
	}
	l, ok := s.cluster.Leader(r.Context())
	if !ok || l.IsSelf || l.APIAddr == "" {
		writeError(w, s.logger, logical.Errorf(logical.Unavailable, "no active node is known (election in progress, or no quorum): subscribe again"))
		return true
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := s.roleChanged(ctx)
	target := strings.TrimSuffix(l.APIAddr, "/") + r.URL.RequestURI()
	out, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		writeError(w, s.logger, fmt.Errorf("httpapi: forward subscription: %w", err))
		return true
	}
	for k, vs := range r.Header {
		out.Header[k] = vs
	}
	out.Header.Set(forwardedHeader, "1")
	out.Header.Set("X-Forwarded-For", r.RemoteAddr)
	// No client timeout: the stream lives as long as the subscription.
	client := &http.Client{Transport: s.forwarder.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(out)
	if err != nil {
		s.logger.Warn("forwarding a subscription to the active node failed", "active", l.APIAddr, "err", err)
		writeError(w, s.logger, logical.Errorf(logical.Unavailable, "the active node could not be reached: subscribe again"))
		return true
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
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
		io.Copy(w, resp.Body)
		return true
	}
	upstream, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		writeError(w, s.logger, fmt.Errorf("httpapi: forward subscription: the upgraded connection is not writable"))
		return true
	}
	defer upstream.Close()
	hj, ok := w.(http.Hijacker)
	if !ok {
		writeError(w, s.logger, fmt.Errorf("httpapi: forward subscription: the connection cannot be upgraded"))
		return true
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		s.logger.Warn("upgrading a proxied subscription failed", "err", err)
		return true
	}
	defer conn.Close()
	if err := writeUpgrade(brw, resp); err != nil {
		return true
	}
	pipe(conn, brw.Reader, upstream, changed)
	return true
}

// writeUpgrade writes the active node's 101 answer to the client.
func writeUpgrade(brw *bufio.ReadWriter, resp *http.Response) error {
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\n")
	if err := resp.Header.Write(brw); err != nil {
		return err
	}
	brw.WriteString("\r\n")
	return brw.Flush()
}

// pipe copies bytes both ways between the client and the active node
// until either side closes or stop is closed, then closes both.
func pipe(client net.Conn, clientR io.Reader, upstream io.ReadWriteCloser, stop <-chan struct{}) {
	done := make(chan struct{})
	var once sync.Once
	end := func() { once.Do(func() { close(done) }) }
	go func() { io.Copy(upstream, clientR); end() }()
	go func() { io.Copy(client, upstream); end() }()
	select {
	case <-done:
	case <-stop:
	}
	client.Close()
	upstream.Close()
}
