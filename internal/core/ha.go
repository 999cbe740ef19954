package core

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// High availability: with a replicated storage (raft), one node is active
// and the others are standbys. The core runs its active-only work (lease
// expiry and revocation, engines' Periodic hooks) only while its Cluster
// says it is active, and rebuilds its unsealed state (mount table, policy
// cache, token store, lease index, engines and their caches) from storage
// whenever it changes between active and standby, so that a new active node
// starts from everything its predecessor wrote.
//
// A standby serves reads of KV mounts itself (ServeStandby); httpapi
// forwards everything else to the active node. The caches a KV read
// depends on (mount table, policies) are kept honest with a generation
// marker: the active node writes a new random value at haGenerationKey
// after every successful write to a path that changes them
// (generationPrefixes), and a standby that reads a value other than the one
// it built its state with rebuilds before serving. See docs/ha.md.

// Cluster is the HA side of a replicated storage backend, wired by
// internal/server over raft. A nil Cluster is a single server: always
// active.
type Cluster interface {
	// BeforeInit is called at the start of Init, before anything is
	// written: the first node of a raft cluster bootstraps here. An error
	// fails Init with nothing written.
	BeforeInit(ctx context.Context) error
	// Unsealed is called under the core's write lock each time the core
	// builds its unsealed state, with the open barrier. A node that is
	// joining a cluster completes its join here (it proves it holds the
	// unseal keys, opens raft and catches up); the first node stores the
	// cluster CA. It must be idempotent. An error leaves the server sealed.
	Unsealed(ctx context.Context, s logical.Storage) error
	// Active reports whether this node is the active node: the raft
	// leader, having applied every entry of earlier leaders.
	Active() bool
}

// Epocher is implemented by a Cluster whose standbys may keep caches:
// AppliedIndex changes whenever replication changed storage, after the
// change is visible (raft's applied index).
type Epocher interface {
	AppliedIndex() uint64
}

// cacheMode says whether the state being built may cache what it reads,
// and on a standby the epoch its caches must watch (nil: no cache).
func (c *Core) cacheMode(active bool) (bool, func() uint64) {
	if active {
		return true, nil
	}
	if e, ok := c.cfg.Cluster.(Epocher); ok {
		return true, e.AppliedIndex
	}
	return false, nil
}

// haGenerationKey holds a random value rewritten after every write that
// changes what standbys cache.
const haGenerationKey = "core/ha/generation"

// generationPrefixes are the paths whose writes change the mount table,
// policies, the keyring or audit devices.
var generationPrefixes = []string{
	"sys/mounts", "sys/remount", "sys/auth", "sys/policy", "sys/policies",
	"sys/rotate", "sys/audit", "sys/storage/raft/snapshot",
}

// haPollInterval is how often the core checks whether its role changed.
const haPollInterval = 100 * time.Millisecond

// active reports whether this core should run active-only work now.
func (c *Core) active() bool { return c.cfg.Cluster == nil || c.cfg.Cluster.Active() }

// Standby reports whether this core is an unsealed or sealed standby of a
// cluster: requests it cannot serve must go to the active node.
func (c *Core) Standby() bool { return c.cfg.Cluster != nil && !c.cfg.Cluster.Active() }

// startHALoop starts, once, the goroutine that rebuilds the unsealed state
// when this node's role changes. It stops at Close.
func (c *Core) startHALoop() {
	if c.cfg.Cluster == nil {
		return
	}
	c.ha.once.Do(func() {
		c.ha.stop = make(chan struct{})
		c.ha.done = make(chan struct{})
		go c.haLoop()
	})
}

// haState is the Core's HA bookkeeping.
type haState struct {
	once      sync.Once
	stop      chan struct{} // closed by stopHALoop
	done      chan struct{} // closed when haLoop returns
	closeOnce sync.Once
}

// stopHALoop stops the role watcher and waits for it. It is idempotent and
// must not be called with c.mu held.
func (c *Core) stopHALoop() {
	if c.ha.stop == nil {
		return
	}
	c.ha.closeOnce.Do(func() { close(c.ha.stop) })
	<-c.ha.done
}

