package compat

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/coffer-dev/coffer/internal/barrier"
	"github.com/coffer-dev/coffer/internal/seal"
	"github.com/coffer-dev/coffer/internal/seal/transitseal"
	"github.com/coffer-dev/coffer/internal/storage/inmem"
)

// TestTransitSealAgainstRealServer runs the transit auto-unseal protector
// and a seal.Manager against the transit engine of a real coffer process
// (server A): init with recovery keys, auto-unseal after a restart of the
// Manager, and a clear "unavailable" reason once A is gone.
func TestTransitSealAgainstRealServer(t *testing.T) {
	a, c := startDev(t)
	mountTransit(t, c)
	write(t, c, "transit/keys/autounseal", map[string]any{})
	cx := ctx(t)

	ts, err := transitseal.New(transitseal.Config{Address: a.addr, Token: "root", KeyName: "autounseal"})
	if err != nil {
		t.Fatal(err)
	}
	kek := bytes.Repeat([]byte{7}, 32)
	blob, err := ts.Wrap(cx, kek)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	if !strings.HasPrefix(string(blob), "vault:v1:") {
		t.Errorf("blob = %.20q, want a transit ciphertext", blob)
	}
	if got, err := ts.Unwrap(cx, blob); err != nil || !bytes.Equal(got, kek) {
		t.Fatalf("Unwrap = %v, want the KEK back", err)
	}
	tampered := []byte(strings.Replace(string(blob), "vault:v1:", "vault:v1:A", 1))
	if _, err := ts.Unwrap(cx, tampered); !errors.Is(err, seal.ErrInvalidKey) {
		t.Errorf("Unwrap of a tampered blob = %v, want ErrInvalidKey", err)
	}
	other, _ := transitseal.New(transitseal.Config{Address: a.addr, Token: "root", KeyName: "nokey"})
	if _, err := other.Unwrap(cx, blob); err == nil {
		t.Error("Unwrap with a missing key succeeded")
	}
	denied, _ := transitseal.New(transitseal.Config{Address: a.addr, Token: "not-a-token", KeyName: "autounseal"})
	if _, err := denied.Unwrap(cx, blob); !errors.Is(err, seal.ErrKeyUnavailable) {
		t.Errorf("Unwrap with a bad token = %v, want ErrKeyUnavailable", err)
	}

	// A Manager sealed by A's key: init, restart, unseal with no key typed.
	backend := inmem.New()
	newManager := func() (*seal.Manager, *barrier.Barrier) {
		b, err := barrier.New(barrier.Config{Backend: backend})
		if err != nil {
			t.Fatal(err)
		}
		m, err := seal.New(seal.Config{Backend: backend, Barrier: b, Protector: ts})
		if err != nil {
			t.Fatal(err)
		}
		return m, b
	}
	m, b := newManager()
	res, err := m.Init(cx, seal.InitRequest{RecoveryShares: 5, RecoveryThreshold: 3})
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	if len(res.RecoveryKeys) != 5 || len(res.Keys) != 0 {
		t.Fatalf("Init gave %d recovery and %d unseal keys, want 5 and 0", len(res.RecoveryKeys), len(res.Keys))
	}
	if err := b.Put(cx, "kv/canary", []byte("canary value")); err != nil {
		t.Fatal(err)
	}
	_ = m.Seal(cx)

	m, b = newManager()
	if err := m.AutoUnseal(cx); err != nil {
		t.Fatalf("AutoUnseal through A: %v", err)
	}
	if got, err := b.Get(cx, "kv/canary"); err != nil || string(got) != "canary value" {
		t.Fatalf("after AutoUnseal, canary = %q, %v", got, err)
	}
	_ = m.Seal(cx)

	a.stop()
	m, b = newManager()
	err = m.AutoUnseal(cx)
	if !errors.Is(err, seal.ErrKeyUnavailable) {
		t.Fatalf("AutoUnseal with A stopped = %v, want ErrKeyUnavailable", err)
	}
	st, err := m.Status(cx)
	if err != nil || !st.Sealed || !strings.Contains(st.Reason, strings.TrimPrefix(a.addr, "http://")) {
		t.Errorf("status with A stopped = %+v, %v; want sealed, reason naming A", st, err)
	}
	if !b.Sealed() {
		t.Error("barrier unsealed with A stopped")
	}
}
