package logical

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestEpochGuard(t *testing.T) {
	var mu sync.RWMutex
	resets := 0
	reset := func() { resets++ }

	var none *EpochGuard = NewEpochGuard(nil)
	none.Sync(&mu, reset)
	if none != nil || resets != 0 {
		t.Fatalf("a guard without an epoch reset %d times", resets)
	}

	var epoch atomic.Uint64
	epoch.Store(7)
	g := NewEpochGuard(epoch.Load)
	for range 3 {
		g.Sync(&mu, reset)
	}
	if resets != 0 {
		t.Errorf("%d resets while the epoch stayed at its start value, want 0", resets)
	}
	epoch.Add(1)
	g.Sync(&mu, reset)
	g.Sync(&mu, reset)
	if resets != 1 {
		t.Errorf("%d resets after one move, want 1", resets)
	}
	epoch.Store(3) // any change counts, not only growth
	g.Sync(&mu, reset)
	if resets != 2 {
		t.Errorf("%d resets after a move back, want 2", resets)
	}
}
