package seal

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/barrier"
	"github.com/coffer-dev/coffer/internal/shamir"
	"github.com/coffer-dev/coffer/internal/storage"
	"github.com/coffer-dev/coffer/internal/storage/inmem"
)

// failingBackend is the real inmem backend with failpoints on Apply: all
// of them, or those writing failKey.
type failingBackend struct {
	*inmem.Backend
	failApply atomic.Bool
	failKey   atomic.Value // string
}

var errFailpoint = errors.New("failpoint: apply")

func (f *failingBackend) Apply(ctx context.Context, ops []storage.Op) error {
	if f.failApply.Load() {
		return errFailpoint
	}
	for _, op := range ops {
		if k, _ := f.failKey.Load().(string); k != "" && op.Key == k {
			return errFailpoint
		}
	}
	return f.Backend.Apply(ctx, ops)
}

type env struct {
	backend storage.Backend
	barrier *barrier.Barrier
	m       *Manager
}

var fixedNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// open builds a fresh barrier and Manager over backend, as a restarted
// server does.
func open(t testing.TB, backend storage.Backend) *env {
	t.Helper()
	b, err := barrier.New(barrier.Config{Backend: backend})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{Backend: backend, Barrier: b, Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	return &env{backend: backend, barrier: b, m: m}
}

// initSealed initializes a shares-of-threshold server and seals it.
func initSealed(t testing.TB, shares, threshold int) (*env, [][]byte) {
	t.Helper()
	e := open(t, inmem.New())
	res, err := e.m.Init(t.Context(), InitRequest{SecretShares: shares, SecretThreshold: threshold})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.Seal(t.Context()); err != nil {
		t.Fatal(err)
	}
	return e, res.Keys
}

func mustStatus(t *testing.T, m *Manager) Status {
	t.Helper()
	st, err := m.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func flipped(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}

func TestInitLeavesBarrierUnsealed(t *testing.T) {
	e := open(t, inmem.New())
	ctx := t.Context()
	if got, want := mustStatus(t, e.m), (Status{Type: "shamir", Sealed: true}); got != want {
		t.Errorf("status before init = %+v, want %+v", got, want)
	}
	res, err := e.m.Init(ctx, InitRequest{SecretShares: 5, SecretThreshold: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Keys) != 5 {
		t.Fatalf("got %d keys, want 5", len(res.Keys))
	}
	for i, k := range res.Keys {
		if len(k) != 33 {
			t.Errorf("key %d is %d bytes, want 33", i, len(k))
		}
	}
	if e.barrier.Sealed() {
		t.Error("barrier sealed after Init, want unsealed for the root token")
	}
	if got, want := mustStatus(t, e.m), (Status{Type: "shamir", Initialized: true, T: 3, N: 5}); got != want {
		t.Errorf("status after init = %+v, want %+v", got, want)
	}
	if _, err := e.m.Init(ctx, InitRequest{SecretShares: 1, SecretThreshold: 1}); !errors.Is(err, ErrAlreadyInitialized) {
		t.Errorf("second Init = %v, want ErrAlreadyInitialized", err)
	}
	if err := e.m.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mustStatus(t, e.m); !got.Sealed || !got.Initialized {
		t.Errorf("status after Seal = %+v, want initialized and sealed", got)
	}
}

func TestInitValidates(t *testing.T) {
	for name, tc := range map[string]struct {
		shares, threshold int
		want              error
	}{
		"zero shares":                      {0, 0, ErrInvalidConfig},
		"zero threshold":                   {3, 0, ErrInvalidConfig},
		"threshold above shares":           {3, 4, ErrInvalidConfig},
		"threshold 1 with several shares":  {5, 1, ErrInvalidConfig},
		"more than 255 shares":             {256, 3, ErrInvalidConfig},
		"negative shares":                  {-1, 1, ErrInvalidConfig},
		"1 of 1 is allowed":                {1, 1, nil},
		"2 of 2 is allowed":                {2, 2, nil},
		"255 of 255 is the upper boundary": {255, 255, nil},
	} {
		t.Run(name, func(t *testing.T) {
			e := open(t, inmem.New())
			_, err := e.m.Init(t.Context(), InitRequest{SecretShares: tc.shares, SecretThreshold: tc.threshold})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Init(%d of %d) = %v, want %v", tc.threshold, tc.shares, err, tc.want)
			}
			if init, _ := e.barrier.Initialized(t.Context()); init != (tc.want == nil) {
				t.Errorf("barrier initialized = %v after Init error %v", init, err)
			}
		})
	}
}

func TestUnsealAnyThreeInAnyOrder(t *testing.T) {
	e, keys := initSealed(t, 5, 3)
	ctx := t.Context()
	n := 0
	for a := range 5 {
		for b := range 5 {
			for c := range 5 {
				if a == b || b == c || a == c {
					continue
				}
				n++
				var nonce string
				for i, k := range []int{a, b, c} {
					st, err := e.m.Unseal(ctx, keys[k])
					if err != nil {
						t.Fatalf("shares %d,%d,%d: Unseal #%d: %v", a, b, c, i+1, err)
					}
					if i < 2 {
						if !st.Sealed || st.Progress != i+1 || st.T != 3 || st.N != 5 || st.Nonce == "" {
							t.Fatalf("shares %d,%d,%d: after %d status = %+v, want sealed, progress %d", a, b, c, i+1, st, i+1)
						}
						if i == 1 && st.Nonce != nonce {
							t.Fatalf("nonce changed within an unseal: %q then %q", nonce, st.Nonce)
						}
						nonce = st.Nonce
						continue
					}
					if st.Sealed || st.Progress != 0 || st.Nonce != "" {
						t.Fatalf("shares %d,%d,%d: final status = %+v, want unsealed, progress 0", a, b, c, st)
					}
				}
				if e.barrier.Sealed() {
					t.Fatalf("shares %d,%d,%d: barrier still sealed", a, b, c)
				}
				if err := e.m.Seal(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if n != 60 {
		t.Errorf("tried %d orders, want 60", n)
	}
}

func TestUnsealDuplicateShareIsNotProgress(t *testing.T) {
	e, keys := initSealed(t, 5, 3)
	ctx := t.Context()
	for range 3 {
		st, err := e.m.Unseal(ctx, keys[2])
		if err != nil || st.Progress != 1 || !st.Sealed {
			t.Fatalf("Unseal(same share) = (%+v, %v), want progress 1, sealed, no error", st, err)
		}
	}
	e.m.Unseal(ctx, keys[0])
	if st, err := e.m.Unseal(ctx, keys[4]); err != nil || st.Sealed {
		t.Fatalf("third distinct share: (%+v, %v), want unsealed", st, err)
	}
}

func TestUnsealBadShares(t *testing.T) {
	e, keys := initSealed(t, 5, 3)
	ctx := t.Context()
	e.m.Unseal(ctx, keys[0])
	sameIndex := bytes.Clone(keys[1])
	sameIndex[len(sameIndex)-1] = keys[0][len(keys[0])-1]
	zeroIndex := bytes.Clone(keys[1])
	zeroIndex[len(zeroIndex)-1] = 0
	for name, bad := range map[string][]byte{
		"truncated share":                     keys[1][:32],
		"share with an extra byte":            append(bytes.Clone(keys[1]), 7),
		"empty key":                           nil,
		"a different share with a used index": sameIndex,
		"share index zero":                    zeroIndex,
	} {
		t.Run(name, func(t *testing.T) {
			st, err := e.m.Unseal(ctx, bad)
			if !errors.Is(err, ErrInvalidShare) {
				t.Fatalf("Unseal = %v, want ErrInvalidShare", err)
			}
			if st.Progress != 1 {
				t.Errorf("progress = %d, want 1 (not counted, not reset)", st.Progress)
			}
			assertNoKeyMaterial(t, err.Error(), keys...)
		})
	}
	// The quorum still completes with good shares.
	e.m.Unseal(ctx, keys[1])
	if st, err := e.m.Unseal(ctx, keys[2]); err != nil || st.Sealed {
		t.Fatalf("Unseal after bad shares = (%+v, %v), want unsealed", st, err)
	}
}

func TestUnsealCorruptedShareResetsProgress(t *testing.T) {
	e, keys := initSealed(t, 5, 3)
	ctx := t.Context()
	for _, pos := range []int{0, 17, 31} {
		t.Run(fmt.Sprintf("byte %d flipped", pos), func(t *testing.T) {
			e.m.Unseal(ctx, keys[0])
			st1, _ := e.m.Unseal(ctx, flipped(keys[3], pos))
			if st1.Progress != 2 {
				t.Fatalf("progress after corrupted share = %d, want 2 (it looks well-formed)", st1.Progress)
			}
			st, err := e.m.Unseal(ctx, keys[4])
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("Unseal at threshold = %v, want ErrInvalidKey", err)
			}
			assertNoKeyMaterial(t, err.Error(), keys...)
			if !st.Sealed || st.Progress != 0 || st.Nonce != "" {
				t.Errorf("status = %+v, want sealed with progress reset", st)
			}
			if !e.barrier.Sealed() {
				t.Error("barrier unsealed by a corrupted share")
			}
		})
	}
	for _, k := range [][]byte{keys[0], keys[3], keys[4]} {
		e.m.Unseal(ctx, k)
	}
	if e.barrier.Sealed() {
		t.Error("good shares after a failed attempt did not unseal")
	}
}

func TestResetUnseal(t *testing.T) {
	e, keys := initSealed(t, 5, 3)
	ctx := t.Context()
	e.m.Unseal(ctx, keys[0])
	st, _ := e.m.Unseal(ctx, keys[1])
	oldNonce := st.Nonce
	e.m.ResetUnseal()
	if st := mustStatus(t, e.m); st.Progress != 0 || st.Nonce != "" {
		t.Errorf("after ResetUnseal status = %+v, want progress 0, no nonce", st)
	}
	st, _ = e.m.Unseal(ctx, keys[2])
	if st.Progress != 1 || st.Nonce == oldNonce {
		t.Errorf("after reset: progress %d nonce %q, want 1 and a new nonce", st.Progress, st.Nonce)
	}
}

func TestUnsealWhenUnsealedAndBeforeInit(t *testing.T) {
	e := open(t, inmem.New())
	ctx := t.Context()
	if _, err := e.m.Unseal(ctx, make([]byte, 33)); !errors.Is(err, ErrNotInitialized) {
		t.Errorf("Unseal before Init = %v, want ErrNotInitialized", err)
	}
	if err := e.m.Seal(ctx); err != nil {
		t.Errorf("Seal before Init = %v, want nil", err)
	}
	if _, err := e.m.Init(ctx, InitRequest{SecretShares: 3, SecretThreshold: 2}); err != nil {
		t.Fatal(err)
	}
	st, err := e.m.Unseal(ctx, []byte("anything at all"))
	if err != nil || st.Sealed || st.Progress != 0 {
		t.Errorf("Unseal while unsealed = (%+v, %v), want the unsealed status", st, err)
	}
}

func TestSealUnsealAndRestart(t *testing.T) {
	e, keys := initSealed(t, 5, 3)
	ctx := t.Context()
	unsealWith(t, e.m, keys[0], keys[1], keys[2])
	if err := e.m.Seal(ctx); err != nil {
		t.Fatal(err)
	}
	unsealWith(t, e.m, keys[4], keys[3], keys[2])

	// Progress is not carried across Seal.
	e.m.Seal(ctx)
	e.m.Unseal(ctx, keys[0])
	e.m.Seal(ctx)
	if st := mustStatus(t, e.m); st.Progress != 0 {
		t.Errorf("progress after Seal = %d, want 0", st.Progress)
	}

	// A restarted server over the same storage.
	r := open(t, e.backend)
	if st := mustStatus(t, r.m); !st.Initialized || !st.Sealed || st.T != 3 || st.N != 5 {
		t.Fatalf("restarted status = %+v, want initialized, sealed, 3 of 5", st)
	}
	unsealWith(t, r.m, keys[1], keys[3], keys[4])
	if r.barrier.Sealed() {
		t.Error("restarted barrier still sealed")
	}
	// The data written before the restart is readable.
	if err := r.barrier.Put(ctx, "kv/a", []byte("v")); err != nil {
		t.Fatal(err)
	}
}

func TestOneOfOneKeyIsTheKEK(t *testing.T) {
	e, keys := initSealed(t, 1, 1)
	ctx := t.Context()
	if len(keys) != 1 || len(keys[0]) != 32 {
		t.Fatalf("1-of-1 keys = %d of %d bytes, want one of 32 (Vault's raw key)", len(keys), len(keys[0]))
	}
	if _, err := e.m.Unseal(ctx, flipped(keys[0], 5)); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Unseal(wrong key) = %v, want ErrInvalidKey", err)
	}
	if _, err := e.m.Unseal(ctx, keys[0][:31]); !errors.Is(err, ErrInvalidShare) {
		t.Errorf("Unseal(short key) = %v, want ErrInvalidShare", err)
	}
	if st, err := e.m.Unseal(ctx, keys[0]); err != nil || st.Sealed || st.T != 1 || st.N != 1 {
		t.Errorf("Unseal(key) = (%+v, %v), want unsealed 1 of 1", st, err)
	}
}

func TestConcurrentUnseal(t *testing.T) {
	e, keys := initSealed(t, 5, 3)
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, len(keys)*2)
	for _, k := range keys {
		wg.Go(func() {
			if _, err := e.m.Unseal(ctx, k); err != nil {
				errs <- err
			}
			if _, err := e.m.Status(ctx); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Unseal: %v", err)
	}
	if e.barrier.Sealed() {
		t.Error("five concurrent shares did not unseal")
	}
}

func TestNothingInClearAtRest(t *testing.T) {
	e, keys := initSealed(t, 5, 3)
	ctx := t.Context()
	unsealWith(t, e.m, keys[0], keys[1], keys[2])
	if err := e.barrier.Put(ctx, "kv/app", []byte("payload")); err != nil {
		t.Fatal(err)
	}
	kek, err := shamir.Combine(keys[:3])
	if err != nil {
		t.Fatal(err)
	}
	rootKey, err := openRootKey(ctx, e.backend, kek)
	if err != nil {
		t.Fatal(err)
	}
	secrets := append([][]byte{kek, rootKey}, keys...)
	n := 0
	err = e.backend.Scan(ctx, "", func(k string, v []byte) error {
		n++
		assertNoKeyMaterial(t, k, secrets...)
		assertNoKeyMaterial(t, string(v), secrets...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 3 {
		t.Errorf("scanned %d physical entries, want at least config, root key and keyring", n)
	}
	raw, err := e.backend.Get(ctx, ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(raw), `{"type":"shamir","secret_shares":5,"secret_threshold":3}`; got != want {
		t.Errorf("stored config = %s, want %s", got, want)
	}
}

// assertNoKeyMaterial fails if s holds any of keys raw, in hex or base64
// (checking every 16-byte window of each key).
func assertNoKeyMaterial(t *testing.T, s string, keys ...[]byte) {
	t.Helper()
	for _, k := range keys {
		for i := 0; i+16 <= len(k); i += 8 {
			w := k[i : i+16]
			for _, enc := range []string{string(w), hex.EncodeToString(w), base64.StdEncoding.EncodeToString(w)[:20]} {
				if strings.Contains(s, enc) {
					t.Fatalf("key material found in %.40q…", s)
				}
			}
		}
	}
}

func TestTamperedRootKeyDoesNotOpen(t *testing.T) {
	e, keys := initSealed(t, 3, 2)
	ctx := t.Context()
	good, err := e.backend.Get(ctx, RootKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, pos := range []int{0, 1, 13, len(good) - 1} {
		t.Run(fmt.Sprintf("byte %d flipped", pos), func(t *testing.T) {
			if err := e.backend.Apply(ctx, []storage.Op{{Key: RootKeyPath, Value: flipped(good, pos)}}); err != nil {
				t.Fatal(err)
			}
			e.m.Unseal(ctx, keys[0])
			if _, err := e.m.Unseal(ctx, keys[1]); !errors.Is(err, ErrInvalidKey) {
				t.Errorf("Unseal over a tampered root key = %v, want ErrInvalidKey", err)
			}
		})
	}
	if err := e.backend.Apply(ctx, []storage.Op{{Key: RootKeyPath, Value: good[:20]}}); err != nil {
		t.Fatal(err)
	}
	e.m.Unseal(ctx, keys[0])
	if _, err := e.m.Unseal(ctx, keys[1]); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Unseal over a truncated root key = %v, want ErrInvalidKey", err)
	}
}

func TestMissingConfigIsAnError(t *testing.T) {
	e, _ := initSealed(t, 3, 2)
	ctx := t.Context()
	if err := e.backend.Apply(ctx, []storage.Op{{Key: ConfigPath, Delete: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Status(ctx); err == nil || errors.Is(err, ErrNotInitialized) {
		t.Errorf("Status without config = %v, want an error other than ErrNotInitialized", err)
	}
	if err := e.backend.Apply(ctx, []storage.Op{{Key: ConfigPath, Value: []byte(`{"type":"transit","secret_shares":1,"secret_threshold":1}`)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Status(ctx); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Status with a transit config without recovery keys = %v, want ErrInvalidConfig", err)
	}
	if err := e.backend.Apply(ctx, []storage.Op{{Key: ConfigPath, Value: []byte(`{"type":"transit","secret_shares":1,"secret_threshold":1,"recovery_shares":3,"recovery_threshold":2}`)}}); err != nil {
		t.Fatal(err)
	}
	st, err := e.m.Status(ctx)
	if err != nil || !st.Migration || st.Type != "transit" || !st.RecoverySeal {
		t.Errorf("Status with a stored transit seal on a shamir server = %+v, %v; want Migration, type transit, RecoverySeal", st, err)
	}
	if _, err := e.m.Unseal(ctx, make([]byte, 33)); !errors.Is(err, ErrMigrationRequired) {
		t.Errorf("Unseal with a stored transit seal = %v, want ErrMigrationRequired", err)
	}
}

func TestNewValidates(t *testing.T) {
	b, _ := barrier.New(barrier.Config{Backend: inmem.New()})
	for name, cfg := range map[string]Config{
		"no backend":        {Barrier: b},
		"no barrier":        {Backend: inmem.New()},
		"unknown protector": {Backend: inmem.New(), Barrier: b, Protector: transitish{}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(cfg); err == nil {
				t.Error("New succeeded, want an error")
			}
		})
	}
}

type transitish struct{}

func (transitish) Type() string { return "transit" }

func TestRootKeyEnvelopeRoundTrip(t *testing.T) {
	kek := bytes.Repeat([]byte{7}, 32)
	root := bytes.Repeat([]byte{9}, 32)
	v, err := wrapRootKey(strings.NewReader(strings.Repeat("n", 12)), kek, root)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(v), 1+12+32+16; got != want {
		t.Fatalf("envelope is %d bytes, want %d", got, want)
	}
	got, err := unwrapRootKey(kek, v)
	if err != nil || !bytes.Equal(got, root) {
		t.Fatalf("unwrap = (%x, %v), want the root key", got, err)
	}
	for i := range v {
		if _, err := unwrapRootKey(kek, flipped(v, i)); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("unwrap with byte %d flipped = %v, want ErrInvalidKey", i, err)
		}
	}
	if _, err := unwrapRootKey(flipped(kek, 0), v); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("unwrap with another KEK = %v, want ErrInvalidKey", err)
	}
	if _, err := unwrapRootKey(kek[:16], v); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("unwrap with a 16-byte KEK = %v, want ErrInvalidKey", err)
	}
	if _, err := wrapRootKey(strings.NewReader("short"), kek, root); err == nil {
		t.Error("wrap with a failing rand succeeded")
	}
}

func unsealWith(t *testing.T, m *Manager, keys ...[]byte) {
	t.Helper()
	var st Status
	var err error
	for _, k := range keys {
		if st, err = m.Unseal(t.Context(), k); err != nil {
			t.Fatalf("Unseal: %v", err)
		}
	}
	if st.Sealed {
		t.Fatalf("still sealed after %d shares: %+v", len(keys), st)
	}
}

func TestInitStorageFailures(t *testing.T) {
	ctx := t.Context()
	backend := &failingBackend{Backend: inmem.New()}
	e := open(t, backend)
	backend.failApply.Store(true)
	res, err := e.m.Init(ctx, InitRequest{SecretShares: 3, SecretThreshold: 2})
	if !errors.Is(err, errFailpoint) || res != nil {
		t.Fatalf("Init with failing storage = (%v, %v), want the failpoint error and no keys", res, err)
	}
	backend.failApply.Store(false)
	if st := mustStatus(t, e.m); st.Initialized {
		t.Fatalf("status after failed Init = %+v, want uninitialized", st)
	}

	// The seal entries are written, the barrier's keyring is not: the keys
	// come back with the error.
	backend.failKey.Store("core/keyring")
	res, err = e.m.Init(ctx, InitRequest{SecretShares: 3, SecretThreshold: 2})
	if !errors.Is(err, errFailpoint) || res == nil || len(res.Keys) != 3 {
		t.Fatalf("Init with failing barrier = (%v, %v), want the failpoint error and the keys", res, err)
	}
	backend.failKey.Store("")
	if st := mustStatus(t, e.m); st.Initialized {
		t.Fatalf("status after failed Init = %+v, want uninitialized", st)
	}
	res, err = e.m.Init(ctx, InitRequest{SecretShares: 3, SecretThreshold: 2})
	if err != nil {
		t.Fatalf("retried Init: %v", err)
	}
	e.m.Seal(ctx)
	unsealWith(t, e.m, res.Keys[0], res.Keys[2])
}
