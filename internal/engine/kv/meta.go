package kv

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// defaultMaxVersions is how many versions a key keeps when neither the key
// nor the mount sets max_versions, as in Vault.
const defaultMaxVersions = 10

// Custom metadata limits, as Vault's.
const (
	maxCustomMetadataKeys     = 64
	maxCustomMetadataKeyLen   = 128
	maxCustomMetadataValueLen = 512
)

// config is the engine-wide configuration stored at "config".
type config struct {
	MaxVersions        uint32        `json:"max_versions"`
	CASRequired        bool          `json:"cas_required"`
	DeleteVersionAfter time.Duration `json:"delete_version_after"`
}

// keyMeta is the stored metadata of one key.
type keyMeta struct {
	CurrentVersion     uint64                  `json:"current_version"`
	OldestVersion      uint64                  `json:"oldest_version"`
	MetadataVersion    uint64                  `json:"metadata_version"`
	MaxVersions        uint32                  `json:"max_versions"`
	CASRequired        bool                    `json:"cas_required"`
	DeleteVersionAfter time.Duration           `json:"delete_version_after"`
	CustomMetadata     map[string]string       `json:"custom_metadata,omitempty"`
	CreatedTime        time.Time               `json:"created_time"`
	UpdatedTime        time.Time               `json:"updated_time"`
	Versions           map[uint64]*versionMeta `json:"versions"`

	// listed reports that the key's empty listing entry exists (it is
	// written with the key's first metadata, see metaOps).
	listed bool
}

// versionMeta is what the metadata keeps of one version.
type versionMeta struct {
	CreatedTime time.Time `json:"created_time"`
	// DeletionTime is when the version is (or will be) deleted; zero when
	// it is not.
	DeletionTime time.Time `json:"deletion_time,omitzero"`
	Destroyed    bool      `json:"destroyed,omitempty"`
}

// deleted reports whether the version reads as deleted at now.
func (v *versionMeta) deleted(now time.Time) bool {
	return !v.DeletionTime.IsZero() && !v.DeletionTime.After(now)
}

func newKeyMeta() *keyMeta { return &keyMeta{Versions: map[uint64]*versionMeta{}} }

// Storage layout of a key:
//
//	versions/<key>/meta   the key's metadata (keyMeta as JSON)
//	versions/<key>/<n>    the data of version n (a JSON object)
//	metadata/<key>        an empty entry that makes the key listable
//
// The metadata sits in the same folder as the versions so that a write —
// which stores a version and the metadata — touches one region of the
// barrier's key order (entries of a folder are neighbours), not two: on
// bolt that is fewer pages per commit. The listing entry is written once,
// when the key is created. Keys written before this layout kept their
// metadata JSON in metadata/<key>; getMeta still reads it there, and the
// key's next metadata write moves it (metaOps).

// metaKey is where key's metadata is stored.
func metaKey(key string) string { return "versions/" + key + "/meta" }

// listKey is key's listing entry (or, in the older layout, its metadata).
func listKey(key string) string { return "metadata/" + key }

func versionKey(key string, n uint64) string {
	return "versions/" + key + "/" + strconv.FormatUint(n, 10)
}

// getMeta returns the metadata of key, or nil when the key does not exist.
func getMeta(ctx context.Context, s logical.Storage, key string) (*keyMeta, error) {
	raw, err := s.Get(ctx, metaKey(key))
	listed := err == nil
	if errors.Is(err, logical.ErrNotFound) {
		// The older layout, or no such key.
		raw, err = s.Get(ctx, listKey(key))
		if errors.Is(err, logical.ErrNotFound) {
			return nil, nil
		}
		if err == nil && len(raw) == 0 {
			return nil, errors.New("kv: a listed key has no metadata")
		}
	}
	if err != nil {
		return nil, wrap(err, "read metadata")
	}
	m := newKeyMeta()
	if err := json.Unmarshal(raw, m); err != nil {
		return nil, errors.New("kv: stored metadata is corrupt")
	}
	if m.Versions == nil {
		m.Versions = map[uint64]*versionMeta{}
	}
	m.listed = listed
	return m, nil
}

