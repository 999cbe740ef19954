package kms

import (
	"container/list"
	"crypto/sha256"
	"sync"
	"time"
)

// seedCache holds recently wrapped or unwrapped seeds in memory, bounded
// in entries and age, keyed by SHA-256 of key_id and ciphertext. It is
// safe for concurrent use. A nil *seedCache caches nothing.
type seedCache struct {
	max int
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex // guards following
	lru   *list.List // of *cacheEntry, most recent first
	items map[[32]byte]*list.Element
}

type cacheEntry struct {
	key     [32]byte
	seed    []byte
	expires time.Time
}

func newSeedCache(max int, ttl time.Duration, now func() time.Time) *seedCache {
	if max <= 0 || ttl <= 0 {
		return nil
	}
	return &seedCache{max: max, ttl: ttl, now: now, lru: list.New(), items: make(map[[32]byte]*list.Element)}
}

func cacheKey(keyID string, ct []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(keyID))
	h.Write([]byte{0})
	h.Write(ct)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// put stores a copy of seed, evicting the oldest entry when full.
func (c *seedCache) put(keyID string, ct, seed []byte) {
	if c == nil {
		return
	}
	k := cacheKey(keyID, ct)
	e := &cacheEntry{key: k, seed: append([]byte(nil), seed...), expires: c.now().Add(c.ttl)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.items[k]; ok {
		c.removeLocked(old)
	}
	c.items[k] = c.lru.PushFront(e)
	for c.lru.Len() > c.max {
		c.removeLocked(c.lru.Back())
	}
}

// get returns a copy of the seed stored for keyID and ct if it has not
// expired.
func (c *seedCache) get(keyID string, ct []byte) ([]byte, bool) {
	if c == nil {
		return nil, false
	}
	k := cacheKey(keyID, ct)
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.removeLocked(el)
		return nil, false
	}
	c.lru.MoveToFront(el)
	return append([]byte(nil), e.seed...), true
}

// len returns the number of entries, expired or not.
func (c *seedCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// removeLocked drops an entry and overwrites its seed (best effort: the
// Go runtime may have copied it).
func (c *seedCache) removeLocked(el *list.Element) {
	e := el.Value.(*cacheEntry)
	clear(e.seed)
	delete(c.items, e.key)
	c.lru.Remove(el)
}
