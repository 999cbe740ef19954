package barrier

import (
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/storage"
	"github.com/coffer-dev/coffer/internal/storage/inmem"
)

// fixedClock returns a clock frozen at t.
func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

var epoch = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// newBarrier returns an initialized, unsealed barrier over a fresh inmem
// backend, with its root key.
func newBarrier(t testing.TB, cfg Config) (*Barrier, *inmem.Backend, []byte) {
	t.Helper()
	be := inmem.New()
	if cfg.Backend == nil {
		cfg.Backend = be
	} else {
		be = nil
	}
	if cfg.Now == nil {
		cfg.Now = fixedClock(epoch)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	root, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := b.Initialize(ctx, root); err != nil {
		t.Fatal(err)
	}
	if err := b.Unseal(ctx, root); err != nil {
		t.Fatal(err)
	}
	return b, be, root
}

func mustPut(t testing.TB, s logical.Storage, key, value string) {
	t.Helper()
	if err := s.Put(context.Background(), key, []byte(value)); err != nil {
		t.Fatalf("Put(%q) = %v", key, err)
	}
}

func mustGet(t testing.TB, s logical.Storage, key string) string {
	t.Helper()
	v, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q) = %v", key, err)
	}
	return string(v)
}

// physical returns every physical key and value.
func physical(t testing.TB, be storage.Backend) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	err := be.Scan(context.Background(), "", func(k string, v []byte) error {
		m[k] = append([]byte(nil), v...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	b, _, _ := newBarrier(t, Config{})
	for name, tc := range map[string]struct{ key, value string }{
		"top-level key":        {"a", "1"},
		"nested key":           {"kv/data/app/db", `{"password":"hunter2"}`},
		"empty value":          {"empty", ""},
		"binary value":         {"bin", "\x00\xff\x00"},
		"unicode path":         {"kv/ünïcode/ключ", "v"},
		"dots are no segments": {"a/../b/./c", "v"},
	} {
		t.Run(name, func(t *testing.T) {
			mustPut(t, b, tc.key, tc.value)
			if got := mustGet(t, b, tc.key); got != tc.value {
				t.Errorf("Get(%q) = %q, want %q", tc.key, got, tc.value)
			}
			mustPut(t, b, tc.key, tc.value+"2")
			if got := mustGet(t, b, tc.key); got != tc.value+"2" {
				t.Errorf("after overwrite Get(%q) = %q, want %q", tc.key, got, tc.value+"2")
			}
			if err := b.Delete(ctx, tc.key); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Get(ctx, tc.key); !errors.Is(err, logical.ErrNotFound) {
				t.Errorf("Get after Delete = %v, want ErrNotFound", err)
			}
			if err := b.Delete(ctx, tc.key); err != nil {
				t.Errorf("second Delete = %v, want nil", err)
			}
		})
	}
}

func TestInvalidPaths(t *testing.T) {
	ctx := context.Background()
	b, _, _ := newBarrier(t, Config{})
	for name, key := range map[string]string{
		"empty key":           "",
		"leading slash":       "/a",
		"trailing slash":      "a/",
		"empty segment":       "a//b",
		"only a slash":        "/",
		"double slash at end": "a/b//",
	} {
		t.Run(name, func(t *testing.T) {
			if err := b.Put(ctx, key, []byte("v")); !errors.Is(err, ErrInvalidPath) {
				t.Errorf("Put(%q) = %v, want ErrInvalidPath", key, err)
			}
			if _, err := b.Get(ctx, key); !errors.Is(err, ErrInvalidPath) {
				t.Errorf("Get(%q) = %v, want ErrInvalidPath", key, err)
			}
			if err := b.Delete(ctx, key); !errors.Is(err, ErrInvalidPath) {
				t.Errorf("Delete(%q) = %v, want ErrInvalidPath", key, err)
			}
		})
	}
	for name, prefix := range map[string]string{
		"no trailing slash": "a",
		"leading slash":     "/a/",
		"empty segment":     "a//",
		"only a slash":      "/",
	} {
		t.Run("list "+name, func(t *testing.T) {
			if _, err := b.List(ctx, prefix); !errors.Is(err, ErrInvalidPath) {
				t.Errorf("List(%q) = %v, want ErrInvalidPath", prefix, err)
			}
		})
	}
	t.Run("a bad key in a batch applies nothing", func(t *testing.T) {
		err := b.Apply(ctx, []logical.Op{{Key: "good", Value: []byte("v")}, {Key: "bad/"}})
		if !errors.Is(err, ErrInvalidPath) {
			t.Fatalf("Apply = %v, want ErrInvalidPath", err)
		}
		if _, err := b.Get(ctx, "good"); !errors.Is(err, logical.ErrNotFound) {
			t.Errorf("Get(good) = %v, want ErrNotFound", err)
		}
	})
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	if _, err := New(Config{}); err == nil {
		t.Error("New without a backend succeeded")
	}
	b, err := New(Config{Backend: inmem.New()})
	if err != nil {
		t.Fatal(err)
	}
	root, _ := GenerateKey(nil)
	if ok, err := b.Initialized(ctx); ok || err != nil {
		t.Errorf("Initialized before Initialize = %v, %v; want false, nil", ok, err)
	}
	if err := b.Unseal(ctx, root); !errors.Is(err, ErrNotInitialized) {
		t.Errorf("Unseal before Initialize = %v, want ErrNotInitialized", err)
	}
	if err := b.Initialize(ctx, root[:16]); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Initialize with a 16-byte key = %v, want ErrInvalidKey", err)
	}
	if err := b.Initialize(ctx, root); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Initialized(ctx); !ok || err != nil {
		t.Errorf("Initialized after Initialize = %v, %v; want true, nil", ok, err)
	}
	if err := b.Initialize(ctx, root); !errors.Is(err, ErrAlreadyInitialized) {
		t.Errorf("second Initialize = %v, want ErrAlreadyInitialized", err)
	}
	if !b.Sealed() {
		t.Fatal("Initialize left the barrier unsealed")
	}
	assertSealed(t, b)

	wrong, _ := GenerateKey(nil)
	for name, key := range map[string][]byte{
		"another key":   wrong,
		"short key":     root[:31],
		"long key":      append(append([]byte(nil), root...), 0),
		"nil key":       nil,
		"one bit apart": flip(root, 0),
	} {
		t.Run(name, func(t *testing.T) {
			if err := b.Unseal(ctx, key); !errors.Is(err, ErrInvalidKey) {
				t.Errorf("Unseal = %v, want ErrInvalidKey", err)
			}
			if !b.Sealed() {
				t.Error("a wrong key unsealed the barrier")
			}
		})
	}

	if err := b.Unseal(ctx, root); err != nil {
		t.Fatal(err)
	}
	mustPut(t, b, "a/b", "v")
	b.Seal()
	b.Seal() // idempotent
	assertSealed(t, b)
	if err := b.Unseal(ctx, root); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, b, "a/b"); got != "v" {
		t.Errorf("Get after seal and unseal = %q, want %q", got, "v")
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 1
	return c
}

func assertSealed(t *testing.T, b *Barrier) {
	t.Helper()
	ctx := context.Background()
	root, _ := GenerateKey(nil)
	for name, op := range map[string]func() error{
		"Get":           func() error { _, err := b.Get(ctx, "a/b"); return err },
		"Put":           func() error { return b.Put(ctx, "a/b", []byte("v")) },
		"Delete":        func() error { return b.Delete(ctx, "a/b") },
		"List":          func() error { _, err := b.List(ctx, "a/"); return err },
		"Apply":         func() error { return b.Apply(ctx, []logical.Op{{Key: "a/b"}}) },
		"Rotate":        func() error { _, err := b.Rotate(ctx); return err },
		"KeyStatus":     func() error { _, err := b.KeyStatus(); return err },
		"ChangeRootKey": func() error { return b.ChangeRootKey(ctx, root) },
	} {
		if err := op(); !errors.Is(err, ErrSealed) {
			t.Errorf("sealed %s = %v, want ErrSealed", name, err)
		}
	}
}

func TestUnsealTwiceReloadsKeyring(t *testing.T) {
	ctx := context.Background()
	b1, be, root := newBarrier(t, Config{})
	b2, err := New(Config{Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.Unseal(ctx, root); err != nil {
		t.Fatal(err)
	}
	if _, err := b1.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	mustPut(t, b1, "k", "v")
	if _, err := b2.Get(ctx, "k"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Get of a newer term before reload = %v, want ErrCorrupt", err)
	}
	wrong, _ := GenerateKey(nil)
	if err := b2.Unseal(ctx, wrong); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("re-Unseal with a wrong key = %v, want ErrInvalidKey", err)
	}
	if b2.Sealed() {
		t.Error("a failed re-Unseal sealed the barrier")
	}
	if err := b2.Unseal(ctx, root); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, b2, "k"); got != "v" {
		t.Errorf("Get after reload = %q, want %q", got, "v")
	}
}

// entryTerm returns the term in the physical data entry of key.
func entryTerm(t *testing.T, b *Barrier, be storage.Backend, key string) uint32 {
	t.Helper()
	e, err := be.Get(context.Background(), b.kr.dataKey(key))
	if err != nil {
		t.Fatal(err)
	}
	_, v, err := unpackEntry(e)
	if err != nil {
		t.Fatal(err)
	}
	if v[0] != envelopeVersion {
		t.Fatalf("entry version = %d, want %d", v[0], envelopeVersion)
	}
	return binary.BigEndian.Uint32(v[1:5])
}

func TestRotate(t *testing.T) {
	ctx := context.Background()
	now := epoch
	b, be, root := newBarrier(t, Config{Now: func() time.Time { return now }})

	info, err := b.KeyStatus()
	if err != nil {
		t.Fatal(err)
	}
	if info.Term != 1 || !info.InstallTime.Equal(epoch) {
		t.Errorf("KeyStatus = %+v, want term 1 installed %v", info, epoch)
	}
	mustPut(t, b, "old", "o")
	if got := entryTerm(t, b, be, "old"); got != 1 {
		t.Errorf("term of entry written before rotation = %d, want 1", got)
	}

	now = epoch.Add(time.Hour)
	info, err = b.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Term != 2 || !info.InstallTime.Equal(now) {
		t.Errorf("Rotate = %+v, want term 2 installed %v", info, now)
	}
	mustPut(t, b, "new", "n")
	if got := entryTerm(t, b, be, "new"); got != 2 {
		t.Errorf("term of entry written after rotation = %d, want 2", got)
	}
	if got := entryTerm(t, b, be, "old"); got != 1 {
		t.Errorf("rotation rewrote an old entry: term %d, want 1", got)
	}
	if got := mustGet(t, b, "old"); got != "o" {
		t.Errorf("Get(old) = %q, want %q", got, "o")
	}

	b.Seal()
	if err := b.Unseal(ctx, root); err != nil {
		t.Fatal(err)
	}
	info, err = b.KeyStatus()
	if err != nil {
		t.Fatal(err)
	}
	if info.Term != 2 || !info.InstallTime.Equal(now) || info.Encryptions != 0 {
		t.Errorf("KeyStatus after unseal = %+v, want term 2 installed %v, 0 encryptions", info, now)
	}
	for key, want := range map[string]string{"old": "o", "new": "n"} {
		if got := mustGet(t, b, key); got != want {
			t.Errorf("Get(%q) after unseal = %q, want %q", key, got, want)
		}
	}
	mustPut(t, b, "old", "o2")
	if got := entryTerm(t, b, be, "old"); got != 2 {
		t.Errorf("term of rewritten old entry = %d, want 2", got)
	}
	if info, _ := b.KeyStatus(); info.Encryptions != 2 {
		t.Errorf("Encryptions = %d, want 2 (the value and its name)", info.Encryptions)
	}
}

// failingBackend is a real inmem backend whose Apply fails on demand.
type failingBackend struct {
	*inmem.Backend
	mu   sync.Mutex
	fail func(ops []storage.Op) bool
}

var errInjected = errors.New("injected failure")

func (f *failingBackend) Apply(ctx context.Context, ops []storage.Op) error {
	f.mu.Lock()
	fail := f.fail != nil && f.fail(ops)
	f.mu.Unlock()
	if fail {
		return errInjected
	}
	return f.Backend.Apply(ctx, ops)
}

func (f *failingBackend) failWhen(fn func(ops []storage.Op) bool) {
	f.mu.Lock()
	f.fail = fn
	f.mu.Unlock()
}

func writesKeyring(ops []storage.Op) bool { return ops[0].Key == keyringPath }

func TestRotateAndChangeRootKeyFailuresChangeNothing(t *testing.T) {
	ctx := context.Background()
	fb := &failingBackend{Backend: inmem.New()}
	b, _, root := newBarrier(t, Config{Backend: fb})
	mustPut(t, b, "k", "v")
	fb.failWhen(writesKeyring)

	if _, err := b.Rotate(ctx); !errors.Is(err, errInjected) {
		t.Errorf("Rotate = %v, want the backend's error", err)
	}
	if info, _ := b.KeyStatus(); info.Term != 1 {
		t.Errorf("term after failed Rotate = %d, want 1", info.Term)
	}
	newRoot, _ := GenerateKey(nil)
	if err := b.ChangeRootKey(ctx, newRoot); !errors.Is(err, errInjected) {
		t.Errorf("ChangeRootKey = %v, want the backend's error", err)
	}
	fb.failWhen(nil)
	mustPut(t, b, "k2", "v2")
	if got := mustGet(t, b, "k"); got != "v" {
		t.Errorf("Get after failed rotation = %q, want %q", got, "v")
	}
	b.Seal()
	if err := b.Unseal(ctx, root); err != nil {
		t.Errorf("Unseal with the old root key after failed ChangeRootKey = %v", err)
	}
	if got := mustGet(t, b, "k2"); got != "v2" {
		t.Errorf("Get(k2) = %q, want %q", got, "v2")
	}
}

func TestChangeRootKey(t *testing.T) {
	ctx := context.Background()
	b, _, oldRoot := newBarrier(t, Config{})
	mustPut(t, b, "a/b", "v")
	if _, err := b.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	newRoot, _ := GenerateKey(nil)
	if err := b.ChangeRootKey(ctx, newRoot[:8]); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("ChangeRootKey with an 8-byte key = %v, want ErrInvalidKey", err)
	}
	if err := b.ChangeRootKey(ctx, newRoot); err != nil {
		t.Fatal(err)
	}
	// Rotation after the change must store the keyring under the new key.
	if _, err := b.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	b.Seal()
	if err := b.Unseal(ctx, oldRoot); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Unseal with the old root key = %v, want ErrInvalidKey", err)
	}
	if err := b.Unseal(ctx, newRoot); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, b, "a/b"); got != "v" {
		t.Errorf("Get after ChangeRootKey = %q, want %q", got, "v")
	}
	if info, _ := b.KeyStatus(); info.Term != 3 {
		t.Errorf("term = %d, want 3", info.Term)
	}
}

