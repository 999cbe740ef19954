package audit

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestGoldenLog freezes the wire format: entry shape, HMACs, the chain
// and the checkpoint signatures, from a fixed clock and fixed randomness.
// Run with -update after an intended format change, and say so in the
// commit: logs already written must still verify.
func TestGoldenLog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "a.log")
	fixed := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	b := newBroker(t, Config{
		AllowedDirs: []string{dir},
		Now:         func() time.Time { return fixed },
		Rand:        bytes.NewReader(bytes.Repeat([]byte{7}, 64)),
	})
	enableFile(t, b, "file", path)
	in := request("req-1", logical.UpdateOperation, "secret/data/app", `{"data":{"password":"hunter2","port":5432}}`)
	in.MountType, in.MountPoint = "kv", "secret/"
	if err := b.LogRequest(ctx, in); err != nil {
		t.Fatal(err)
	}
	if err := b.LogResponse(ctx, in, &logical.Response{MountType: "kv", Data: map[string]any{"version": 1}}, nil); err != nil {
		t.Fatal(err)
	}
	denied := request("req-2", logical.ReadOperation, "secret/data/other", "")
	denied.Err = logical.ErrPermissionDenied
	if err := b.LogResponse(ctx, denied, nil, nil); err != nil {
		t.Fatal(err)
	}
	closeBroker(t, b)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", t.Name()+".golden")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs; run with -update if the change is intended:\n%s", golden, got)
	}
	if _, err := Verify(bytes.NewReader(want), nil); err != nil {
		t.Errorf("the golden log does not verify: %v", err)
	}
}