// metaOps returns the writes that store m as key's metadata: the metadata
// itself and, for a new key or one still in the older layout, its empty
// listing entry. It marks m as listed: the caller applies the ops or
// drops m.
func metaOps(key string, m *keyMeta) ([]logical.Op, error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, wrap(err, "encode metadata")
	}
	ops := []logical.Op{{Key: metaKey(key), Value: raw}}
	if !m.listed {
		ops = append(ops, logical.Op{Key: listKey(key), Value: []byte{}})
		m.listed = true
	}
	return ops, nil
}

// addVersion records a new version created at now under the limits of c
// and m. It returns the new version's number and the versions that
// max_versions pushed out, whose data the caller must delete.
func (m *keyMeta) addVersion(now time.Time, c config) (uint64, []uint64) {
	m.CurrentVersion++
	n := m.CurrentVersion
	vm := &versionMeta{CreatedTime: now}
	if d := effectiveDeleteAfter(c.DeleteVersionAfter, m.DeleteVersionAfter); d > 0 {
		vm.DeletionTime = now.Add(d)
	}
	m.Versions[n] = vm
	m.UpdatedTime = now
	if m.CreatedTime.IsZero() {
		m.CreatedTime = now
	}

	limit := uint64(defaultMaxVersions)
	switch {
	case m.MaxVersions > 0:
		limit = uint64(m.MaxVersions)
	case c.MaxVersions > 0:
		limit = uint64(c.MaxVersions)
	}
	var pruned []uint64
	if n-m.OldestVersion >= limit {
		last := n - limit
		for i := m.OldestVersion; i <= last; i++ {
			if _, ok := m.Versions[i]; ok {
				delete(m.Versions, i)
				pruned = append(pruned, i)
			}
		}
		m.OldestVersion = last + 1
	}
	return n, pruned
}

// effectiveDeleteAfter is the key's delete_version_after, capped by the
// mount's; either alone applies; zero means versions are kept.
func effectiveDeleteAfter(mount, key time.Duration) time.Duration {
	switch {
	case mount > 0 && key > 0:
		return min(mount, key)
	case key > 0:
		return key
	default:
		return mount
	}
}

// versionData is the metadata of version n as Vault shows it in a data
// read or write response.
func versionData(n uint64, vm *versionMeta, m *keyMeta) map[string]any {
	return map[string]any{
		"version":         n,
		"created_time":    formatTime(vm.CreatedTime),
		"deletion_time":   formatTime(vm.DeletionTime),
		"destroyed":       vm.Destroyed,
		"custom_metadata": customMetadata(m.CustomMetadata),
	}
}

// customMetadata renders custom metadata: null when there is none.
func customMetadata(cm map[string]string) any {
	if len(cm) == 0 {
		return nil
	}
	return cm
}

// checkCustomMetadata enforces Vault's limits; messages never quote keys
// or values.
func checkCustomMetadata(cm map[string]string) error {
	if len(cm) > maxCustomMetadataKeys {
		return logical.Errorf(logical.Invalid, "custom_metadata may have at most %d keys", maxCustomMetadataKeys)
	}
	for k, v := range cm {
		switch {
		case k == "":
			return logical.Errorf(logical.Invalid, "custom_metadata keys must not be empty")
		case len(k) > maxCustomMetadataKeyLen:
			return logical.Errorf(logical.Invalid, "custom_metadata keys must be at most %d bytes", maxCustomMetadataKeyLen)
		case len(v) > maxCustomMetadataValueLen:
			return logical.Errorf(logical.Invalid, "custom_metadata values must be at most %d bytes", maxCustomMetadataValueLen)
		case !printable(k) || !printable(v):
			return logical.Errorf(logical.Invalid, "custom_metadata keys and values must be printable text")
		}
	}
	return nil
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return false
		}
	}
	return true
}