func TestMovedEntryFailsToOpen(t *testing.T) {
	ctx := context.Background()
	b, be, _ := newBarrier(t, Config{})
	mustPut(t, b, "kv/a", "secret-a")
	mustPut(t, b, "kv/b", "secret-b")
	mustPut(t, b, "kv/c/d", "secret-d")
	kr := b.kr
	copyTo := func(from, to string) {
		t.Helper()
		v, err := be.Get(ctx, from)
		if err != nil {
			t.Fatal(err)
		}
		if err := be.Apply(ctx, []storage.Op{{Key: to, Value: v}}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("a data entry copied to another data key", func(t *testing.T) {
		copyTo(kr.dataKey("kv/a"), kr.dataKey("kv/b"))
		if v, err := b.Get(ctx, "kv/b"); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Get(kv/b) = %q, %v; want ErrCorrupt", v, err)
		}
	})
	t.Run("a folder's entry copied to a value's key", func(t *testing.T) {
		copyTo(kr.entryKey("kv/", "c/"), kr.dataKey("kv/a"))
		if v, err := b.Get(ctx, "kv/a"); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Get(kv/a) = %q, %v; want ErrCorrupt", v, err)
		}
	})
	t.Run("an entry copied to another name in its folder", func(t *testing.T) {
		copyTo(kr.entryKey("kv/", "a"), kr.entryKey("kv/", "zz"))
		if names, err := b.List(ctx, "kv/"); !errors.Is(err, ErrCorrupt) {
			t.Errorf("List(kv/) = %q, %v; want ErrCorrupt", names, err)
		}
		if err := be.Apply(ctx, []storage.Op{{Key: kr.entryKey("kv/", "zz"), Delete: true}}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("an entry copied to another folder", func(t *testing.T) {
		copyTo(kr.entryKey("kv/c/", "d"), kr.entryKey("", "d"))
		if names, err := b.List(ctx, ""); !errors.Is(err, ErrCorrupt) {
			t.Errorf("List(\"\") = %q, %v; want ErrCorrupt", names, err)
		}
	})
	t.Run("an entry copied over the keyring", func(t *testing.T) {
		copyTo(kr.dataKey("kv/c/d"), keyringPath)
		b.Seal()
		root, _ := GenerateKey(nil)
		if err := b.Unseal(ctx, root); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Unseal = %v, want ErrInvalidKey", err)
		}
	})
}

func TestTamperedEntryFailsToOpen(t *testing.T) {
	ctx := context.Background()
	b, be, _ := newBarrier(t, Config{})
	mustPut(t, b, "kv/a", "a value long enough to have a middle")
	pk := b.kr.dataKey("kv/a")
	entry, err := be.Get(ctx, pk)
	if err != nil {
		t.Fatal(err)
	}
	name, orig, err := unpackEntry(entry)
	if err != nil {
		t.Fatal(err)
	}
	// The entry's packing: each must fail to open, not misread.
	for what, v := range map[string][]byte{
		"empty entry":                   nil,
		"name length past the end":      append(binary.AppendUvarint(nil, uint64(len(entry))), entry...),
		"overlong uvarint":              bytes.Repeat([]byte{0xff}, 11),
		"value cut off":                 packEntry(name, nil),
		"value cut short":               packEntry(name, orig[:len(orig)-3]),
		"name and value swapped":        packEntry(orig, name),
		"name length one byte too long": packEntry(append(append([]byte(nil), name...), orig[0]), orig[1:]),
	} {
		t.Run(what, func(t *testing.T) {
			if err := be.Apply(ctx, []storage.Op{{Key: pk, Value: v}}); err != nil {
				t.Fatal(err)
			}
			if got, err := b.Get(ctx, "kv/a"); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Get = %q, %v; want ErrCorrupt", got, err)
			}
		})
	}
	for what, tamper := range map[string]func([]byte) []byte{
		"version byte":        func(v []byte) []byte { v[0] ^= 1; return v },
		"term":                func(v []byte) []byte { v[4] ^= 1; return v },
		"term high byte":      func(v []byte) []byte { v[1] ^= 0x80; return v },
		"first nonce byte":    func(v []byte) []byte { v[headerSize] ^= 1; return v },
		"last nonce byte":     func(v []byte) []byte { v[headerSize+nonceSize-1] ^= 0x40; return v },
		"ciphertext":          func(v []byte) []byte { v[headerSize+nonceSize+3] ^= 1; return v },
		"tag":                 func(v []byte) []byte { v[len(v)-1] ^= 1; return v },
		"truncated tag":       func(v []byte) []byte { return v[:len(v)-1] },
		"appended byte":       func(v []byte) []byte { return append(v, 0) },
		"only the header":     func(v []byte) []byte { return v[:headerSize] },
		"empty":               func(v []byte) []byte { return nil },
		"shorter than a tag":  func(v []byte) []byte { return v[:envelopeOverhead-1] },
		"term 0 (root key's)": func(v []byte) []byte { binary.BigEndian.PutUint32(v[1:5], 0); return v },
	} {
		t.Run(what, func(t *testing.T) {
			v := packEntry(name, tamper(append([]byte(nil), orig...)))
			if err := be.Apply(ctx, []storage.Op{{Key: pk, Value: v}}); err != nil {
				t.Fatal(err)
			}
			got, err := b.Get(ctx, "kv/a")
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Get = %q, %v; want ErrCorrupt", got, err)
			}
			if strings.Contains(err.Error(), "middle") {
				t.Errorf("error %q reveals the value", err)
			}
		})
	}
}

