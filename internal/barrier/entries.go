package barrier

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/storage"
)

// entryPrefix is the physical prefix of every entry (see the package
// documentation).
const entryPrefix = "e/"

// Domains of the keyed hashes and of the envelopes' additional data.
const (
	dataDomain  = "d:" // value: AAD of the logical path
	dirDomain   = "l:" // folder: hash of the folder path, AAD of a child's name
	childDomain = "c:" // entry: hash of folder path + child name
)

// errStop ends a Scan early.
var errStop = errors.New("stop")

// dirKey is the physical prefix of the entries of folder dir.
func (k *keyring) dirKey(dir string) string { return entryPrefix + k.name(dirDomain, dir) + "/" }

// entryKey is the physical key of child's entry in folder dir: the entry of
// a value when child has no trailing "/", of a subfolder when it has one.
func (k *keyring) entryKey(dir, child string) string {
	return k.dirKey(dir) + k.name(childDomain, dir+child)
}

// dataKey is the physical key of the entry holding the value at path.
func (k *keyring) dataKey(path string) string { return k.entryKey(split(path)) }

// packEntry joins the two envelopes of an entry: the child's name, sealed
// for its folder, and the value, sealed for its path (absent for a folder).
//
//	uvarint(len(name envelope)) | name envelope | value envelope
func packEntry(name, value []byte) []byte {
	out := make([]byte, 0, binary.MaxVarintLen64+len(name)+len(value))
	out = binary.AppendUvarint(out, uint64(len(name)))
	out = append(out, name...)
	return append(out, value...)
}

// unpackEntry splits an entry into its name and value envelopes. value is
// empty for a folder's entry. It returns ErrCorrupt if v is malformed.
func unpackEntry(v []byte) (name, value []byte, err error) {
	n, w := binary.Uvarint(v)
	if w <= 0 || n > uint64(len(v)-w) {
		return nil, nil, fmt.Errorf("%w: malformed entry", ErrCorrupt)
	}
	return v[w : w+int(n)], v[w+int(n):], nil
}

// checkPath validates the logical path of an entry.
func checkPath(p string) error {
	if p == "" || p[0] == '/' || p[len(p)-1] == '/' || strings.Contains(p, "//") {
		return fmt.Errorf("%w: %q", ErrInvalidPath, p)
	}
	return nil
}

// checkPrefix validates the folder given to List.
func checkPrefix(p string) error {
	if p == "" {
		return nil
	}
	if p[0] == '/' || p[len(p)-1] != '/' || strings.Contains(p, "//") {
		return fmt.Errorf("%w: list prefix %q", ErrInvalidPath, p)
	}
	return nil
}

// split returns the folder of path ("" or ending in "/") and its last
// segment.
func split(path string) (dir, name string) {
	i := strings.LastIndexByte(path, '/')
	return path[:i+1], path[i+1:]
}

// parent returns the folder containing folder dir (which ends in "/") and
// dir's name in it, with its trailing "/".
func parent(dir string) (string, string) {
	p, name := split(dir[:len(dir)-1])
	return p, name + "/"
}

// seal encrypts plaintext under the active term of kr.
func (b *Barrier) seal(kr *keyring, context string, plaintext []byte) ([]byte, error) {
	t := kr.active()
	v, err := sealEnvelope(t.aead, b.rand, t.n, context, plaintext)
	if err == nil {
		b.encryptions.Add(1)
	}
	return v, err
}

// Get implements logical.Storage. It returns logical.ErrNotFound for a
// missing key, ErrSealed while sealed, ErrInvalidPath for a malformed key
// and ErrCorrupt if the stored value fails to decrypt.
func (b *Barrier) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkPath(key); err != nil {
		return nil, err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	kr := b.kr
	if kr == nil {
		return nil, ErrSealed
	}
	v, err := b.backend.Get(ctx, kr.dataKey(key))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, logical.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("barrier: get %q: %w", key, err)
	}
	_, sealed, err := unpackEntry(v)
	if err == nil && len(sealed) == 0 {
		err = fmt.Errorf("%w: a folder's entry under a value's key", ErrCorrupt)
	}
	if err != nil {
		return nil, fmt.Errorf("barrier: get %q: %w", key, err)
	}
	pt, err := kr.open(dataDomain+key, sealed)
	if err != nil {
		return nil, fmt.Errorf("barrier: get %q: %w", key, err)
	}
	return pt, nil
}