func (c *Core) haLoop() {
	defer close(c.ha.done)
	t := time.NewTicker(haPollInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ha.stop:
			return
		case <-t.C:
		}
		active := c.cfg.Cluster.Active()
		c.mu.RLock()
		stale := c.state != nil && c.state.active != active
		c.mu.RUnlock()
		if !stale {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		c.mu.Lock()
		if c.state != nil && c.state.active != c.cfg.Cluster.Active() {
			role := "standby"
			if c.cfg.Cluster.Active() {
				role = "active"
			}
			if err := c.rebuildLocked(ctx); err != nil {
				c.logger.Error("ha: rebuilding state after a role change failed; sealed", "role", role, "err", err)
			} else {
				c.logger.Info("ha: role changed", "role", role)
			}
		}
		c.mu.Unlock()
		cancel()
	}
}

// rebuildLocked drops the unsealed state and builds it again from storage
// over the open barrier. On failure the core is sealed. c.mu is held for
// writing.
func (c *Core) rebuildLocked(ctx context.Context) error {
	c.teardownLocked()
	if err := c.setupLocked(ctx); err != nil {
		c.barrier.Seal()
		c.seal.ResetUnseal()
		return err
	}
	return nil
}

// readGeneration returns the stored generation marker, "" if none.
func (c *Core) readGeneration(ctx context.Context) (string, error) {
	raw, err := c.barrier.Get(ctx, haGenerationKey)
	if errors.Is(err, logical.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("core: read generation: %w", err)
	}
	return string(raw), nil
}

// afterRequest runs after a request succeeded: on the active node of a
// cluster, a write to a cached path gets a new generation marker.
func (c *Core) afterRequest(ctx context.Context, req *logical.Request) {
	if c.cfg.Cluster == nil || req.Operation == logical.ReadOperation || req.Operation == logical.ListOperation {
		return
	}
	path := strings.TrimPrefix(req.Path, "/")
	hit := false
	for _, p := range generationPrefixes {
		hit = hit || strings.HasPrefix(path, p)
	}
	if !hit {
		return
	}
	if err := c.barrier.Put(ctx, haGenerationKey, []byte(c.newID())); err != nil {
		c.logger.Warn("ha: could not publish a new generation; standbys may serve from stale caches until their next role change", "err", err)
	}
}

// BumpGeneration writes a new generation marker, so that standbys rebuild
// their state (after a snapshot restore, for example).
func (c *Core) BumpGeneration(ctx context.Context) error {
	return c.barrier.Put(ctx, haGenerationKey, []byte(c.newID()))
}

// ErrNotServedOnStandby is returned by ServeStandby for a request that a
// standby does not serve itself: the caller forwards it to the active node.
var ErrNotServedOnStandby = errors.New("core: request must be served by the active node")

// ServeStandby serves req on a standby if it is a read or list of a KV
// mount without response wrapping, after rebuilding the state if the
// generation marker moved. It returns ErrNotServedOnStandby, having done
// nothing visible, for any other request, and also when serving it
// locally failed with an internal error (a write attempted on a follower,
// a key term this node has not loaded yet): reads are safe to retry on the
// active node.
func (c *Core) ServeStandby(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if req.WrapTTL > 0 || (req.Operation != logical.ReadOperation && req.Operation != logical.ListOperation) {
		return nil, ErrNotServedOnStandby
	}
	path, err := CleanPath(req.Path)
	if err != nil {
		return nil, ErrNotServedOnStandby
	}
	c.mu.RLock()
	st := c.state
	if st == nil {
		c.mu.RUnlock()
		return nil, logical.ErrSealed
	}
	m, _ := st.mounts.table.route(path)
	gen, gerr := c.readGeneration(ctx)
	kv := m != nil && m.entry.Type == "kv"
	stale := gerr == nil && gen != st.generation
	c.mu.RUnlock()
	if gerr != nil {
		return nil, ErrNotServedOnStandby
	}
	// Rebuild first: a mount created since this state was built is not in
	// its table yet.
	if stale {
		c.mu.Lock()
		if c.state != nil && c.state.generation != gen {
			if err := c.rebuildLocked(ctx); err != nil {
				c.mu.Unlock()
				c.logger.Error("ha: standby could not rebuild its state; sealed", "err", err)
				return nil, logical.ErrSealed
			}
		}
		c.mu.Unlock()
		return c.ServeStandby(ctx, req)
	}
	if !kv {
		return nil, ErrNotServedOnStandby
	}
	resp, err := c.HandleRequest(ctx, req)
	var le *logical.Error
	if err != nil && !errors.As(err, &le) {
		c.logger.Debug("ha: standby read failed locally; forwarding", "err", err)
		return nil, ErrNotServedOnStandby
	}
	return resp, err
}
