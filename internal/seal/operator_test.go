package seal

import (
	"errors"
	"testing"

	"github.com/coffer-dev/coffer/internal/storage/inmem"
)

func TestGenerateRoot(t *testing.T) {
	e, keys := initSealed(t, 5, 3)
	_, otherKeys := initSealed(t, 5, 3) // well-formed shares of another server's KEK
	ctx := t.Context()

	if _, err := e.m.GenerateRootInit(ctx); !errors.Is(err, ErrSealed) {
		t.Errorf("GenerateRootInit while sealed = %v, want ErrSealed", err)
	}
	unsealWith(t, e.m, keys[0], keys[1], keys[2])

	st, err := e.m.GenerateRootStatus(ctx)
	if err != nil || st.Started || st.Required != 3 {
		t.Errorf("status before attempt = (%+v, %v), want not started, required 3", st, err)
	}
	if _, _, err := e.m.GenerateRootUpdate(ctx, "x", keys[0]); !errors.Is(err, ErrNoAttempt) {
		t.Errorf("update with no attempt = %v, want ErrNoAttempt", err)
	}
	st, err = e.m.GenerateRootInit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nonce := st.Nonce
	if !st.Started || len(nonce) != 36 || st.Required != 3 || st.Progress != 0 || !st.StartedAt.Equal(fixedNow) {
		t.Errorf("GenerateRootInit = %+v, want started, uuid nonce, required 3", st)
	}
	if _, err := e.m.GenerateRootInit(ctx); !errors.Is(err, ErrAttemptInProgress) {
		t.Errorf("second GenerateRootInit = %v, want ErrAttemptInProgress", err)
	}
	if _, _, err := e.m.GenerateRootUpdate(ctx, "00000000-0000-4000-8000-000000000000", keys[0]); !errors.Is(err, ErrBadNonce) {
		t.Errorf("update with a wrong nonce = %v, want ErrBadNonce", err)
	}

	// Wrong shares: threshold reached, key does not open, progress resets.
	for i, k := range otherKeys[:3] {
		st, done, err := e.m.GenerateRootUpdate(ctx, nonce, k)
		if i < 2 && (err != nil || done || st.Progress != i+1) {
			t.Fatalf("wrong share %d = (%+v, %v, %v), want progress %d", i, st, done, err, i+1)
		}
		if i == 2 {
			if !errors.Is(err, ErrInvalidKey) || done {
				t.Fatalf("wrong shares at threshold = (%v, %v), want ErrInvalidKey", done, err)
			}
			if st.Progress != 0 || st.Nonce != nonce {
				t.Errorf("after wrong shares status = %+v, want progress 0, same nonce", st)
			}
		}
	}

	// Duplicate and malformed shares do not count.
	if _, _, err := e.m.GenerateRootUpdate(ctx, nonce, keys[4]); err != nil {
		t.Fatal(err)
	}
	if st, _, err := e.m.GenerateRootUpdate(ctx, nonce, keys[4]); !errors.Is(err, ErrDuplicateShare) || st.Progress != 1 {
		t.Errorf("duplicate share = (%+v, %v), want ErrDuplicateShare, progress 1", st, err)
	}
	if st, _, err := e.m.GenerateRootUpdate(ctx, nonce, keys[3][:10]); !errors.Is(err, ErrInvalidShare) || st.Progress != 1 {
		t.Errorf("truncated share = (%+v, %v), want ErrInvalidShare, progress 1", st, err)
	}
	if _, done, err := e.m.GenerateRootUpdate(ctx, nonce, keys[3]); err != nil || done {
		t.Fatalf("second share = (%v, %v)", done, err)
	}
	st, done, err := e.m.GenerateRootUpdate(ctx, nonce, keys[0])
	if err != nil || !done || st.Progress != 3 || st.Required != 3 {
		t.Fatalf("right shares = (%+v, %v, %v), want done with progress 3", st, done, err)
	}
	if st, err := e.m.GenerateRootStatus(ctx); err != nil || st.Started {
		t.Errorf("status after completion = (%+v, %v), want no attempt", st, err)
	}
	if e.barrier.Sealed() {
		t.Error("generate-root sealed the barrier")
	}
}