func TestNothingReadableAtRest(t *testing.T) {
	for name, cacheSize := range map[string]int{"with dir cache": 0, "without dir cache": -1} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			b, be, root := newBarrier(t, Config{DirCacheSize: cacheSize})
			segments := []string{"canarymount", "canaryfolder", "canaryleaf"}
			path := strings.Join(segments, "/")
			value := "canary-value-7f3a"
			mustPut(t, b, path, value)
			mustPut(t, b, "canarymount/canaryleaf2", value)
			if _, err := b.Rotate(ctx); err != nil {
				t.Fatal(err)
			}
			mustPut(t, b, "canarymount/canaryfolder/canaryleaf3", value)
			if err := b.Delete(ctx, "canarymount/canaryleaf2"); err != nil {
				t.Fatal(err)
			}

			var needles [][]byte
			for _, s := range append(segments, value, path) {
				needles = append(needles, []byte(s), []byte(base64.StdEncoding.EncodeToString([]byte(s))))
			}
			needles = append(needles, root, []byte(fmt.Sprintf("%x", root)), b.kr.pathKey)
			for _, t0 := range b.kr.terms {
				needles = append(needles, t0.key)
			}
			for k, v := range physical(t, be) {
				for _, n := range needles {
					if bytes.Contains([]byte(k), n) || bytes.Contains(v, n) {
						t.Errorf("physical entry %q holds %q in clear", k, n)
					}
				}
				if k != keyringPath && !strings.HasPrefix(k, entryPrefix) {
					t.Errorf("unexpected physical key %q", k)
				}
			}
		})
	}
}

