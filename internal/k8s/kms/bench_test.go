package kms

import (
	"slices"
	"testing"
	"time"

	kmsapi "k8s.io/kms/apis/v2"
)

// BenchmarkDecrypt measures Decrypt through the unix socket against a real
// coffer dev server (transit decrypt over HTTP, no cache hit: the cache
// answers only during outages) and reports p50 and p99 latency. Target
// (issue 8): p99 under 5 ms.
func BenchmarkDecrypt(b *testing.B) {
	s := startDev(b)
	c, _ := serve(b, Config{Client: s.client(b), Token: s.token(b, kmsPolicy, nil)})
	ctx := tctx(b)
	enc, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: seed(b)})
	if err != nil {
		b.Fatal(err)
	}
	req := &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Annotations: enc.Annotations}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if _, err := c.Decrypt(ctx, req); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
