package kv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/coffer-dev/coffer/internal/logical"
)

// failingStorage is the real test storage whose Apply fails while fail is
// set.
type failingStorage struct {
	logical.Storage
	fail atomic.Bool
}

var errApply = errors.New("injected apply failure")

func (s *failingStorage) Apply(ctx context.Context, ops []logical.Op) error {
	if s.fail.Load() {
		return errApply
	}
	return s.Storage.Apply(ctx, ops)
}

func newCachedV2(t *testing.T, s logical.Storage) *V2 {
	t.Helper()
	be, err := Factory(context.Background(), logical.BackendConfig{
		Storage: s, MountPoint: "secret/", Options: map[string]string{"version": "2"}, Now: newClock().Now, Cache: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return be.(*V2)
}

// With the cache, writers work from cached metadata and leave what they
// wrote in it: concurrent writers and readers of one key still see every
// version exactly once, in order, and a restarted engine (no cache) reads
// the same from storage.
func TestCacheWriteThrough(t *testing.T) {
	s := newTestStorage(t)
	b := newCachedV2(t, s)
	const writers, each = 4, 25
	var wg sync.WaitGroup
	seen := make(chan float64, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				resp := must(t, b, logical.UpdateOperation, "data/k", fmt.Sprintf(`{"data":{"w":%d,"i":%d}}`, w, i))
				seen <- wire(t, resp)["version"].(float64)
			}
		})
		wg.Go(func() {
			for range each {
				if resp, err := call(t, b, logical.ReadOperation, "data/k", ""); err == nil && resp != nil {
					d := wire(t, resp)
					if d["data"] == nil {
						t.Errorf("read a live version without data: %v", d)
					}
				}
			}
		})
	}
	wg.Wait()
	close(seen)
	got := map[float64]bool{}
	for v := range seen {
		if got[v] {
			t.Errorf("version %v handed out twice", v)
		}
		got[v] = true
	}
	if len(got) != writers*each {
		t.Errorf("%d distinct versions, want %d", len(got), writers*each)
	}
	for _, eng := range []*V2{b, newCachedV2(t, s)} { // warm cache, then storage
		md := wire(t, must(t, eng, logical.ReadOperation, "metadata/k", ""))
		if cv := md["current_version"]; cv != float64(writers*each) {
			t.Errorf("current_version = %v, want %d", cv, writers*each)
		}
	}
}

// A write that fails leaves neither its metadata nor its version in the
// cache: the next read and write see what storage holds.
func TestCacheFailedWrite(t *testing.T) {
	s := &failingStorage{Storage: newTestStorage(t)}
	b := newCachedV2(t, s)
	must(t, b, logical.UpdateOperation, "data/k", `{"data":{"v":"one"}}`)
	must(t, b, logical.ReadOperation, "data/k", "") // cached
	s.fail.Store(true)
	if _, err := call(t, b, logical.UpdateOperation, "data/k", `{"data":{"v":"two"}}`); err == nil {
		t.Fatal("write with failing storage succeeded")
	}
	s.fail.Store(false)
	d := wire(t, must(t, b, logical.ReadOperation, "data/k", ""))
	if got := d["data"].(map[string]any)["v"]; got != "one" {
		t.Errorf("read after a failed write = %v, want one", got)
	}
	if got := d["metadata"].(map[string]any)["version"]; got != float64(1) {
		t.Errorf("version after a failed write = %v, want 1", got)
	}
	resp := must(t, b, logical.UpdateOperation, "data/k", `{"options":{"cas":1},"data":{"v":"three"}}`)
	if got := wire(t, resp)["version"]; got != float64(2) {
		t.Errorf("next write's version = %v, want 2", got)
	}
}

// On a standby (BackendConfig.Epoch set) the cache serves what it read
// while the epoch stays put, and starts over once it moves: another
// writer's change (replication) is seen after the epoch that follows it.
func TestCacheEpoch(t *testing.T) {
	s := newTestStorage(t)
	var epoch atomic.Uint64
	standby, err := Factory(context.Background(), logical.BackendConfig{
		Storage: s, MountPoint: "secret/", Options: map[string]string{"version": "2"}, Now: newClock().Now,
		Cache: true, Epoch: epoch.Load,
	})
	if err != nil {
		t.Fatal(err)
	}
	active := newCachedV2(t, s) // the other writer, over the same storage
	value := func() any {
		t.Helper()
		return wire(t, must(t, standby, logical.ReadOperation, "data/k", ""))["data"].(map[string]any)["v"]
	}
	must(t, active, logical.UpdateOperation, "data/k", `{"data":{"v":"one"}}`)
	epoch.Add(1)
	if got := value(); got != "one" {
		t.Fatalf("standby read = %v, want one", got)
	}
	must(t, active, logical.UpdateOperation, "data/k", `{"data":{"v":"two"}}`)
	if got := value(); got != "one" {
		t.Errorf("standby read before the epoch moved = %v, want the cached one (is the cache used?)", got)
	}
	epoch.Add(1)
	if got := value(); got != "two" {
		t.Errorf("standby read after the epoch moved = %v, want two", got)
	}
	must(t, active, logical.DeleteOperation, "metadata/k", "")
	epoch.Add(1)
	if resp, err := call(t, standby, logical.ReadOperation, "data/k", ""); err != nil || resp != nil {
		t.Errorf("standby read of a deleted key = %+v, %v; want nothing", resp, err)
	}
}
