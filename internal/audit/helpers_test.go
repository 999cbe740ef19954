package audit

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/barrier/barriertest"
	"github.com/coffer-dev/coffer/internal/logical"
)

// newStorage returns what the core gives audit: a view of an unsealed
// barrier over the real in-memory backend.
func newStorage(t testing.TB) logical.Storage {
	t.Helper()
	return logical.NewView(barriertest.New(t), "core/audit/")
}

func newBroker(t testing.TB, cfg Config) *Broker {
	t.Helper()
	if cfg.Storage == nil {
		cfg.Storage = newStorage(t)
	}
	b, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		b.Close(ctx)
	})
	return b
}

func enableFile(t testing.TB, b *Broker, name, path string, extra ...string) {
	t.Helper()
	opts := map[string]string{"file_path": path}
	for i := 0; i+1 < len(extra); i += 2 {
		opts[extra[i]] = extra[i+1]
	}
	if err := b.Enable(context.Background(), name, DeviceConfig{Type: "file", Options: opts}, false); err != nil {
		t.Fatalf("Enable(%s): %v", name, err)
	}
}

func readLines(t testing.TB, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
}

func mustVerify(t testing.TB, raw []byte) Report {
	t.Helper()
	rep, err := Verify(bytes.NewReader(raw), nil)
	if err != nil {
		t.Fatalf("Verify of an untouched log: %v", err)
	}
	return rep
}

func closeBroker(t testing.TB, b *Broker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// request returns an Input for op on path by a service-account caller.
func request(id string, op logical.Operation, path, body string) *Input {
	return &Input{
		RequestID: id, Operation: op, Path: path, RemoteAddr: "10.0.0.7:41234",
		Caller: &logical.Caller{
			Accessor: "acc-" + id, DisplayName: "kubernetes-payments-api", Policies: []string{"default", "payments"},
			Metadata: map[string]string{"service_account_name": "api", "service_account_namespace": "payments"},
		},
		ClientToken: "hvs.token-" + id,
		Body:        []byte(body),
	}
}

// hmacValue is the HMAC a device with salt writes for s.
func hmacValue(salt []byte, s string) string { return newMACKey(salt).value(s) }
