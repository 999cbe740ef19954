package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"golang.org/x/net/websocket"

	"github.com/coffer-dev/coffer/internal/core"
	"github.com/coffer-dev/coffer/internal/events"
	"github.com/coffer-dev/coffer/internal/logical"
)

// cloudEvent is one message of sys/events/subscribe, in Vault's shape
// (CloudEvents 1.0 with Vault's data).
type cloudEvent struct {
	ID              string         `json:"id"`
	Source          string         `json:"source"`
	SpecVersion     string         `json:"specversion"`
	Type            string         `json:"type"`
	DataContentType string         `json:"datacontentype"`
	Time            string         `json:"time"`
	Data            cloudEventData `json:"data"`
}

type cloudEventData struct {
	Event struct {
		ID       string            `json:"id"`
		Metadata map[string]string `json:"metadata"`
	} `json:"event"`
	EventType  string `json:"event_type"`
	PluginInfo struct {
		MountClass    string `json:"mount_class"`
		MountAccessor string `json:"mount_accessor"`
		MountPath     string `json:"mount_path"`
		Plugin        string `json:"plugin"`
	} `json:"plugin_info"`
}

func toCloudEvent(e events.Event) cloudEvent {
	ce := cloudEvent{
		ID: e.ID, Source: "coffer://", SpecVersion: "1.0", Type: "*",
		DataContentType: "application/cloudevents", Time: e.Time.Format(time.RFC3339Nano),
	}
	ce.Data.Event.ID = e.ID
	ce.Data.Event.Metadata = e.Metadata
	ce.Data.EventType = e.Type
	ce.Data.PluginInfo.MountClass = e.MountClass
	ce.Data.PluginInfo.MountAccessor = e.MountAccessor
	ce.Data.PluginInfo.MountPath = e.MountPath
	ce.Data.PluginInfo.Plugin = e.Plugin
	return ce
}

// subscribe serves GET /v1/sys/events/subscribe/<type-pattern>?json=true,
// upgraded to a WebSocket: one JSON CloudEvent per text message. The
// token is checked before the upgrade (a refusal is an ordinary JSON
// error) and again every core.EventRecheckInterval.
func (s *server) subscribe(w http.ResponseWriter, r *http.Request) {
	pattern := strings.TrimPrefix(r.URL.Path, "/v1/sys/events/subscribe/")
	if pattern == "" {
		writeError(w, s.logger, logical.Errorf(logical.Invalid, "missing event type: subscribe to sys/events/subscribe/<type>, e.g. kv-v2/data-write or *"))
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		writeError(w, s.logger, logical.Errorf(logical.Invalid, "sys/events/subscribe needs a WebSocket upgrade"))
		return
	}
	if s.subscribeStandby(w, r) {
		return
	}
	tok := requestToken(r)
	sub, err := s.core.Subscribe(clientCtx(r), tok, pattern)
	if err != nil {
		writeError(w, s.logger, err)
		return
	}
	ws := websocket.Server{
		// Clients are API clients, not browsers: no Origin check.
		Handshake: func(*websocket.Config, *http.Request) error { return nil },
		Handler: func(conn *websocket.Conn) {
			defer sub.Close()
			defer conn.Close()
			// The reader notices the client going away (and answers
			// pings, which x/net/websocket does while reading).
			gone := make(chan struct{})
			go func() {
				defer close(gone)
				var msg []byte
				for websocket.Message.Receive(conn, &msg) == nil {
				}
			}()
			recheck := time.NewTicker(core.EventRecheckInterval())
			defer recheck.Stop()
			changed := s.roleChanged(r.Context()) // see events_ha.go
			for {
				select {
				case <-gone:
					return
				case <-changed:
					return
				case <-recheck.C:
					if s.core.CheckToken(clientCtx(r), tok) != nil {
						return // revoked or expired: the stream ends
					}
				case e, ok := <-sub.C:
					if !ok {
						return
					}
					b, err := json.Marshal(toCloudEvent(e))
					if err != nil {
						return
					}
					conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
					if err := websocket.Message.Send(conn, string(b)); err != nil {
						return
					}
				}
			}
		},
	}
	ws.ServeHTTP(w, r)
}
