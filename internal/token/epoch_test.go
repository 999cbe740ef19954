package token

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/coffer-dev/coffer/internal/logical"
)

// A standby's store (Cache with Epoch) over the storage an active store
// writes: it answers from its cache while the epoch stays put, and sees a
// revocation made by the active store once the epoch has moved.
func TestCacheEpoch(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t) // the active store
	tok, _, err := f.store.Create(ctx, nil, CreateRequest{Policies: []string{"app"}})
	if err != nil {
		t.Fatal(err)
	}
	var epoch atomic.Uint64
	standby, err := New(Config{Storage: logical.NewView(f.mem, "sys/token/"), Leases: f.leases, Now: f.clock.Now, Cache: true, Epoch: epoch.Load})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := standby.Lookup(ctx, tok); err != nil {
		t.Fatalf("standby lookup of a live token: %v", err)
	}
	if err := f.store.Revoke(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := standby.Lookup(ctx, tok); err != nil {
		t.Errorf("standby lookup before the epoch moved = %v, want the cached entry (is the cache used?)", err)
	}
	epoch.Add(1)
	if e, err := standby.Lookup(ctx, tok); !errors.Is(err, ErrNotFound) {
		t.Errorf("standby lookup of a revoked token after the epoch moved = %+v, %v; want ErrNotFound", e, err)
	}
}
