package logical

import (
	"sync"
	"sync/atomic"
)

// EpochGuard keeps a cache honest on a node whose storage changes
// underneath it (a standby, fed by replication): see BackendConfig.Epoch.
// A nil *EpochGuard (no epoch: the owner is the only writer) does nothing.
type EpochGuard struct {
	epoch func() uint64
	seen  atomic.Uint64 // the epoch the cache's entries were read at or after
}

// NewEpochGuard returns a guard over epoch, or nil when epoch is nil.
func NewEpochGuard(epoch func() uint64) *EpochGuard {
	if epoch == nil {
		return nil
	}
	g := &EpochGuard{epoch: epoch}
	g.seen.Store(epoch())
	return g
}

// Sync calls reset, holding mu for writing, when the epoch moved since the
// last reset; a cache calls it before every lookup. An entry read from
// storage at epoch e is then served only while the epoch is still e:
// storage has not changed since. (A read racing with the move may cache a
// value read after it; the next Sync drops that too, and reset should bump
// the cache's generation so a put still in flight is refused.)
func (g *EpochGuard) Sync(mu *sync.RWMutex, reset func()) {
	if g == nil {
		return
	}
	e := g.epoch()
	if g.seen.Load() == e {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	if g.seen.Load() != e {
		reset()
		g.seen.Store(e)
	}
}
