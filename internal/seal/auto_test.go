package seal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/barrier"
	"github.com/coffer-dev/coffer/internal/shamir"
	"github.com/coffer-dev/coffer/internal/storage"
	"github.com/coffer-dev/coffer/internal/storage/inmem"
)

var (
	staticKey1 = bytes.Repeat([]byte{0x11}, 32)
	staticKey2 = bytes.Repeat([]byte{0x22}, 32)
)

// mustStatic returns a Static over env:// keys given as a map.
func mustStatic(t testing.TB, id string, key []byte, prevID string, prev []byte) *Static {
	t.Helper()
	env := map[string]string{"CUR": base64.StdEncoding.EncodeToString(key)}
	cfg := StaticConfig{CurrentKeyID: id, CurrentKey: "env://CUR", Getenv: func(k string) string { return env[k] }}
	if prev != nil {
		env["PREV"] = base64.StdEncoding.EncodeToString(prev)
		cfg.PreviousKeyID, cfg.PreviousKey = prevID, "env://PREV"
	}
	s, err := NewStatic(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openWith builds a fresh barrier and Manager over backend with cfg's
// protectors, as a restarted server with that seal config does.
func openWith(t testing.TB, backend storage.Backend, p Protector, from Wrapper) *env {
	t.Helper()
	b, err := barrier.New(barrier.Config{Backend: backend})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{Backend: backend, Barrier: b, Protector: p, MigrateFrom: from, Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	return &env{backend: backend, barrier: b, m: m}
}

func TestStaticKeyReferences(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return "file://" + p
	}
	raw := write("raw", staticKey1)
	b64nl := write("b64", []byte(base64.StdEncoding.EncodeToString(staticKey1)+"\n"))
	short := write("short", []byte(base64.StdEncoding.EncodeToString(staticKey1[:16])))
	env := map[string]string{"GOOD": base64.StdEncoding.EncodeToString(staticKey1), "BAD": "not a key"}
	for name, tc := range map[string]struct {
		cfg  StaticConfig
		want error
	}{
		"raw 32 bytes in a file":          {StaticConfig{CurrentKeyID: "k", CurrentKey: raw}, nil},
		"base64 file with a newline":      {StaticConfig{CurrentKeyID: "k", CurrentKey: b64nl}, nil},
		"base64 in an env var":            {StaticConfig{CurrentKeyID: "k", CurrentKey: "env://GOOD"}, nil},
		"unset env var is resolved later": {StaticConfig{CurrentKeyID: "k", CurrentKey: "env://NOPE"}, nil},
		"missing file is resolved later":  {StaticConfig{CurrentKeyID: "k", CurrentKey: "file://" + dir + "/none"}, nil},
		"16-byte key is invalid":          {StaticConfig{CurrentKeyID: "k", CurrentKey: short}, ErrInvalidConfig},
		"garbage key is invalid":          {StaticConfig{CurrentKeyID: "k", CurrentKey: "env://BAD"}, ErrInvalidConfig},
		"literal key is refused":          {StaticConfig{CurrentKeyID: "k", CurrentKey: base64.StdEncoding.EncodeToString(staticKey1)}, ErrInvalidConfig},
		"no key id is invalid":            {StaticConfig{CurrentKey: raw}, ErrInvalidConfig},
		"previous key without its id":     {StaticConfig{CurrentKeyID: "k", CurrentKey: raw, PreviousKey: raw}, ErrInvalidConfig},
		"previous key with id is allowed": {StaticConfig{CurrentKeyID: "k", CurrentKey: raw, PreviousKeyID: "j", PreviousKey: b64nl}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			tc.cfg.Getenv = func(k string) string { return env[k] }
			_, err := NewStatic(tc.cfg)
			if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("NewStatic = %v, want %v", err, tc.want)
			}
			if err != nil {
				assertNoKeyMaterial(t, err.Error(), staticKey1)
			}
		})
	}
}