// Put implements logical.Storage: it writes the entry and the entries of
// any missing ancestor folders in one atomic backend Apply.
func (b *Barrier) Put(ctx context.Context, key string, value []byte) error {
	return b.Apply(ctx, []logical.Op{{Key: key, Value: value}})
}

// Delete implements logical.Storage: it removes the entry, then the entries
// of folders left empty.
// Deleting a missing key is not an error.
func (b *Barrier) Delete(ctx context.Context, key string) error {
	return b.Apply(ctx, []logical.Op{{Key: key, Delete: true}})
}

// Apply implements logical.Storage. All the puts and deletes in ops, with
// the folder entries the puts add, are written in one atomic backend Apply,
// in order: one physical op per logical op, plus missing ancestors. Folders the deletes leave empty are removed
// afterwards, each chain of them atomically; should that fail, the error is
// returned but the ops themselves are applied, and an empty folder may
// remain listed until another delete in it succeeds.
//
// It returns ErrInvalidPath (applying nothing) if any key is malformed, and
// ErrSealed while sealed.
func (b *Barrier) Apply(ctx context.Context, ops []logical.Op) error {
	for _, op := range ops {
		if err := checkPath(op.Key); err != nil {
			return err
		}
	}
	if len(ops) == 0 {
		return nil
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	kr := b.kr
	if kr == nil {
		return ErrSealed
	}

	phys := make([]storage.Op, 0, 2*len(ops))
	var folders []string // folder entries written by this batch
	var emptied []string // folders a delete may have left empty

	b.tree.RLock()
	for _, op := range ops {
		dir, name := split(op.Key)
		if op.Delete {
			phys = append(phys, storage.Op{Key: kr.entryKey(dir, name), Delete: true})
			if dir != "" && !slices.Contains(emptied, dir) {
				emptied = append(emptied, dir)
			}
			continue
		}
		v, err := b.seal(kr, dataDomain+op.Key, op.Value)
		if err != nil {
			b.tree.RUnlock()
			return err
		}
		ev, err := b.seal(kr, dirDomain+dir, []byte(name))
		if err != nil {
			b.tree.RUnlock()
			return err
		}
		phys = append(phys, storage.Op{Key: kr.entryKey(dir, name), Value: packEntry(ev, v)})
		// Ancestors, bottom up. A folder's entry exists only while the
		// folder is not empty, so its own ancestors' entries exist too:
		// stop at the first one known to exist.
		for d := dir; d != ""; {
			p, n := parent(d)
			k := kr.entryKey(p, n)
			if slices.Contains(folders, k) || b.cached(k) {
				break
			}
			ev, err := b.seal(kr, dirDomain+p, []byte(n))
			if err != nil {
				b.tree.RUnlock()
				return err
			}
			phys = append(phys, storage.Op{Key: k, Value: packEntry(ev, nil)})
			folders = append(folders, k)
			d = p
		}
	}
	err := b.backend.Apply(ctx, phys)
	if err == nil {
		b.remember(folders)
	}
	b.tree.RUnlock()
	if err != nil {
		return fmt.Errorf("barrier: apply %d ops: %w", len(ops), err)
	}

	// Deepest first: removing a/b/ may empty a/.
	slices.SortFunc(emptied, func(x, y string) int { return strings.Count(y, "/") - strings.Count(x, "/") })
	for _, dir := range emptied {
		if err := b.removeIfEmpty(ctx, kr, dir); err != nil {
			return err
		}
	}
	return nil
}

// removeIfEmpty removes the entry of folder dir from its parent if it has no
// children, and then of its ancestors that are left empty, in one Apply.
// The caller holds b.mu for reading.
func (b *Barrier) removeIfEmpty(ctx context.Context, kr *keyring, dir string) error {
	// Cheap check first, concurrently with other writers: a folder that
	// still has a child stays. Whoever removes the last child sees it empty.
	b.tree.RLock()
	empty, err := b.emptyLocked(ctx, kr.dirKey(dir), "")
	b.tree.RUnlock()
	if err != nil || !empty {
		return err
	}

	// Re-check with writers excluded: a Put may have re-filled it.
	b.tree.Lock()
	defer b.tree.Unlock()
	var phys []storage.Op
	var keys []string
	except := "" // the entry below, which this batch removes
	for d := dir; d != ""; {
		empty, err := b.emptyLocked(ctx, kr.dirKey(d), except)
		if err != nil {
			return err
		}
		if !empty {
			break
		}
		p, n := parent(d)
		except = kr.entryKey(p, n)
		phys = append(phys, storage.Op{Key: except, Delete: true})
		keys = append(keys, except)
		d = p
	}
	if len(phys) == 0 {
		return nil
	}
	b.forget(keys)
	if err := b.backend.Apply(ctx, phys); err != nil {
		return fmt.Errorf("barrier: remove empty folder %q: %w", dir, err)
	}
	return nil
}

// emptyLocked reports whether no physical key other than except has the
// given prefix. The caller holds b.tree.
func (b *Barrier) emptyLocked(ctx context.Context, prefix, except string) (bool, error) {
	found := false
	err := b.backend.Scan(ctx, prefix, func(k string, _ []byte) error {
		if k == except {
			return nil
		}
		found = true
		return errStop
	})
	if err != nil && !errors.Is(err, errStop) {
		return false, fmt.Errorf("barrier: scan folder: %w", err)
	}
	return !found, nil
}

// List implements logical.Storage: the names in folder prefix ("" or ending
// in "/"), sorted, folders ending in "/"; nil if there are none. It returns
// ErrInvalidPath for another prefix, ErrSealed while sealed and ErrCorrupt
// if an entry's name fails to decrypt or sits under another name's key.
func (b *Barrier) List(ctx context.Context, prefix string) ([]string, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	kr := b.kr
	if kr == nil {
		return nil, ErrSealed
	}
	dk := kr.dirKey(prefix)
	var names []string
	err := b.backend.Scan(ctx, dk, func(k string, v []byte) error {
		sealed, _, err := unpackEntry(v)
		if err != nil {
			return err
		}
		name, err := kr.open(dirDomain+prefix, sealed)
		if err != nil {
			return err
		}
		if k[len(dk):] != kr.name(childDomain, prefix+string(name)) {
			return fmt.Errorf("%w: entry under another name's key", ErrCorrupt)
		}
		names = append(names, string(name))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("barrier: list %q: %w", prefix, err)
	}
	slices.Sort(names)
	return names, nil
}

// ResetDirCache forgets which folder entries are known to exist, so the
// next Put into each folder rewrites its ancestors' entries. Call it when
// the backend's contents changed other than through this barrier (a
// snapshot restore, or writes by another node before this one became
// active). Unseal and Seal reset it too.
func (b *Barrier) ResetDirCache() {
	b.cacheMu.Lock()
	defer b.cacheMu.Unlock()
	b.dirs = nil
}

func (b *Barrier) cached(k string) bool {
	if b.cacheMax < 0 {
		return false
	}
	b.cacheMu.Lock()
	defer b.cacheMu.Unlock()
	_, ok := b.dirs[k]
	return ok
}

// remember records folder entries as existing. The cache is bounded
// crudely: when full it starts over.
func (b *Barrier) remember(keys []string) {
	if b.cacheMax < 0 || len(keys) == 0 {
		return
	}
	b.cacheMu.Lock()
	defer b.cacheMu.Unlock()
	if b.dirs == nil || len(b.dirs)+len(keys) > b.cacheMax {
		b.dirs = make(map[string]struct{}, min(b.cacheMax, 1024))
	}
	for _, k := range keys {
		b.dirs[k] = struct{}{}
	}
}

func (b *Barrier) forget(keys []string) {
	b.cacheMu.Lock()
	defer b.cacheMu.Unlock()
	for _, k := range keys {
		delete(b.dirs, k)
	}
}
