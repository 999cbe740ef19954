package kv

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

func (b *V2) readMetadata(ctx context.Context, key string) (*logical.Response, error) {
	if key == "" {
		return nil, nil
	}
	mu := b.locks.forKey(key)
	mu.RLock()
	defer mu.RUnlock()
	m, err := getMeta(ctx, b.s, key)
	if err != nil || m == nil {
		return nil, err
	}
	versions := make(map[string]any, len(m.Versions))
	for n, vm := range m.Versions {
		versions[strconv.FormatUint(n, 10)] = map[string]any{
			"created_time":  formatTime(vm.CreatedTime),
			"deletion_time": formatTime(vm.DeletionTime),
			"destroyed":     vm.Destroyed,
		}
	}
	return &logical.Response{Data: map[string]any{
		"cas_required":             m.CASRequired,
		"created_time":             formatTime(m.CreatedTime),
		"current_metadata_version": m.MetadataVersion,
		"current_version":          m.CurrentVersion,
		"custom_metadata":          customMetadata(m.CustomMetadata),
		"delete_version_after":     m.DeleteVersionAfter.String(),
		"max_versions":             m.MaxVersions,
		"metadata_cas_required":    false,
		"oldest_version":           m.OldestVersion,
		"updated_time":             formatTime(m.UpdatedTime),
		"versions":                 versions,
	}}, nil
}

// metadataRequest is the body of a metadata write. Absent fields keep
// their value; custom_metadata, when given, replaces the whole map.
type metadataRequest struct {
	MaxVersions        *logical.Int      `json:"max_versions"`
	CASRequired        *logical.Bool     `json:"cas_required"`
	DeleteVersionAfter *logical.Duration `json:"delete_version_after"`
	CustomMetadata     map[string]string `json:"custom_metadata"`
}

func (b *V2) writeMetadata(ctx context.Context, req *logical.Request, key string) error {
	if err := checkWriteKey(key); err != nil {
		return err
	}
	var r metadataRequest
	if err := req.Decode(&r); err != nil {
		return err
	}
	max, err := maxVersions(r.MaxVersions)
	if err != nil {
		return err
	}
	if err := checkCustomMetadata(r.CustomMetadata); err != nil {
		return err
	}
	return b.updateMetadata(ctx, key, true, func(m *keyMeta) {
		if r.MaxVersions != nil {
			m.MaxVersions = max
		}
		if r.CASRequired != nil {
			m.CASRequired = bool(*r.CASRequired)
		}
		if r.DeleteVersionAfter != nil {
			m.DeleteVersionAfter = time.Duration(*r.DeleteVersionAfter)
		}
		if r.CustomMetadata != nil {
			m.CustomMetadata = r.CustomMetadata
		}
	})
}

// patchMetadata applies a JSON merge patch to the metadata of an existing
// key: a null field returns it to its default, and custom_metadata is
// merged key by key (a null value removes the key).
func (b *V2) patchMetadata(ctx context.Context, req *logical.Request, key string) error {
	if err := checkWriteKey(key); err != nil {
		return err
	}
	var r struct {
		MaxVersions        json.RawMessage            `json:"max_versions"`
		CASRequired        json.RawMessage            `json:"cas_required"`
		DeleteVersionAfter json.RawMessage            `json:"delete_version_after"`
		CustomMetadata     map[string]json.RawMessage `json:"custom_metadata"`
	}
	var present map[string]json.RawMessage
	if err := req.Decode(&present); err != nil {
		return err
	}
	if err := req.Decode(&r); err != nil {
		return err
	}
	var (
		max   logical.Int
		cas   logical.Bool
		after logical.Duration
	)
	for _, f := range []struct {
		raw json.RawMessage
		dst json.Unmarshaler
	}{{r.MaxVersions, &max}, {r.CASRequired, &cas}, {r.DeleteVersionAfter, &after}} {
		if len(f.raw) > 0 {
			if err := logical.DecodeJSON(f.raw, f.dst); err != nil {
				return err
			}
		}
	}
	maxV, err := maxVersions(&max)
	if err != nil {
		return err
	}
	custom := map[string]*string{}
	for k, raw := range r.CustomMetadata {
		if string(raw) == "null" {
			custom[k] = nil
			continue
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return logical.Errorf(logical.Invalid, "custom_metadata values must be strings")
		}
		custom[k] = &v
	}
	_, hasCustom := present["custom_metadata"]
	clearCustom := hasCustom && string(present["custom_metadata"]) == "null"

	var invalid error
	err = b.updateMetadata(ctx, key, false, func(m *keyMeta) {
		if _, ok := present["max_versions"]; ok {
			m.MaxVersions = maxV
		}
		if _, ok := present["cas_required"]; ok {
			m.CASRequired = bool(cas)
		}
		if _, ok := present["delete_version_after"]; ok {
			m.DeleteVersionAfter = time.Duration(after)
		}
		if clearCustom {
			m.CustomMetadata = nil
		} else if hasCustom {
			cm := make(map[string]string, len(m.CustomMetadata)+len(custom))
			for k, v := range m.CustomMetadata {
				cm[k] = v
			}
			for k, v := range custom {
				if v == nil {
					delete(cm, k)
				} else {
					cm[k] = *v
				}
			}
			if invalid = checkCustomMetadata(cm); invalid == nil {
				m.CustomMetadata = cm
			}
		}
	})
	if err != nil {
		return err
	}
	return invalid
}

// updateMetadata runs change on the metadata of key under its lock and
// stores the result. A missing key is created when create is set, and is
// a NotFound error otherwise.
func (b *V2) updateMetadata(ctx context.Context, key string, create bool, change func(*keyMeta)) error {
	mu := b.locks.forKey(key)
	mu.Lock()
	defer mu.Unlock()
	m, err := getMeta(ctx, b.s, key)
	if err != nil {
		return err
	}
	now := b.now().UTC()
	if m == nil {
		if !create {
			return errNotFound()
		}
		m = newKeyMeta()
		m.CreatedTime = now
	}
	change(m)
	if len(m.CustomMetadata) == 0 {
		m.CustomMetadata = nil
	}
	m.MetadataVersion++
	m.UpdatedTime = now
	return b.putMetaLocked(ctx, key, m)
}

// deleteMetadata removes the key: every version's data and its metadata,
// in one Apply.
func (b *V2) deleteMetadata(ctx context.Context, key string) error {
	if key == "" {
		return nil
	}
	mu := b.locks.forKey(key)
	mu.Lock()
	defer mu.Unlock()
	m, err := getMeta(ctx, b.s, key)
	if err != nil || m == nil {
		return err
	}
	ops := make([]logical.Op, 0, len(m.Versions)+2)
	for n, vm := range m.Versions {
		if !vm.Destroyed {
			ops = append(ops, logical.Op{Key: versionKey(key, n), Delete: true})
		}
	}
	ops = append(ops, logical.Op{Key: metaKey(key), Delete: true}, logical.Op{Key: listKey(key), Delete: true})
	if err := b.s.Apply(ctx, ops); err != nil {
		return wrap(err, "delete metadata")
	}
	return nil
}
