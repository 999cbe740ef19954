package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/coffer-dev/coffer/api"
	"github.com/coffer-dev/coffer/apis/coffer/v1alpha1"
)

// remotePath is a KV secret resolved against the store's path.
type remotePath struct {
	mount, key string
}

// split resolves key against the store's path: with a path, key is
// relative to it; without, key's first segment is the mount.
func split(storePath, key string) (remotePath, error) {
	storePath, key = strings.Trim(storePath, "/"), strings.Trim(key, "/")
	if key == "" {
		return remotePath{}, fmt.Errorf("%w: empty remote key", ErrInvalidConfig)
	}
	if storePath != "" {
		return remotePath{mount: storePath, key: key}, nil
	}
	m, k, ok := strings.Cut(key, "/")
	if !ok {
		return remotePath{}, fmt.Errorf("%w: remote key %q needs a mount (set the store's path)", ErrInvalidConfig, key)
	}
	return remotePath{mount: m, key: k}, nil
}

// eventPaths are the logical paths whose events concern p.
func (p remotePath) eventPaths(version int) []string {
	if version == 2 {
		var out []string
		for _, kind := range []string{"data", "metadata", "delete", "undelete", "destroy"} {
			out = append(out, p.mount+"/"+kind+"/"+p.key)
		}
		return out
	}
	return []string{p.mount + "/" + p.key}
}

// fetched is the outcome of reading a CofferSecret's remote values.
type fetched struct {
	values map[string][]byte
	// paths are the logical paths that, when changed, call for a resync.
	paths []string
}

// dynamicFunc returns the data of dataFrom[i].dynamic.
type dynamicFunc func(ctx context.Context, i int, d v1alpha1.DynamicRef) (map[string]any, error)

// fetch reads every value spec names; dyn supplies the dynamic sources'
// data (nil: call each endpoint). A missing KV secret gives an error
// wrapping ErrRemoteNotFound. Values never appear in errors.
func fetch(ctx context.Context, s *session, storePath string, spec v1alpha1.SecretSpec, dyn dynamicFunc) (fetched, error) {
	if dyn == nil {
		dyn = func(ctx context.Context, _ int, d v1alpha1.DynamicRef) (map[string]any, error) {
			resp, err := dynamic(ctx, s, d)
			if err != nil {
				return nil, err
			}
			return resp.Data, nil
		}
	}
	out := fetched{values: map[string][]byte{}}
	cache := map[string]map[string]any{}
	read := func(key, version string) (map[string]any, error) {
		p, err := split(storePath, key)
		if err != nil {
			return nil, err
		}
		v, err := s.kvVersion(ctx, p.mount)
		if err != nil {
			return nil, err
		}
		out.paths = append(out.paths, p.eventPaths(v)...)
		ck := p.mount + "\x00" + p.key + "\x00" + version
		if m, ok := cache[ck]; ok {
			return m, nil
		}
		m, err := readKV(ctx, s, p, v, version)
		if err != nil {
			return nil, err
		}
		cache[ck] = m
		return m, nil
	}
	for _, d := range spec.Data {
		m, err := read(d.RemoteRef.Key, d.RemoteRef.Version)
		if err != nil {
			return out, err
		}
		if d.RemoteRef.Property == "" {
			b, err := json.Marshal(m)
			if err != nil {
				return out, fmt.Errorf("operator: encode %s: %w", d.RemoteRef.Key, err)
			}
			out.values[d.SecretKey] = b
			continue
		}
		v, ok := m[d.RemoteRef.Property]
		if !ok {
			return out, fmt.Errorf("%w: %s has no property %q", ErrRemoteNotFound, d.RemoteRef.Key, d.RemoteRef.Property)
		}
		out.values[d.SecretKey] = valueBytes(v)
	}
	for i, df := range spec.DataFrom {
		switch {
		case df.Extract != nil:
			m, err := read(df.Extract.Key, df.Extract.Version)
			if err != nil {
				return out, err
			}
			for k, v := range m {
				out.values[k] = valueBytes(v)
			}
		case df.Dynamic != nil:
			m, err := dyn(ctx, i, *df.Dynamic)
			if err != nil {
				return out, err
			}
			for k, v := range m {
				out.values[k] = valueBytes(v)
			}
		}
	}
	return out, nil
}

// readKV reads one KV secret's fields.
func readKV(ctx context.Context, s *session, p remotePath, kvVersion int, version string) (map[string]any, error) {
	path := p.mount + "/" + p.key
	if kvVersion == 2 {
		path = p.mount + "/data/" + p.key
		if version != "" {
			path += "?version=" + url.QueryEscape(version)
		}
	}
	var resp *api.Response
	err := s.do(ctx, func(c *api.Client) (err error) {
		resp, err = c.Read(ctx, path)
		return err
	})
	if errors.Is(err, api.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s/%s", ErrRemoteNotFound, p.mount, p.key)
	}
	if err != nil {
		return nil, fmt.Errorf("operator: read %s/%s: %w", p.mount, p.key, err)
	}
	if kvVersion == 1 {
		return resp.Data, nil
	}
	m, ok := resp.Data["data"].(map[string]any)
	if !ok {
		// A deleted or destroyed version: Vault answers with data null.
		return nil, fmt.Errorf("%w: %s/%s (deleted)", ErrRemoteNotFound, p.mount, p.key)
	}
	return m, nil
}

// dynamic calls a generating endpoint; the response carries its lease.
func dynamic(ctx context.Context, s *session, d v1alpha1.DynamicRef) (*api.Response, error) {
	method := d.Method
	if method == "" {
		method = http.MethodGet
	}
	var body any
	if method != http.MethodGet && len(d.Parameters) > 0 {
		body = d.Parameters
	}
	var resp *api.Response
	err := s.do(ctx, func(c *api.Client) (err error) {
		resp, err = c.Do(ctx, method, strings.Trim(d.Path, "/"), body)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("operator: %s %s: %w", method, d.Path, err)
	}
	if resp.Data == nil {
		resp.Data = map[string]any{}
	}
	return resp, nil
}

// valueBytes turns a JSON value into Secret bytes: strings as they are,
// anything else as JSON (numbers keep their text).
func valueBytes(v any) []byte {
	switch x := v.(type) {
	case string:
		return []byte(x)
	case json.Number:
		return []byte(x.String())
	case nil:
		return nil
	}
	b, _ := json.Marshal(v)
	return b
}
