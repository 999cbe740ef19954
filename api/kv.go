package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// KVv2 reaches a KV version 2 secrets engine mounted at one path. Paths
// given to its methods are relative to the mount ("myapp", not
// "secret/data/myapp").
type KVv2 struct {
	c     *Client
	mount string
}

// KVv2 returns a KVv2 for the engine mounted at mount ("secret").
func (c *Client) KVv2(mount string) *KVv2 {
	return &KVv2{c: c, mount: strings.Trim(mount, "/")}
}

func (kv *KVv2) path(kind, p string) string {
	return kv.mount + "/" + kind + "/" + strings.TrimPrefix(p, "/")
}

// Get reads a secret; version 0 reads the latest. The values are in
// Data["data"] and the version's metadata in Data["metadata"].
func (kv *KVv2) Get(ctx context.Context, p string, version int) (*Response, error) {
	path := kv.path("data", p)
	if version > 0 {
		path += "?" + url.Values{"version": {strconv.Itoa(version)}}.Encode()
	}
	return kv.c.Do(ctx, http.MethodGet, path, nil)
}

func dataBody(data map[string]any, cas int) map[string]any {
	opts := map[string]any{}
	if cas >= 0 {
		opts["cas"] = cas
	}
	return map[string]any{"data": data, "options": opts}
}

// Put writes a new version. cas < 0 writes unconditionally; cas = 0
// writes only if the secret does not exist; cas > 0 only if it is the
// current version.
func (kv *KVv2) Put(ctx context.Context, p string, data map[string]any, cas int) (*Response, error) {
	return kv.c.Do(ctx, http.MethodPut, kv.path("data", p), dataBody(data, cas))
}

// Patch merges data into the latest version as a JSON merge patch (a nil
// value removes a key), writing a new version. cas as in Put.
func (kv *KVv2) Patch(ctx context.Context, p string, data map[string]any, cas int) (*Response, error) {
	return kv.c.Do(ctx, http.MethodPatch, kv.path("data", p), dataBody(data, cas))
}

// Delete soft-deletes the given versions, or the latest without any.
func (kv *KVv2) Delete(ctx context.Context, p string, versions ...int) error {
	if len(versions) == 0 {
		_, err := kv.c.Do(ctx, http.MethodDelete, kv.path("data", p), nil)
		return err
	}
	_, err := kv.c.Do(ctx, http.MethodPut, kv.path("delete", p), map[string]any{"versions": versions})
	return err
}

// Undelete restores soft-deleted versions.
func (kv *KVv2) Undelete(ctx context.Context, p string, versions ...int) error {
	_, err := kv.c.Do(ctx, http.MethodPut, kv.path("undelete", p), map[string]any{"versions": versions})
	return err
}

// Destroy removes the data of the given versions for good.
func (kv *KVv2) Destroy(ctx context.Context, p string, versions ...int) error {
	_, err := kv.c.Do(ctx, http.MethodPut, kv.path("destroy", p), map[string]any{"versions": versions})
	return err
}

// List returns the keys under the folder p ("" for the mount's root).
func (kv *KVv2) List(ctx context.Context, p string) ([]string, error) {
	return kv.c.List(ctx, kv.path("metadata", p))
}

// Metadata reads a secret's metadata and version history.
func (kv *KVv2) Metadata(ctx context.Context, p string) (*Response, error) {
	return kv.c.Read(ctx, kv.path("metadata", p))
}

// PutMetadata sets metadata fields (max_versions, cas_required,
// delete_version_after, custom_metadata).
func (kv *KVv2) PutMetadata(ctx context.Context, p string, fields map[string]any) error {
	_, err := kv.c.Do(ctx, http.MethodPut, kv.path("metadata", p), fields)
	return err
}

// DeleteMetadata deletes a secret with all its versions and metadata.
func (kv *KVv2) DeleteMetadata(ctx context.Context, p string) error {
	_, err := kv.c.Delete(ctx, kv.path("metadata", p))
	return err
}
