package audit

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// kvRead returns what the core hands audit for a KV v2 read of a 1 KiB
// value, as coffer-bench does it: a GET without body, and the engine's
// response (the stored JSON as a json.RawMessage, the version metadata as
// a map).
func kvRead() (*Input, *logical.Response) {
	in := request("3f0c1a2e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", logical.ReadOperation, "secret/data/bench/k123", "")
	in.MountPoint, in.MountType = "secret/", "kv"
	raw, _ := json.Marshal(map[string]string{"value": strings.Repeat("v", 1024)})
	resp := &logical.Response{MountType: "kv", Data: map[string]any{
		"data": json.RawMessage(raw),
		"metadata": map[string]any{
			"version":         uint64(3),
			"created_time":    "2025-01-02T03:04:05.123456789Z",
			"deletion_time":   "",
			"destroyed":       false,
			"custom_metadata": nil,
		},
	}}
	return in, resp
}

// kvWrite returns a KV v2 write of a 1 KiB value and its answer.
func kvWrite() (*Input, *logical.Response) {
	body, _ := json.Marshal(map[string]any{"data": map[string]string{"value": strings.Repeat("v", 1024)}})
	in := request("3f0c1a2e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", logical.UpdateOperation, "secret/data/bench/k123", string(body))
	in.MountPoint, in.MountType = "secret/", "kv"
	resp := &logical.Response{MountType: "kv", Data: map[string]any{
		"version": uint64(4), "created_time": "2025-01-02T03:04:05.123456789Z", "deletion_time": "",
		"destroyed": false, "custom_metadata": nil,
	}}
	return in, resp
}

// BenchmarkRender measures what one audited request costs the request
// path before the device's goroutine takes over: preparing the request
// and the response entry and rendering both for one device.
func BenchmarkRender(b *testing.B) {
	mac := newMACKey([]byte("4d1c8f0e-2b7a-4c3d-9e5f-6a7b8c9d0e1f"))
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for name, mk := range map[string]func() (*Input, *logical.Response){"KVRead": kvRead, "KVWrite": kvWrite} {
		b.Run(name, func(b *testing.B) {
			base, resp := mk()
			b.ReportAllocs()
			for b.Loop() {
				in := new(Input)
				*in = *base // a fresh request: nothing parsed yet
				req := prepareRequest(in, now)
				if _, err := req.render(mac, true); err != nil {
					b.Fatal(err)
				}
				res, err := prepareResponse(in, resp, nil, now)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := res.render(mac, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLogKVRead measures LogRequest and LogResponse of a KV v2 read
// through a Broker with one file device, from 16 goroutines as the
// server's clients would.
func BenchmarkLogKVRead(b *testing.B) {
	dir := b.TempDir()
	br := newBroker(b, Config{AllowedDirs: []string{dir}})
	enableFile(b, br, "file", filepath.Join(dir, "audit.log"))
	ctx := context.Background()
	b.SetParallelism(8) // 16 goroutines on 2 cores
	b.ReportAllocs()
	writes := writeSyscalls()
	defer func() {
		if w := writeSyscalls(); w >= 0 && writes >= 0 {
			b.ReportMetric(float64(w-writes)/float64(2*b.N), "writes/entry")
		}
	}()
	b.RunParallel(func(pb *testing.PB) {
		in, resp := kvRead()
		for pb.Next() {
			if err := br.LogRequest(ctx, in); err != nil {
				b.Error(err)
				return
			}
			if err := br.LogResponse(ctx, in, resp, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// writeSyscalls returns the process's write system calls so far (Linux's
// /proc/self/io), or -1.
func writeSyscalls() int64 {
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, "syscw: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}