func TestKeysAreRedacted(t *testing.T) {
	b, _, root := newBarrier(t, Config{})
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	log.Info("state", "barrier", b, "keyring", b.kr)
	printed := fmt.Sprintf("%v %+v %#v %s %v %+v %#v", b, b, b, b, b.kr, b.kr, b.kr) + buf.String()
	for _, secret := range [][]byte{root, b.kr.pathKey, b.kr.terms[0].key} {
		for _, form := range []string{string(secret), fmt.Sprintf("%x", secret), fmt.Sprint(secret), fmt.Sprint(secret[0:4])} {
			if strings.Contains(printed, form[:min(len(form), 12)]) {
				t.Errorf("printed barrier %q reveals a key", printed)
			}
		}
	}
}

func TestSealRacesWithOperations(t *testing.T) {
	ctx := context.Background()
	b, _, root := newBarrier(t, Config{})
	mustPut(t, b, "a/b", "v")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 16)
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("a/g%d/%d", g, i%5)
				var err error
				switch i % 4 {
				case 0:
					err = b.Put(ctx, key, []byte("v"))
				case 1:
					_, err = b.Get(ctx, "a/b")
				case 2:
					_, err = b.List(ctx, "a/")
				case 3:
					err = b.Delete(ctx, key)
				}
				if err != nil && !errors.Is(err, ErrSealed) {
					errs <- err
					return
				}
			}
		})
	}
	for range 50 {
		b.Seal()
		if err := b.Unseal(ctx, root); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("operation racing with Seal = %v, want nil or ErrSealed", err)
	}
	if got := mustGet(t, b, "a/b"); got != "v" {
		t.Errorf("Get(a/b) = %q, want %q", got, "v")
	}
}

