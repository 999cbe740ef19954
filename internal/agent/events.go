package agent

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/coffer-dev/coffer/api"
)

// Event is one change notification from the server.
type Event struct {
	// Type is the event type ("kv-v2/data-write").
	Type string
	// Path is the logical path that changed ("secret/data/app"); "" when
	// the server did not say, which makes the agent re-read every secret
	// that has no lease.
	Path string
}

// ErrEventsUnsupported is returned by an EventSource when the server has
// no event stream; the agent then relies on polling alone.
var ErrEventsUnsupported = errors.New("agent: the server has no event stream")

// EventSource delivers change events. Subscribe sends events to ch until
// ctx is done (it then returns ctx.Err()) or the stream fails; the agent
// calls it again with backoff. token is the agent's current token.
type EventSource interface {
	Subscribe(ctx context.Context, token string, ch chan<- Event) error
}

// NoEvents is an EventSource that never delivers anything: the agent
// polls only.
type NoEvents struct{}

// Subscribe blocks until ctx is done.
func (NoEvents) Subscribe(ctx context.Context, _ string, _ chan<- Event) error {
	<-ctx.Done()
	return ctx.Err()
}

// WebSocketEvents subscribes to GET /v1/sys/events/subscribe/<type>?json=true
// over WebSocket (RFC 6455), Vault's event stream, whose messages are
// CloudEvents JSON with the path in data.event.metadata.path.
type WebSocketEvents struct {
	// Address is the server's base URL.
	Address string
	// HTTPClient dials the server; its transport must speak HTTP/1.1
	// (an HTTP/2 connection cannot be upgraded). nil: http.DefaultClient.
	HTTPClient *http.Client
	// EventType is subscribed to. "": "*" (every event).
	EventType string
}

// maxMessage bounds one WebSocket message.
const maxMessage = 1 << 20

// Subscribe implements EventSource.
func (w WebSocketEvents) Subscribe(ctx context.Context, token string, ch chan<- Event) error {
	typ := w.EventType
	if typ == "" {
		typ = "*"
	}
	u, err := url.Parse(strings.TrimSuffix(w.Address, "/") + "/v1/sys/events/subscribe/" + url.PathEscape(typ) + "?json=true")
	if err != nil {
		return fmt.Errorf("agent: events: %w", err)
	}
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return fmt.Errorf("agent: events: %w", err)
	}
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("agent: events: %w", err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", key)
	req.Header.Set("X-Vault-Token", token)
	hc := w.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("agent: events: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNotImplemented:
			return ErrEventsUnsupported
		}
		if err := api.CheckResponse(resp); err != nil {
			return fmt.Errorf("agent: events: %w", err)
		}
		return fmt.Errorf("agent: events: unexpected status %d", resp.StatusCode)
	}
	conn, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return errors.New("agent: events: the HTTP transport cannot upgrade connections")
	}
	defer conn.Close()
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		return errors.New("agent: events: bad Sec-WebSocket-Accept")
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r := bufio.NewReader(conn)
	for {
		msg, err := readMessage(r, conn)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("agent: events: %w", err)
		}
		ev, ok := parseEvent(msg)
		if !ok {
			continue
		}
		select {
		case ch <- ev:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// parseEvent reads a CloudEvents JSON message.
func parseEvent(msg []byte) (Event, bool) {
	var m struct {
		Type string `json:"type"`
		Data struct {
			EventType string `json:"event_type"`
			Event     struct {
				Metadata map[string]any `json:"metadata"`
			} `json:"event"`
		} `json:"data"`
	}
	if json.Unmarshal(msg, &m) != nil {
		return Event{}, false
	}
	ev := Event{Type: m.Data.EventType}
	if ev.Type == "" {
		ev.Type = m.Type
	}
	ev.Path, _ = m.Data.Event.Metadata["path"].(string)
	return ev, true
}

// readMessage reads one data message, answering pings and assembling
// fragments. A close frame gives io.EOF.
func readMessage(r *bufio.Reader, w io.Writer) ([]byte, error) {
	var msg []byte
	for {
		var h [2]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return nil, err
		}
		fin, op := h[0]&0x80 != 0, h[0]&0x0f
		masked := h[1]&0x80 != 0
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(r, b[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(r, b[:]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		if n > maxMessage || uint64(len(msg))+n > maxMessage {
			return nil, errors.New("message too large")
		}
		var mask [4]byte
		if masked {
			if _, err := io.ReadFull(r, mask[:]); err != nil {
				return nil, err
			}
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			return nil, err
		}
		if masked {
			for i := range payload {
				payload[i] ^= mask[i%4]
			}
		}
		switch op {
		case 0x8: // close
			_ = writeFrame(w, 0x8, nil)
			return nil, io.EOF
		case 0x9: // ping
			if err := writeFrame(w, 0xA, payload); err != nil {
				return nil, err
			}
			continue
		case 0xA: // pong
			continue
		case 0x0, 0x1, 0x2:
			msg = append(msg, payload...)
			if fin {
				return msg, nil
			}
		default:
			return nil, fmt.Errorf("unknown opcode %d", op)
		}
	}
}

// writeFrame writes one masked frame (clients must mask) with a payload
// of at most 125 bytes (control frames).
func writeFrame(w io.Writer, op byte, payload []byte) error {
	if len(payload) > 125 {
		payload = payload[:125]
	}
	var mask [4]byte
	if _, err := rand.Read(mask[:]); err != nil {
		return err
	}
	f := []byte{0x80 | op, 0x80 | byte(len(payload))}
	f = append(f, mask[:]...)
	for i, b := range payload {
		f = append(f, b^mask[i%4])
	}
	_, err := w.Write(f)
	return err
}
