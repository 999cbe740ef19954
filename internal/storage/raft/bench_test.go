package raft

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/coffer-dev/coffer/internal/storage"
)

// BenchmarkApplyParallel measures durable writes (committed on a quorum of a
// 3-node in-process cluster, every log fsynced) from concurrent writers.
// It reports writes/s and log entries per write (below 1: group commit).
func BenchmarkApplyParallel(b *testing.B) {
	c := newCluster(b, 3)
	leader := c.leader().b
	val := make([]byte, 256)
	var n atomic.Int64
	startIdx := leader.AppliedIndex()
	b.SetParallelism(16) // 16 × GOMAXPROCS writers
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := fmt.Sprintf("bench/%d", n.Add(1))
			if err := leader.Apply(context.Background(), []storage.Op{{Key: k, Value: val}}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	b.ReportMetric(float64(leader.AppliedIndex()-startIdx)/float64(b.N), "entries/write")
}
