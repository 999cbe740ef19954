package core

import (
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// metrics are the core's counters, written in Prometheus' text format by
// WriteMetrics. No label carries a path or any other request content: only
// the operation and the error class.
type metrics struct {
	mu       sync.Mutex // guards following
	requests map[[2]string]*atomic.Int64
	// latency histogram over all requests, in seconds
	buckets []float64
	counts  []atomic.Int64
	sum     atomic.Int64 // nanoseconds
	total   atomic.Int64
}

var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

func newMetrics() *metrics {
	return &metrics{
		requests: make(map[[2]string]*atomic.Int64),
		buckets:  latencyBuckets,
		counts:   make([]atomic.Int64, len(latencyBuckets)),
	}
}

var codeNames = map[logical.Code]string{
	logical.Internal:           "internal",
	logical.Invalid:            "invalid",
	logical.PermissionDenied:   "permission_denied",
	logical.NotFound:           "not_found",
	logical.Unsupported:        "unsupported",
	logical.Conflict:           "conflict",
	logical.TooLarge:           "too_large",
	logical.RateLimited:        "rate_limited",
	logical.Sealed:             "sealed",
	logical.Unavailable:        "unavailable",
	logical.PreconditionFailed: "precondition_failed",
}

func (m *metrics) observe(op logical.Operation, err error, d time.Duration) {
	result := "ok"
	if err != nil {
		result = codeNames[logical.CodeOf(err)]
	}
	key := [2]string{string(op), result}
	m.mu.Lock()
	c, ok := m.requests[key]
	if !ok {
		c = new(atomic.Int64)
		m.requests[key] = c
	}
	m.mu.Unlock()
	c.Add(1)
	s := d.Seconds()
	for i, b := range m.buckets {
		if s <= b {
			m.counts[i].Add(1)
		}
	}
	m.sum.Add(int64(d))
	m.total.Add(1)
}

// WriteMetrics writes the server's metrics in Prometheus' text format.
func (c *Core) WriteMetrics(w io.Writer) error {
	m := c.metrics
	var b []byte
	add := func(format string, args ...any) { b = fmt.Appendf(b, format, args...) }

	add("# HELP coffer_requests_total Requests handled by the core, by operation and result.\n")
	add("# TYPE coffer_requests_total counter\n")
	m.mu.Lock()
	keys := make([][2]string, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	m.mu.Unlock()
	sort.Slice(keys, func(i, j int) bool {
		if keys[i][0] != keys[j][0] {
			return keys[i][0] < keys[j][0]
		}
		return keys[i][1] < keys[j][1]
	})
	for _, k := range keys {
		m.mu.Lock()
		v := m.requests[k].Load()
		m.mu.Unlock()
		add("coffer_requests_total{operation=%q,result=%q} %d\n", k[0], k[1], v)
	}
	add("# HELP coffer_request_duration_seconds Time the core spent on a request.\n")
	add("# TYPE coffer_request_duration_seconds histogram\n")
	for i, bound := range m.buckets {
		add("coffer_request_duration_seconds_bucket{le=\"%g\"} %d\n", bound, m.counts[i].Load())
	}
	add("coffer_request_duration_seconds_bucket{le=\"+Inf\"} %d\n", m.total.Load())
	add("coffer_request_duration_seconds_sum %g\n", time.Duration(m.sum.Load()).Seconds())
	add("coffer_request_duration_seconds_count %d\n", m.total.Load())

	sealed := 0
	if c.Sealed() {
		sealed = 1
	}
	add("# HELP coffer_sealed Whether the server is sealed.\n# TYPE coffer_sealed gauge\ncoffer_sealed %d\n", sealed)
	if ks, err := c.barrier.KeyStatus(); err == nil {
		add("# HELP coffer_barrier_key_term The barrier's current key term.\n# TYPE coffer_barrier_key_term gauge\ncoffer_barrier_key_term %d\n", ks.Term)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	add("# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines %d\n", runtime.NumGoroutine())
	add("# HELP go_memstats_heap_inuse_bytes Heap bytes in use.\n# TYPE go_memstats_heap_inuse_bytes gauge\ngo_memstats_heap_inuse_bytes %d\n", ms.HeapInuse)
	_, err := w.Write(b)
	return err
}