func TestGenerateRootCancelAndSeal(t *testing.T) {
	e, keys := initSealed(t, 3, 2)
	ctx := t.Context()
	unsealWith(t, e.m, keys[0], keys[1])
	st, _ := e.m.GenerateRootInit(ctx)
	e.m.GenerateRootUpdate(ctx, st.Nonce, keys[0])
	e.m.GenerateRootCancel()
	if _, _, err := e.m.GenerateRootUpdate(ctx, st.Nonce, keys[1]); !errors.Is(err, ErrNoAttempt) {
		t.Errorf("update after cancel = %v, want ErrNoAttempt", err)
	}
	e.m.GenerateRootCancel() // no attempt: nothing happens

	st, _ = e.m.GenerateRootInit(ctx)
	e.m.Seal(ctx)
	unsealWith(t, e.m, keys[2], keys[1])
	if got, _ := e.m.GenerateRootStatus(ctx); got.Started {
		t.Errorf("attempt survived Seal: %+v", got)
	}
	if _, _, err := e.m.GenerateRootUpdate(ctx, st.Nonce, keys[1]); !errors.Is(err, ErrNoAttempt) {
		t.Errorf("update after Seal = %v, want ErrNoAttempt", err)
	}
}

func TestRekey(t *testing.T) {
	e, oldKeys := initSealed(t, 5, 3)
	ctx := t.Context()
	req := RekeyRequest{SecretShares: 3, SecretThreshold: 2}
	if _, err := e.m.RekeyInit(ctx, req); !errors.Is(err, ErrSealed) {
		t.Errorf("RekeyInit while sealed = %v, want ErrSealed", err)
	}
	unsealWith(t, e.m, oldKeys[0], oldKeys[1], oldKeys[2])
	if _, err := e.m.RekeyInit(ctx, RekeyRequest{SecretShares: 3, SecretThreshold: 1}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("RekeyInit 1 of 3 = %v, want ErrInvalidConfig", err)
	}
	st, err := e.m.RekeyInit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Started || st.Required != 3 || st.SecretShares != 3 || st.SecretThreshold != 2 {
		t.Errorf("RekeyInit = %+v, want required 3 (old), new 2 of 3", st)
	}
	if _, err := e.m.RekeyInit(ctx, req); !errors.Is(err, ErrAttemptInProgress) {
		t.Errorf("second RekeyInit = %v, want ErrAttemptInProgress", err)
	}
	if got, err := e.m.RekeyStatus(ctx); err != nil || got != st {
		t.Errorf("RekeyStatus = (%+v, %v), want %+v", got, err, st)
	}
	if _, _, err := e.m.RekeyUpdate(ctx, "wrong", oldKeys[0]); !errors.Is(err, ErrBadNonce) {
		t.Errorf("RekeyUpdate with a wrong nonce = %v, want ErrBadNonce", err)
	}
	// A generate-root attempt running now is cancelled by the rekey.
	gr, _ := e.m.GenerateRootInit(ctx)

	// A corrupted share: reaches the threshold, ErrInvalidKey, progress reset.
	e.m.RekeyUpdate(ctx, st.Nonce, oldKeys[3])
	e.m.RekeyUpdate(ctx, st.Nonce, flipped(oldKeys[4], 3))
	got, res, err := e.m.RekeyUpdate(ctx, st.Nonce, oldKeys[0])
	if !errors.Is(err, ErrInvalidKey) || res != nil || got.Progress != 0 {
		t.Fatalf("corrupted rekey = (%+v, %v, %v), want ErrInvalidKey, progress 0", got, res, err)
	}

	var newKeys [][]byte
	for i, k := range [][]byte{oldKeys[4], oldKeys[2], oldKeys[0]} {
		got, res, err := e.m.RekeyUpdate(ctx, st.Nonce, k)
		if err != nil {
			t.Fatalf("RekeyUpdate #%d: %v", i+1, err)
		}
		if i < 2 {
			if res != nil || got.Progress != i+1 {
				t.Fatalf("RekeyUpdate #%d = (%+v, %v), want progress %d, no result", i+1, got, res, i+1)
			}
			continue
		}
		if res == nil || len(res.Keys) != 3 || got.Progress != 3 {
			t.Fatalf("final RekeyUpdate = (%+v, %+v), want 3 new keys", got, res)
		}
		newKeys = res.Keys
	}
	if s, _ := e.m.RekeyStatus(ctx); s.Started || s.Required != 2 {
		t.Errorf("RekeyStatus after completion = %+v, want none, required 2", s)
	}
	if _, _, err := e.m.GenerateRootUpdate(ctx, gr.Nonce, oldKeys[0]); !errors.Is(err, ErrNoAttempt) {
		t.Errorf("generate-root after rekey = %v, want ErrNoAttempt (cancelled)", err)
	}
	if st := mustStatus(t, e.m); st.T != 2 || st.N != 3 || st.Sealed {
		t.Errorf("status after rekey = %+v, want unsealed 2 of 3", st)
	}

	// Old shares stop working; new ones work, also after a restart.
	e.m.Seal(ctx)
	e.m.Unseal(ctx, oldKeys[0])
	if _, err := e.m.Unseal(ctx, oldKeys[1]); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Unseal with old shares = %v, want ErrInvalidKey", err)
	}
	unsealWith(t, e.m, newKeys[2], newKeys[0])
	r := open(t, e.backend)
	unsealWith(t, r.m, newKeys[1], newKeys[2])
}

