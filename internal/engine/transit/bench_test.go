package transit

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

var fixedTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// BenchmarkEncrypt measures one encrypt request of 1 KiB through
// HandleRequest (JSON decode, cached key, AES-GCM, base64), serially and
// from parallel goroutines.
func BenchmarkEncrypt(b *testing.B) {
	e := newEnv(b)
	e.write("keys/k", nil)
	body, _ := json.Marshal(map[string]any{"plaintext": b64(string(make([]byte, 1024)))})
	ctx := context.Background()
	run := func(b *testing.B) {
		req := &logical.Request{Operation: logical.UpdateOperation, Path: "encrypt/k", Body: body}
		if _, err := e.b.HandleRequest(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("serial", func(b *testing.B) {
		b.SetBytes(1024)
		for b.Loop() {
			run(b)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetBytes(1024)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				run(b)
			}
		})
	})
}
