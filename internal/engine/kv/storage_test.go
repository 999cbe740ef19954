package kv

import (
	"testing"

	"github.com/coffer-dev/coffer/internal/barrier/barriertest"
	"github.com/coffer-dev/coffer/internal/logical"
)

// newTestStorage returns what the core gives a mount: a view of an
// unsealed barrier (real encryption, hashed names, encrypted folder entries)
// over the real in-memory physical backend.
func newTestStorage(t testing.TB) logical.Storage {
	t.Helper()
	return logical.NewView(barriertest.New(t), "logical/kv-test/")
}
