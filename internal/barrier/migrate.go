package barrier

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/coffer-dev/coffer/internal/storage"
)

// The first physical layout (layout 1) kept a value and its name in two
// entries:
//
//	d/<H("d:"+path)>                            the value envelope
//	l/<H("l:"+folder)>/<H("c:"+folder+child)>   the name envelope
//
// with H the hex of the whole HMAC-SHA256 (64 characters).
// Layout 2 (the current one) packs both envelopes into the single entry
// e/<N("l:"+folder)>/<N("c:"+folder+child)> (N: 22 characters, see
// keyring.name), so a write costs one physical put instead of two. The envelopes themselves did not change: migration
// moves bytes and decrypts only names.
const (
	v1DataPrefix = "d/"
	v1DirPrefix  = "l/"

	// migrateBatch is the number of physical ops per Apply while migrating.
	migrateBatch = 256
)

func (k *keyring) v1DataKey(path string) string { return v1DataPrefix + k.hash(dataDomain, path) }
func (k *keyring) v1DirKey(dir string) string   { return v1DirPrefix + k.hash(dirDomain, dir) + "/" }
func (k *keyring) v1EntryKey(dir, child string) string {
	return k.v1DirKey(dir) + k.hash(childDomain, dir+child)
}

// migrateV1 moves every entry of layout 1 into layout 2 and returns how
// many logical entries (values and folders) it moved. It does nothing, with
// one Scan, when there is no layout-1 entry.
//
// Each batch is atomic and the walk is post-order (a folder's own entry
// moves after everything under it), so an interrupted migration resumes
// where it stopped the next time the barrier is unsealed: whatever still
// has a layout-1 folder entry still has its layout-1 children.
func migrateV1(ctx context.Context, be storage.Backend, kr *keyring) (int, error) {
	found := false
	err := be.Scan(ctx, v1DirPrefix, func(string, []byte) error {
		found = true
		return errStop
	})
	if err != nil && !errors.Is(err, errStop) {
		return 0, fmt.Errorf("barrier: migrate: %w", err)
	}
	if !found {
		return 0, nil
	}
	m := &migrator{be: be, kr: kr}
	if err := m.folder(ctx, ""); err != nil {
		return m.moved, fmt.Errorf("barrier: migrate layout 1: %w", err)
	}
	if err := m.flush(ctx); err != nil {
		return m.moved, fmt.Errorf("barrier: migrate layout 1: %w", err)
	}
	return m.moved, nil
}

type migrator struct {
	be    storage.Backend
	kr    *keyring
	ops   []storage.Op
	moved int
}

func (m *migrator) add(ctx context.Context, ops ...storage.Op) error {
	m.ops = append(m.ops, ops...)
	m.moved++
	if len(m.ops) >= migrateBatch {
		return m.flush(ctx)
	}
	return nil
}

func (m *migrator) flush(ctx context.Context) error {
	if len(m.ops) == 0 {
		return nil
	}
	err := m.be.Apply(ctx, m.ops)
	m.ops = m.ops[:0]
	return err
}

// folder moves the children of dir, then (by the caller) dir itself.
func (m *migrator) folder(ctx context.Context, dir string) error {
	type child struct {
		key, name string
		env       []byte
	}
	var children []child
	prefix := m.kr.v1DirKey(dir)
	err := m.be.Scan(ctx, prefix, func(k string, v []byte) error {
		name, err := m.kr.open(dirDomain+dir, v)
		if err != nil {
			return err
		}
		if k[len(prefix):] != m.kr.hash(childDomain, dir+string(name)) {
			return fmt.Errorf("%w: directory entry under another name's key", ErrCorrupt)
		}
		children = append(children, child{key: k, name: string(name), env: v})
		return nil
	})
	if err != nil {
		return err
	}
	for _, c := range children {
		if strings.HasSuffix(c.name, "/") {
			if err := m.folder(ctx, dir+c.name); err != nil {
				return err
			}
			err = m.add(ctx,
				storage.Op{Key: m.kr.entryKey(dir, c.name), Value: packEntry(c.env, nil)},
				storage.Op{Key: c.key, Delete: true})
		} else {
			dk := m.kr.v1DataKey(dir + c.name)
			v, gerr := m.be.Get(ctx, dk)
			switch {
			case errors.Is(gerr, storage.ErrNotFound):
				// A name without its value cannot be written by layout 1
				// (both went in one Apply); drop it.
				err = m.add(ctx, storage.Op{Key: c.key, Delete: true})
			case gerr != nil:
				return gerr
			default:
				err = m.add(ctx,
					storage.Op{Key: m.kr.entryKey(dir, c.name), Value: packEntry(c.env, v)},
					storage.Op{Key: c.key, Delete: true},
					storage.Op{Key: dk, Delete: true})
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}