func TestStaticKeyAppearsLater(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "key")
	s, err := NewStatic(StaticConfig{CurrentKeyID: "k", CurrentKey: "file://" + path})
	if err != nil {
		t.Fatalf("NewStatic with a key file not there yet: %v", err)
	}
	if _, err := s.Wrap(ctx, make([]byte, 32)); !errors.Is(err, ErrKeyUnavailable) || !strings.Contains(err.Error(), path) {
		t.Errorf("Wrap before the file exists = %v, want ErrKeyUnavailable naming the file", err)
	}
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(staticKey1)), 0o600); err != nil {
		t.Fatal(err)
	}
	blob, err := s.Wrap(ctx, make([]byte, 32))
	if err != nil {
		t.Fatalf("Wrap once the file exists: %v", err)
	}
	if _, err := s.Unwrap(ctx, blob); err != nil {
		t.Errorf("Unwrap: %v", err)
	}
}

func TestStaticWrapUnwrap(t *testing.T) {
	ctx := t.Context()
	s1 := mustStatic(t, "k1", staticKey1, "", nil)
	kek := bytes.Repeat([]byte{0x42}, 32)
	blob, err := s1.Wrap(ctx, kek)
	if err != nil {
		t.Fatal(err)
	}
	assertNoKeyMaterial(t, string(blob), kek, staticKey1)
	if got, err := s1.Unwrap(ctx, blob); err != nil || !bytes.Equal(got, kek) {
		t.Fatalf("Unwrap = %x, %v; want the KEK", got, err)
	}
	if s1.NeedsRewrap(blob) {
		t.Error("a blob under the current key needs a rewrap")
	}
	for name, tc := range map[string]struct {
		s    *Static
		blob []byte
		want error
	}{
		"flipped last bit":              {s1, flipped(blob, len(blob)-1), ErrInvalidKey},
		"flipped nonce":                 {s1, flipped(blob, 5), ErrInvalidKey},
		"truncated":                     {s1, blob[:10], ErrInvalidKey},
		"empty":                         {s1, nil, ErrInvalidKey},
		"other version":                 {s1, flipped(blob, 0), ErrInvalidKey},
		"same id, another key":          {mustStatic(t, "k1", staticKey2, "", nil), blob, ErrInvalidKey},
		"unknown key id is unavailable": {mustStatic(t, "k2", staticKey2, "", nil), blob, ErrKeyUnavailable},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := tc.s.Unwrap(ctx, tc.blob); !errors.Is(err, tc.want) {
				t.Errorf("Unwrap = %v, want %v", err, tc.want)
			}
		})
	}
	s2 := mustStatic(t, "k2", staticKey2, "k1", staticKey1)
	if got, err := s2.Unwrap(ctx, blob); err != nil || !bytes.Equal(got, kek) {
		t.Errorf("Unwrap with the previous key = %v", err)
	}
	if !s2.NeedsRewrap(blob) {
		t.Error("a blob under the previous key does not need a rewrap")
	}
}

// switchableWrapper is a FAKE for a remote seal that goes away: it wraps
// the real Static and, while down, fails as an unreachable transit server
// would. (The real transit seal is tested against real servers in
// tests/compat.)
type switchableWrapper struct {
	*Static
	down atomic.Bool
}

func (w *switchableWrapper) Unwrap(ctx context.Context, blob []byte) ([]byte, error) {
	if w.down.Load() {
		return nil, fmt.Errorf("%w: dial tcp 127.0.0.1:1: connection refused", ErrKeyUnavailable)
	}
	return w.Static.Unwrap(ctx, blob)
}

func (w *switchableWrapper) Wrap(ctx context.Context, kek []byte) ([]byte, error) {
	if w.down.Load() {
		return nil, fmt.Errorf("%w: dial tcp 127.0.0.1:1: connection refused", ErrKeyUnavailable)
	}
	return w.Static.Wrap(ctx, kek)
}

