package kv

import (
	"context"
	"maps"
	"sync"

	"github.com/coffer-dev/coffer/internal/logical"
)

// readCache keeps what KV v2 reads most — a key's decoded metadata and
// its versions' stored JSON — in memory, so a read costs no storage read,
// decryption or metadata decoding. On a single server or the active node
// this engine is the only writer of its storage; on a standby
// (logical.BackendConfig.Epoch set) replication changes it underneath, and
// the cache starts over whenever the epoch moves (sync). Every write goes through cachingStorage,
// which drops the keys it touches; a generation counter stops a read that
// raced with a write from caching what it read before the write.
//
// Cached metadata is shared and must not be changed: a writer takes a
// private copy (metaForWrite) under the key's lock, and after its write
// succeeds hands the new metadata and version to the cache (set), so the
// next read or write of the key finds them without touching storage.
type readCache struct {
	// guard starts the cache over whenever a standby's epoch moves
	// (logical.BackendConfig.Epoch); nil on the active node.
	guard *logical.EpochGuard

	mu   sync.RWMutex // guards following
	gen  uint64
	meta map[string]*keyMeta // by storage key
	data map[string][]byte   // by storage key
	size int                 // bytes in data
}

// maxCacheBytes bounds the version data kept; past it, the cache starts
// over.
const maxCacheBytes = 64 << 20

func newReadCache(epoch func() uint64) *readCache {
	return &readCache{guard: logical.NewEpochGuard(epoch), meta: map[string]*keyMeta{}, data: map[string][]byte{}}
}

// sync starts over when the epoch moved (logical.EpochGuard).
func (c *readCache) sync() {
	c.guard.Sync(&c.mu, func() {
		c.meta, c.data, c.size = map[string]*keyMeta{}, map[string][]byte{}, 0
		c.gen++
	})
}

func (c *readCache) getMeta(k string) (*keyMeta, uint64) {
	c.sync()
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.meta[k], c.gen
}

func (c *readCache) getData(k string) ([]byte, uint64) {
	c.sync()
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.data[k], c.gen
}

func (c *readCache) put(gen uint64, k string, m *keyMeta, raw []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen == c.gen {
		c.putLocked(k, m, raw)
	}
}

func (c *readCache) putLocked(k string, m *keyMeta, raw []byte) {
	if m != nil {
		if len(c.meta) >= 100_000 {
			c.meta = map[string]*keyMeta{}
		}
		c.meta[k] = m
	}
	if raw != nil {
		c.size -= len(c.data[k])
		if c.size+len(raw) > maxCacheBytes {
			c.data, c.size = map[string][]byte{}, 0
		}
		c.data[k] = raw
		c.size += len(raw)
	}
}

// set records what a writer just stored at k (m and/or raw; nil leaves
// that part alone). The writer holds the key's lock and its write has
// already dropped k, so a reader that raced with it cannot cache an older
// value afterwards (the generation moved on).
func (c *readCache) set(k string, m *keyMeta, raw []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(k, m, raw)
}

func (c *readCache) drop(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.meta, k)
	if raw, ok := c.data[k]; ok {
		c.size -= len(raw)
		delete(c.data, k)
	}
	c.gen++
}

// cachingStorage drops cached entries on every write to their keys.
type cachingStorage struct {
	logical.Storage
	c *readCache
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

// readMeta is getMeta for readers: from the cache when there is one. The
// result must not be changed.
func (b *V2) readMeta(ctx context.Context, key string) (*keyMeta, error) {
	if b.cache == nil {
		return getMeta(ctx, b.s, key)
	}
	k := metaKey(key)
	m, gen := b.cache.getMeta(k)
	if m != nil {
		return m, nil
	}
	m, err := getMeta(ctx, b.s, key)
	if err == nil && m != nil {
		b.cache.put(gen, k, m, nil)
	}
	return m, err
}

// metaForWrite is getMeta for a writer holding the key's lock: a private
// copy of the cached metadata when there is one (no storage read,
// decryption or decoding), else what storage holds.
func (b *V2) metaForWrite(ctx context.Context, key string) (*keyMeta, error) {
	if b.cache != nil {
		if m, _ := b.cache.getMeta(metaKey(key)); m != nil {
			return m.clone(), nil
		}
	}
	return getMeta(ctx, b.s, key)
}

// clone returns a deep copy of m.
func (m *keyMeta) clone() *keyMeta {
	c := *m
	c.CustomMetadata = maps.Clone(m.CustomMetadata)
	c.Versions = make(map[uint64]*versionMeta, len(m.Versions))
	for n, vm := range m.Versions {
		v := *vm
		c.Versions[n] = &v
	}
	return &c
}

// readVersionRaw returns a live version's stored JSON object.
func (b *V2) readVersionRaw(ctx context.Context, key string, n uint64) ([]byte, error) {
	k := versionKey(key, n)
	var gen uint64
	if b.cache != nil {
		var raw []byte
		if raw, gen = b.cache.getData(k); raw != nil {
			return raw, nil
		}
	}
	raw, err := b.s.Get(ctx, k)
	if err != nil {
		return nil, versionReadError(err)
	}
	// No need to parse it: the barrier's AES-GCM already vouched that it
	// is what this engine wrote.
	if b.cache != nil {
		b.cache.put(gen, k, nil, raw)
	}
	return raw, nil
}
