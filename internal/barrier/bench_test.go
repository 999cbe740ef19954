package barrier

import (
	"context"
	"fmt"
	"testing"
)

func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	br, _, _ := newBarrier(b, Config{})
	value := make([]byte, 256)
	for i := range 100 {
		mustPut(b, br, fmt.Sprintf("kv/data/app%d/db", i), string(value))
	}
	b.SetBytes(int64(len(value)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := br.Get(ctx, fmt.Sprintf("kv/data/app%d/db", i%100)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPut measures overwrites of keys four folders deep, with and
// without the cache of folder entries known to exist.
func BenchmarkPut(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int
	}{{"dircache", 0}, {"nodircache", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			br, _, _ := newBarrier(b, Config{DirCacheSize: bc.size})
			value := make([]byte, 256)
			b.SetBytes(int64(len(value)))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := br.Put(ctx, fmt.Sprintf("kv/data/team/app%d/db", i%100), value); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkList(b *testing.B) {
	ctx := context.Background()
	br, _, _ := newBarrier(b, Config{})
	for i := range 100 {
		mustPut(b, br, fmt.Sprintf("kv/metadata/app%d", i), "v")
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.List(ctx, "kv/metadata/"); err != nil {
			b.Fatal(err)
		}
	}
}
