package core_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/coffer-dev/coffer/internal/core"
	"github.com/coffer-dev/coffer/internal/engine/cubbyhole"
	"github.com/coffer-dev/coffer/internal/engine/kv"
	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/storage"
	"github.com/coffer-dev/coffer/internal/storage/bolt"
	"github.com/coffer-dev/coffer/internal/storage/inmem"
)

// newCore returns an initialized, unsealed core with KV v2 at secret/ and
// its root token.
func newCore(tb testing.TB, backend storage.Backend) (*core.Core, string) {
	tb.Helper()
	ctx := context.Background()
	c, err := core.New(core.Config{
		Backend: backend,
		Engines: map[string]logical.Factory{"kv": kv.Factory, "cubbyhole": cubbyhole.Factory},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	res, err := c.Init(ctx, core.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := c.Unseal(ctx, res.Keys[0]); err != nil {
		tb.Fatal(err)
	}
	do(tb, c, res.RootToken, logical.UpdateOperation, "sys/mounts/secret", `{"type":"kv","options":{"version":"2"}}`)
	return c, res.RootToken
}

func do(tb testing.TB, c *core.Core, tok string, op logical.Operation, path, body string) *logical.Response {
	tb.Helper()
	resp, err := c.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Body: []byte(body), ClientToken: tok})
	if err != nil {
		tb.Fatalf("%s %s: %v", op, path, err)
	}
	return resp
}

func benchBackends(b *testing.B) map[string]func(b *testing.B) storage.Backend {
	return map[string]func(b *testing.B) storage.Backend{
		"inmem": func(b *testing.B) storage.Backend { return inmem.New() },
		"bolt": func(b *testing.B) storage.Backend {
			be, err := bolt.Open(bolt.Config{Path: filepath.Join(b.TempDir(), "coffer.db")})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { be.Close() })
			return be
		},
	}
}

// BenchmarkKVv2Read measures the whole pipeline for a KV v2 read of a
// 1 KiB value: token lookup, policy, engine, barrier, storage.
func BenchmarkKVv2Read(b *testing.B) {
	for name, open := range benchBackends(b) {
		b.Run(name, func(b *testing.B) {
			c, root := newCore(b, open(b))
			body := fmt.Sprintf(`{"data":{"value":%q}}`, strings.Repeat("v", 1024))
			for i := 0; i < 100; i++ {
				do(b, c, root, logical.UpdateOperation, fmt.Sprintf("secret/data/k%d", i), body)
			}
			var n atomic.Int64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					do(b, c, root, logical.ReadOperation, fmt.Sprintf("secret/data/k%d", i%100), "")
				}
			})
		})
	}
}

// BenchmarkKVv2Write measures KV v2 writes of 1 KiB values; on bolt every
// write is durable (fsync), shared by concurrent writers.
func BenchmarkKVv2Write(b *testing.B) {
	for name, open := range benchBackends(b) {
		b.Run(name, func(b *testing.B) {
			c, root := newCore(b, open(b))
			body := fmt.Sprintf(`{"data":{"value":%q}}`, strings.Repeat("v", 1024))
			var n atomic.Int64
			b.SetParallelism(8) // 16 writers on 2 cores, as make bench
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					do(b, c, root, logical.UpdateOperation, fmt.Sprintf("secret/data/w%d", i%500), body)
				}
			})
		})
	}
}