// initAuto initializes a static-sealed server with 5/3 recovery keys and
// seals it.
func initAuto(t *testing.T, backend storage.Backend, p Protector) (*env, [][]byte) {
	t.Helper()
	e := openWith(t, backend, p, nil)
	res, err := e.m.Init(t.Context(), InitRequest{RecoveryShares: 5, RecoveryThreshold: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Keys) != 0 || len(res.RecoveryKeys) != 5 {
		t.Fatalf("Init gave %d unseal keys and %d recovery keys, want 0 and 5", len(res.Keys), len(res.RecoveryKeys))
	}
	if err := e.m.Seal(t.Context()); err != nil {
		t.Fatal(err)
	}
	return e, res.RecoveryKeys
}

func TestAutoUnsealLifecycle(t *testing.T) {
	ctx := t.Context()
	backend := inmem.New()
	_, recovery := initAuto(t, backend, mustStatic(t, "k1", staticKey1, "", nil))

	// A restarted server unseals itself.
	e := openWith(t, backend, mustStatic(t, "k1", staticKey1, "", nil), nil)
	st := mustStatus(t, e.m)
	if !st.Sealed || st.Type != TypeStatic || !st.RecoverySeal || st.T != 3 || st.N != 5 || st.Migration {
		t.Fatalf("status before AutoUnseal = %+v", st)
	}
	if _, err := e.m.Unseal(ctx, recovery[0]); !errors.Is(err, ErrAutoUnseal) {
		t.Errorf("Unseal with a recovery key = %v, want ErrAutoUnseal", err)
	}
	if err := e.m.AutoUnseal(ctx); err != nil {
		t.Fatalf("AutoUnseal: %v", err)
	}
	if e.barrier.Sealed() {
		t.Fatal("barrier sealed after AutoUnseal")
	}
	if err := e.m.AutoUnseal(ctx); err != nil {
		t.Errorf("AutoUnseal when unsealed = %v, want nil", err)
	}

	t.Run("recovery keys authorize generate-root", func(t *testing.T) {
		a, err := e.m.GenerateRootInit(ctx)
		if err != nil || a.Required != 3 {
			t.Fatalf("GenerateRootInit = %+v, %v; want Required 3", a, err)
		}
		var done bool
		for _, k := range recovery[1:4] {
			if _, done, err = e.m.GenerateRootUpdate(ctx, a.Nonce, k); err != nil {
				t.Fatal(err)
			}
		}
		if !done {
			t.Error("generate-root not done after 3 recovery keys")
		}
	})

	t.Run("wrong recovery keys are refused", func(t *testing.T) {
		wrong, err := shamir.Split(bytes.Repeat([]byte{9}, 32), 5, 3, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := e.m.GenerateRootInit(ctx)
		defer e.m.GenerateRootCancel()
		for i, k := range wrong[:3] {
			_, _, err = e.m.GenerateRootUpdate(ctx, a.Nonce, k)
			if i < 2 && err != nil {
				t.Fatal(err)
			}
		}
		if !errors.Is(err, ErrInvalidKey) {
			t.Errorf("generate-root with foreign shares = %v, want ErrInvalidKey", err)
		}
	})

	t.Run("rekey replaces the recovery keys", func(t *testing.T) {
		r, err := e.m.RekeyInit(ctx, RekeyRequest{SecretShares: 3, SecretThreshold: 2})
		if err != nil {
			t.Fatal(err)
		}
		var res *RekeyResult
		for _, k := range recovery[:3] {
			if _, res, err = e.m.RekeyUpdate(ctx, r.Nonce, k); err != nil {
				t.Fatal(err)
			}
		}
		if res == nil || len(res.Keys) != 3 {
			t.Fatalf("rekey result = %+v, want 3 new recovery keys", res)
		}
		if st := mustStatus(t, e.m); st.T != 2 || st.N != 3 || !st.RecoverySeal {
			t.Errorf("status after recovery rekey = %+v, want 2 of 3", st)
		}
		a, _ := e.m.GenerateRootInit(ctx)
		var done bool
		for _, k := range res.Keys[:2] {
			if _, done, err = e.m.GenerateRootUpdate(ctx, a.Nonce, k); err != nil {
				t.Fatal(err)
			}
		}
		if !done {
			t.Error("new recovery keys do not authorize generate-root")
		}
		recovery = res.Keys
	})

	t.Run("rotating the static key rewraps the KEK", func(t *testing.T) {
		if err := e.m.Seal(ctx); err != nil {
			t.Fatal(err)
		}
		rot := openWith(t, backend, mustStatic(t, "k2", staticKey2, "k1", staticKey1), nil)
		if err := rot.m.AutoUnseal(ctx); err != nil {
			t.Fatalf("AutoUnseal with k1 as previous key: %v", err)
		}
		_ = rot.m.Seal(ctx)
		only2 := openWith(t, backend, mustStatic(t, "k2", staticKey2, "", nil), nil)
		if err := only2.m.AutoUnseal(ctx); err != nil {
			t.Fatalf("AutoUnseal with k2 only after the rewrap: %v", err)
		}
	})

	t.Run("nothing in clear at rest", func(t *testing.T) {
		secrets := append([][]byte{staticKey1, staticKey2}, recovery...)
		if err := backend.Scan(ctx, "", func(k string, v []byte) error {
			assertNoKeyMaterial(t, k, secrets...)
			assertNoKeyMaterial(t, string(v), secrets...)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestAutoUnsealKeyUnavailable(t *testing.T) {
	ctx := t.Context()
	backend := inmem.New()
	w := &switchableWrapper{Static: mustStatic(t, "k1", staticKey1, "", nil)}
	initAuto(t, backend, w)

	e := openWith(t, backend, w, nil)
	w.down.Store(true)
	err := e.m.AutoUnseal(ctx)
	if !errors.Is(err, ErrKeyUnavailable) {
		t.Fatalf("AutoUnseal with the seal down = %v, want ErrKeyUnavailable", err)
	}
	st := mustStatus(t, e.m)
	if !st.Sealed || !strings.Contains(st.Reason, "seal key unavailable") || !strings.Contains(st.Reason, "connection refused") {
		t.Errorf("status with the seal down = %+v, want sealed with the reason", st)
	}
	w.down.Store(false)
	if err := e.m.AutoUnseal(ctx); err != nil {
		t.Fatalf("AutoUnseal once the seal is back: %v", err)
	}
	if st := mustStatus(t, e.m); st.Sealed || st.Reason != "" {
		t.Errorf("status after recovery = %+v, want unsealed without a reason", st)
	}

	wrongKey := openWith(t, backend, mustStatic(t, "k1", staticKey2, "", nil), nil)
	if err := wrongKey.m.AutoUnseal(ctx); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("AutoUnseal with another key under the same id = %v, want ErrInvalidKey", err)
	}
	if !wrongKey.barrier.Sealed() {
		t.Error("unsealed with the wrong key")
	}
}

func TestAutoInitValidates(t *testing.T) {
	ctx := t.Context()
	for name, req := range map[string]InitRequest{
		"no recovery shares":            {SecretShares: 5, SecretThreshold: 3},
		"threshold above shares":        {RecoveryShares: 2, RecoveryThreshold: 3},
		"threshold 1 of several":        {RecoveryShares: 3, RecoveryThreshold: 1},
		"more than 255 recovery shares": {RecoveryShares: 256, RecoveryThreshold: 3},
	} {
		t.Run(name, func(t *testing.T) {
			e := openWith(t, inmem.New(), mustStatic(t, "k1", staticKey1, "", nil), nil)
			if _, err := e.m.Init(ctx, req); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Init(%+v) = %v, want ErrInvalidConfig", req, err)
			}
		})
	}
	t.Run("unreachable seal writes nothing", func(t *testing.T) {
		w := &switchableWrapper{Static: mustStatic(t, "k1", staticKey1, "", nil)}
		w.down.Store(true)
		e := openWith(t, inmem.New(), w, nil)
		if _, err := e.m.Init(ctx, InitRequest{RecoveryShares: 1, RecoveryThreshold: 1}); !errors.Is(err, ErrKeyUnavailable) {
			t.Fatalf("Init with the seal down = %v, want ErrKeyUnavailable", err)
		}
		if st := mustStatus(t, e.m); st.Initialized {
			t.Error("initialized although the KEK could not be wrapped")
		}
		w.down.Store(false)
		if _, err := e.m.Init(ctx, InitRequest{RecoveryShares: 1, RecoveryThreshold: 1}); err != nil {
			t.Errorf("Init retried once the seal is back: %v", err)
		}
	})
	t.Run("AutoUnseal on shamir or before init", func(t *testing.T) {
		sh := open(t, inmem.New())
		if err := sh.m.AutoUnseal(ctx); !errors.Is(err, ErrUnsupported) {
			t.Errorf("AutoUnseal on shamir = %v, want ErrUnsupported", err)
		}
		e := openWith(t, inmem.New(), mustStatic(t, "k1", staticKey1, "", nil), nil)
		if err := e.m.AutoUnseal(ctx); !errors.Is(err, ErrNotInitialized) {
			t.Errorf("AutoUnseal before Init = %v, want ErrNotInitialized", err)
		}
		if st := mustStatus(t, e.m); st.Reason != "" || !st.RecoverySeal {
			t.Errorf("status before Init = %+v, want RecoverySeal and no reason", st)
		}
	})
}

func TestMigrateShamirToStaticAndBack(t *testing.T) {
	ctx := t.Context()
	e, keys := initSealed(t, 5, 3)
	backend := e.backend
	static := mustStatic(t, "k1", staticKey1, "", nil)

	auto := openWith(t, backend, static, nil)
	if st := mustStatus(t, auto.m); !st.Migration || st.Type != TypeShamir {
		t.Fatalf("status before migration = %+v, want Migration from shamir", st)
	}
	if err := auto.m.AutoUnseal(ctx); !errors.Is(err, ErrMigrationRequired) {
		t.Errorf("AutoUnseal before migration = %v, want ErrMigrationRequired", err)
	}
	if _, err := auto.m.Unseal(ctx, keys[0]); !errors.Is(err, ErrMigrationRequired) {
		t.Errorf("Unseal before migration = %v, want ErrMigrationRequired", err)
	}
	var st Status
	var err error
	for _, k := range keys[1:4] {
		if st, err = auto.m.UnsealMigrate(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if st.Sealed || st.Type != TypeStatic || !st.RecoverySeal || st.T != 3 || st.N != 5 || st.Migration {
		t.Fatalf("status after migrating to static = %+v", st)
	}
	if _, err := auto.m.UnsealMigrate(ctx, keys[0]); err != nil {
		t.Errorf("UnsealMigrate when unsealed = %v, want the status", err)
	}
	_ = auto.m.Seal(ctx)

	again := openWith(t, backend, static, nil)
	if err := again.m.AutoUnseal(ctx); err != nil {
		t.Fatalf("AutoUnseal after migration: %v", err)
	}
	a, _ := again.m.GenerateRootInit(ctx)
	var done bool
	for _, k := range keys[:3] {
		if _, done, err = again.m.GenerateRootUpdate(ctx, a.Nonce, k); err != nil {
			t.Fatal(err)
		}
	}
	if !done {
		t.Error("the old unseal keys do not work as recovery keys")
	}
	_ = again.m.Seal(ctx)

	if _, err := open(t, backend).m.UnsealMigrate(ctx, keys[0]); !errors.Is(err, ErrMigrationRequired) {
		t.Errorf("UnsealMigrate to shamir without the old seal = %v, want ErrMigrationRequired", err)
	}
	if _, err := openWith(t, backend, mustStatic(t, "k9", staticKey2, "", nil), nil).m.UnsealMigrate(ctx, keys[0]); !errors.Is(err, ErrNoMigration) {
		t.Errorf("UnsealMigrate static → static = %v, want ErrNoMigration", err)
	}
	back := openWith(t, backend, Shamir{}, static)
	for _, k := range []([]byte){keys[4], keys[2], keys[0]} {
		if st, err = back.m.UnsealMigrate(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if st.Sealed || st.Type != TypeShamir || st.RecoverySeal || st.T != 3 || st.N != 5 {
		t.Fatalf("status after migrating back to shamir = %+v", st)
	}
	_ = back.m.Seal(ctx)
	for _, p := range []string{KEKPath, RecoveryCheckPath} {
		if _, err := backend.Get(ctx, p); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s after migrating to shamir: %v, want not found", p, err)
		}
	}
	plain := open(t, backend)
	unsealWith(t, plain.m, keys[1], keys[3], keys[4])
	if plain.barrier.Sealed() {
		t.Error("the original unseal keys do not unseal after migrating back")
	}
}

func TestStaticConfigFromBlock(t *testing.T) {
	got, err := StaticConfigFromBlock(map[string]any{"current_key_id": "k1", "current_key": "env://K", "disabled": "true"})
	if err != nil || got.CurrentKeyID != "k1" || got.CurrentKey != "env://K" {
		t.Errorf("StaticConfigFromBlock = %+v, %v", got, err)
	}
	for name, attrs := range map[string]map[string]any{
		"unknown setting":  {"current_key_id": "k1", "key": "x"},
		"number as key id": {"current_key_id": int64(3)},
	} {
		if _, err := StaticConfigFromBlock(attrs); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
		}
	}
}
