package operator

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// ParseReload splits a coffer.dev/reload annotation ("a, b,a") into
// sorted, unique Secret names; empty entries are dropped.
func ParseReload(v string) []string {
	var names []string
	for _, n := range strings.Split(v, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// ReloadHash is the sha256 (hex) of the named Secrets' data: names and
// keys sorted, every field length-prefixed so no two contents collide.
// A name missing from secrets counts as absent (distinct from empty), so
// creating the Secret later changes the hash too.
func ReloadHash(names []string, secrets map[string]*corev1.Secret) string {
	h := sha256.New()
	for _, n := range names {
		field(h, n)
		s, ok := secrets[n]
		if !ok || s == nil {
			h.Write([]byte{0})
			continue
		}
		h.Write([]byte{1})
		keys := make([]string, 0, len(s.Data))
		for k := range s.Data {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			field(h, k)
			field(h, string(s.Data[k]))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func field(h hash.Hash, s string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(s)))
	h.Write(n[:])
	h.Write([]byte(s))
}
