package token

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/coffer-dev/coffer/internal/logical"
)

// entryCache keeps decoded token entries in memory so that authenticating
// a request costs no storage read, decryption or JSON decoding. It is
// correct where this Store is the only writer of its storage (the active
// node), or where Config.Epoch tells it when replication changed storage
// (a standby), which is why Config.Cache is off unless the core says so.
//
// Every write to an entry key goes through cachingStorage, which drops the
// key; a generation counter keeps a Get that raced with a write from
// caching what it read before the write.
type entryCache struct {
	// guard starts the cache over whenever a standby's epoch moves
	// (Config.Epoch); nil on the active node.
	guard *logical.EpochGuard

	mu  sync.RWMutex // guards following
	m   map[string]*Entry
	gen uint64
}

func newEntryCache(epoch func() uint64) *entryCache {
	return &entryCache{guard: logical.NewEpochGuard(epoch), m: make(map[string]*Entry)}
}

// sync starts over when the epoch moved (logical.EpochGuard).
func (c *entryCache) sync() {
	c.guard.Sync(&c.mu, func() {
		c.m = make(map[string]*Entry)
		c.gen++
	})
}

// maxCachedEntries bounds the cache; past it, the cache starts over.
const maxCachedEntries = 100_000

func (c *entryCache) lookup(id string) (*Entry, uint64) {
	c.sync()
	c.mu.RLock()
	defer c.mu.RUnlock()
	e := c.m[id]
	if e == nil {
		return nil, c.gen
	}
	return e.clone(), c.gen
}

func (c *entryCache) store(id string, e *Entry, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return // a write happened since the read: do not cache it
	}
	if len(c.m) >= maxCachedEntries {
		c.m = make(map[string]*Entry)
	}
	c.m[id] = e.clone()
}

func (c *entryCache) drop(key string) {
	id, ok := strings.CutPrefix(key, idPrefix)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
	c.gen++
}

// clone copies e deeply enough that a caller may change it.
func (e *Entry) clone() *Entry {
	c := *e
	c.Policies = slices.Clone(e.Policies)
	c.Meta = maps.Clone(e.Meta)
	c.BoundCIDRs = slices.Clone(e.BoundCIDRs)
	return &c
}

// cachingStorage drops cached entries on every write to their keys.
type cachingStorage struct {
	logical.Storage
	c *entryCache
}

func (s *cachingStorage) Put(ctx context.Context, key string, value []byte) error {
	defer s.c.drop(key)
	return s.Storage.Put(ctx, key, value)
}

func (s *cachingStorage) Delete(ctx context.Context, key string) error {
	defer s.c.drop(key)
	return s.Storage.Delete(ctx, key)
}

func (s *cachingStorage) Apply(ctx context.Context, ops []logical.Op) error {
	defer func() {
		for _, op := range ops {
			s.c.drop(op.Key)
		}
	}()
	return s.Storage.Apply(ctx, ops)
}
