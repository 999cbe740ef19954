package compat

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"golang.org/x/net/websocket"
)

type eventMsg struct {
	Data struct {
		Event struct {
			Metadata map[string]string `json:"metadata"`
		} `json:"event"`
		EventType  string `json:"event_type"`
		PluginInfo struct {
			MountPath string `json:"mount_path"`
		} `json:"plugin_info"`
	} `json:"data"`
}

func subscribeWS(t *testing.T, p *proc, token, pattern string) *websocket.Conn {
	t.Helper()
	cfg, err := websocket.NewConfig(strings.Replace(p.addr, "http", "ws", 1)+"/v1/sys/events/subscribe/"+pattern+"?json=true", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Header = http.Header{"X-Vault-Token": {token}}
	conn, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatalf("subscribe %s: %v", pattern, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func nextEvent(t *testing.T, conn *websocket.Conn, within time.Duration) (*eventMsg, error) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(within))
	var raw string
	if err := websocket.Message.Receive(conn, &raw); err != nil {
		return nil, err
	}
	var m eventMsg
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("event is not JSON: %s", raw)
	}
	if strings.Contains(raw, "EventCanary") {
		t.Errorf("an event carries a secret value: %s", raw)
	}
	return &m, nil
}

// TestEventsPushWrites subscribes over a WebSocket and sees KV writes at
// once, filtered by what the subscriber may read.
func TestEventsPushWrites(t *testing.T) {
	p, root := startDev(t)
	cx := ctx(t)
	conn := subscribeWS(t, p, "root", "kv*")

	start := time.Now()
	if _, err := root.KVv2("secret").Put(cx, "app/db", map[string]any{"pw": "EventCanary"}); err != nil {
		t.Fatal(err)
	}
	ev, err := nextEvent(t, conn, 30*time.Second)
	if err != nil {
		t.Fatalf("no event after a write: %v", err)
	}
	t.Logf("event arrived %v after the write began", time.Since(start))
	md := ev.Data.Event.Metadata
	if ev.Data.EventType != "kv-v2/data-write" || md["path"] != "secret/data/app/db" || md["data_path"] != "secret/data/app/db" || md["current_version"] != "1" || ev.Data.PluginInfo.MountPath != "secret/" {
		t.Errorf("event = %+v", ev.Data)
	}

	// A subscriber that may read only secret/data/mine/* sees only that.
	if err := root.Sys().PutPolicyWithContext(cx, "sub", `
path "sys/events/subscribe/*" { capabilities = ["subscribe"] }
path "secret/data/mine/*" { capabilities = ["read"] }
`); err != nil {
		t.Fatal(err)
	}
	sec, err := root.Auth().Token().CreateWithContext(cx, &vault.TokenCreateRequest{Policies: []string{"sub"}})
	if err != nil {
		t.Fatal(err)
	}
	limited := subscribeWS(t, p, sec.Auth.ClientToken, "kv-v2/*")
	root.KVv2("secret").Put(cx, "other", map[string]any{"pw": "EventCanary"})
	root.KVv2("secret").Put(cx, "mine/x", map[string]any{"pw": "EventCanary"})
	ev, err = nextEvent(t, limited, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := ev.Data.Event.Metadata["data_path"]; got != "secret/data/mine/x" {
		t.Errorf("limited subscriber got an event for %s", got)
	}

	// No subscribe capability: refused before the upgrade.
	if err := root.Sys().PutPolicyWithContext(cx, "nosub", `path "secret/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	sec2, _ := root.Auth().Token().CreateWithContext(cx, &vault.TokenCreateRequest{Policies: []string{"nosub"}})
	cfg, _ := websocket.NewConfig(strings.Replace(p.addr, "http", "ws", 1)+"/v1/sys/events/subscribe/kv*?json=true", p.addr)
	cfg.Header = http.Header{"X-Vault-Token": {sec2.Auth.ClientToken}}
	if c, err := websocket.DialConfig(cfg); err == nil {
		c.Close()
		t.Error("a token without subscribe opened a stream")
	}
}
