package seal

import (
	"errors"
	"testing"
)

// FuzzUnseal feeds arbitrary keys to a sealed 3-of-5 server: it must never
// panic, never unseal, and answer only with the documented errors.
func FuzzUnseal(f *testing.F) {
	f.Add([]byte{}, []byte{1}, []byte{2})
	f.Add(make([]byte, 33), make([]byte, 33), make([]byte, 33))
	f.Add(append(make([]byte, 32), 1), append(make([]byte, 32), 2), append(make([]byte, 32), 3))
	e, _ := initSealed(f, 5, 3)
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		defer e.m.ResetUnseal()
		for _, k := range [][]byte{a, b, c} {
			_, err := e.m.Unseal(t.Context(), k)
			if err != nil && !errors.Is(err, ErrInvalidShare) && !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("Unseal = %v, want nil, ErrInvalidShare or ErrInvalidKey", err)
			}
		}
		if !e.barrier.Sealed() {
			t.Fatal("arbitrary keys unsealed the barrier")
		}
	})
}
