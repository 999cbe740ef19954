package operator

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/coffer-dev/coffer/internal/agent"
)

// EventType is the event-type glob the operator subscribes to.
const EventType = "kv*"

// interest is what one CofferSecret wants to hear about.
type interest struct {
	sess  *session
	paths map[string]bool
}

// hub keeps one event subscription per login identity and turns events
// into resyncs of the CofferSecrets that read the changed paths. It is a
// manager Runnable: subscriptions live while Start runs.
type hub struct {
	log     *slog.Logger
	trigger func(types.NamespacedName) // marks forced and enqueues
	// subscribe is the event source; tests may replace it.
	subscribe func(ctx context.Context, s *session, token string, ch chan<- agent.Event) error
	backoff   time.Duration // first retry delay; doubles to 30 s

	starts chan *session // new identities to subscribe for

	mu        sync.Mutex // guards following
	interests map[types.NamespacedName]interest
	running   map[identity]bool
}

func newHub(log *slog.Logger, trigger func(types.NamespacedName)) *hub {
	return &hub{
		log: log, trigger: trigger, backoff: time.Second,
		subscribe: func(ctx context.Context, s *session, token string, ch chan<- agent.Event) error {
			return agent.WebSocketEvents{Address: s.id.server, HTTPClient: s.stream, EventType: EventType}.Subscribe(ctx, token, ch)
		},
		starts:    make(chan *session, 64),
		interests: map[types.NamespacedName]interest{},
		running:   map[identity]bool{},
	}
}

// Watch records that nn reads paths through s, and makes sure s's
// identity has a subscription.
func (h *hub) Watch(nn types.NamespacedName, s *session, paths []string) {
	set := make(map[string]bool, len(paths))
	for _, p := range paths {
		set[strings.Trim(p, "/")] = true
	}
	h.mu.Lock()
	h.interests[nn] = interest{sess: s, paths: set}
	start := !h.running[s.id]
	if start {
		h.running[s.id] = true
	}
	h.mu.Unlock()
	if start {
		h.starts <- s
	}
}

// Forget drops nn's interest (it was deleted).
func (h *hub) Forget(nn types.NamespacedName) {
	h.mu.Lock()
	delete(h.interests, nn)
	h.mu.Unlock()
}

// match returns the CofferSecrets of id that read path ("" matches all).
func (h *hub) match(id identity, path string) []types.NamespacedName {
	path = strings.Trim(path, "/")
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []types.NamespacedName
	for nn, in := range h.interests {
		if in.sess.id == id && (path == "" || in.paths[path]) {
			out = append(out, nn)
		}
	}
	return out
}

// Start runs subscriptions until ctx is done.
func (h *hub) Start(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-h.starts:
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.run(ctx, s)
			}()
		}
	}
}

// NeedLeaderElection: only the leader syncs, so only it subscribes.
func (h *hub) NeedLeaderElection() bool { return true }

// run keeps one identity's subscription open, reconnecting with backoff.
// After every (re)connect it resyncs that identity's CofferSecrets, since
// events may have been missed while disconnected.
func (h *hub) run(ctx context.Context, s *session) {
	wait := h.backoff
	for ctx.Err() == nil {
		tok, err := s.Token(ctx)
		if err == nil {
			ch := make(chan agent.Event, 64)
			done := make(chan error, 1)
			subCtx, cancel := context.WithCancel(ctx)
			go func() { done <- h.subscribe(subCtx, s, tok, ch) }()
			connected := time.Now()
			err = h.pump(ctx, s, ch, done)
			cancel()
			if time.Since(connected) > time.Minute {
				wait = h.backoff
			}
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, agent.ErrEventsUnsupported) {
			h.log.WarnContext(ctx, "server has no event stream; relying on refreshInterval", "store", s.id.String())
			wait = 5 * time.Minute
		} else {
			h.log.WarnContext(ctx, "event stream ended", "store", s.id.String(), "err", err, "retry_in", wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, 30*time.Second)
	}
}

// pump delivers events until the subscription ends. The first message
// or a 2 s quiet period counts as connected, and resyncs every
// CofferSecret of the identity once.
func (h *hub) pump(ctx context.Context, s *session, ch <-chan agent.Event, done <-chan error) error {
	resynced := false
	resync := func() {
		if !resynced {
			resynced = true
			for _, nn := range h.match(s.id, "") {
				h.trigger(nn)
			}
		}
	}
	quiet := time.NewTimer(2 * time.Second)
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-done:
			return err
		case <-quiet.C:
			resync()
		case ev := <-ch:
			resync()
			for _, nn := range h.match(s.id, ev.Path) {
				h.trigger(nn)
			}
		}
	}
}
