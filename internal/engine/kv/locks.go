package kv

import "sync"

// stripes is the number of locks in a lockSet; keys share a lock when
// their hashes collide, which only costs a little contention.
const stripes = 256

// lockSet serializes the read-modify-write of a key with a fixed set of
// locks picked by a hash of the key.
type lockSet struct {
	mu [stripes]sync.RWMutex
}

// forKey returns the lock guarding key.
func (l *lockSet) forKey(key string) *sync.RWMutex {
	// FNV-1a, inline to avoid an allocation per request.
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return &l.mu[h%stripes]
}