func TestSealWipesKeys(t *testing.T) {
	b, _, _ := newBarrier(t, Config{})
	if _, err := b.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	kr, root := b.kr, b.rootKey
	keys := [][]byte{kr.pathKey, root}
	for _, tm := range kr.terms {
		keys = append(keys, tm.key)
	}
	b.Seal()
	for i, k := range keys {
		if !bytes.Equal(k, make([]byte, len(k))) {
			t.Errorf("key %d not wiped by Seal", i)
		}
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("entropy exhausted") }

// switchReader reads from crypto/rand until broken is set.
type switchReader struct {
	mu     sync.Mutex
	broken bool
}

func (s *switchReader) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken {
		return errReader{}.Read(p)
	}
	return cryptorand.Read(p)
}

func TestRandomnessFailure(t *testing.T) {
	ctx := context.Background()
	if _, err := GenerateKey(errReader{}); err == nil {
		t.Error("GenerateKey with a failing reader succeeded")
	}
	b, err := New(Config{Backend: inmem.New(), Rand: errReader{}})
	if err != nil {
		t.Fatal(err)
	}
	root, _ := GenerateKey(nil)
	if err := b.Initialize(ctx, root); err == nil {
		t.Error("Initialize with a failing reader succeeded")
	}
	if ok, _ := b.Initialized(ctx); ok {
		t.Error("a failed Initialize wrote a keyring")
	}

	r := &switchReader{}
	b, be, _ := newBarrier(t, Config{Rand: r})
	r.mu.Lock()
	r.broken = true
	r.mu.Unlock()
	if err := b.Put(ctx, "a/b", []byte("value-xyz")); err == nil || strings.Contains(err.Error(), "value-xyz") {
		t.Errorf("Put with a failing reader = %v, want an error without the value", err)
	}
	if _, err := b.Rotate(ctx); err == nil {
		t.Error("Rotate with a failing reader succeeded")
	}
	if n := countPhysical(t, be, ""); n != 1 {
		t.Errorf("%d physical entries after failed writes, want only the keyring", n)
	}
}