func TestRekeyToOneOfOne(t *testing.T) {
	e, keys := initSealed(t, 3, 2)
	ctx := t.Context()
	unsealWith(t, e.m, keys[0], keys[1])
	st, err := e.m.RekeyInit(ctx, RekeyRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	e.m.RekeyUpdate(ctx, st.Nonce, keys[2])
	_, res, err := e.m.RekeyUpdate(ctx, st.Nonce, keys[0])
	if err != nil || res == nil || len(res.Keys) != 1 || len(res.Keys[0]) != 32 {
		t.Fatalf("rekey to 1 of 1 = (%+v, %v), want one 32-byte key", res, err)
	}
	e.m.Seal(ctx)
	unsealWith(t, e.m, res.Keys[0])
}

func TestRekeyStorageFailureKeepsOldKeys(t *testing.T) {
	backend := &failingBackend{Backend: inmem.New()}
	e := open(t, backend)
	ctx := t.Context()
	ir, err := e.m.Init(ctx, InitRequest{SecretShares: 3, SecretThreshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	keys := ir.Keys
	st, err := e.m.RekeyInit(ctx, RekeyRequest{SecretShares: 5, SecretThreshold: 3})
	if err != nil {
		t.Fatal(err)
	}
	e.m.RekeyUpdate(ctx, st.Nonce, keys[0])
	backend.failApply.Store(true)
	got, res, err := e.m.RekeyUpdate(ctx, st.Nonce, keys[1])
	if !errors.Is(err, errFailpoint) || res != nil || got.Progress != 0 {
		t.Fatalf("rekey with failing storage = (%+v, %v, %v), want the failpoint error, progress 0", got, res, err)
	}
	backend.failApply.Store(false)
	if s, _ := e.m.RekeyStatus(ctx); !s.Started || s.Nonce != st.Nonce || s.Progress != 0 {
		t.Errorf("rekey attempt after the failure = %+v, want kept with progress 0", s)
	}
	if s := mustStatus(t, e.m); s.T != 2 || s.N != 3 {
		t.Errorf("config after failed rekey = %+v, want the old 2 of 3", s)
	}
	e.m.Seal(ctx)
	unsealWith(t, e.m, keys[2], keys[1])
	if s, _ := e.m.RekeyStatus(ctx); s.Started {
		t.Errorf("rekey attempt survived Seal: %+v", s)
	}
}

func TestRekeyCancel(t *testing.T) {
	e, keys := initSealed(t, 3, 2)
	ctx := t.Context()
	unsealWith(t, e.m, keys[0], keys[1])
	st, _ := e.m.RekeyInit(ctx, RekeyRequest{SecretShares: 2, SecretThreshold: 2})
	e.m.RekeyUpdate(ctx, st.Nonce, keys[0])
	e.m.RekeyCancel()
	if _, _, err := e.m.RekeyUpdate(ctx, st.Nonce, keys[1]); !errors.Is(err, ErrNoAttempt) {
		t.Errorf("update after cancel = %v, want ErrNoAttempt", err)
	}
	if s := mustStatus(t, e.m); s.N != 3 {
		t.Errorf("cancelled rekey changed the config: %+v", s)
	}
}

func TestAttemptsBeforeInit(t *testing.T) {
	e := open(t, inmem.New())
	ctx := t.Context()
	if _, err := e.m.GenerateRootInit(ctx); !errors.Is(err, ErrNotInitialized) {
		t.Errorf("GenerateRootInit = %v, want ErrNotInitialized", err)
	}
	if _, err := e.m.GenerateRootStatus(ctx); !errors.Is(err, ErrNotInitialized) {
		t.Errorf("GenerateRootStatus = %v, want ErrNotInitialized", err)
	}
	if _, err := e.m.RekeyInit(ctx, RekeyRequest{SecretShares: 1, SecretThreshold: 1}); !errors.Is(err, ErrNotInitialized) {
		t.Errorf("RekeyInit = %v, want ErrNotInitialized", err)
	}
	if _, err := e.m.RekeyStatus(ctx); !errors.Is(err, ErrNotInitialized) {
		t.Errorf("RekeyStatus = %v, want ErrNotInitialized", err)
	}
}
