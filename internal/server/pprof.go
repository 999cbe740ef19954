package server

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// startPprof serves Go's profiler on COFFER_PPROF_ADDR (e.g.
// 127.0.0.1:6060) when it is set: a debugging aid for measuring before
// optimising (docs/performance.md). It is off by default and must only
// ever listen on loopback.
func startPprof(logger *slog.Logger) {
	addr := os.Getenv("COFFER_PPROF_ADDR")
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		logger.Warn("COFFER_PPROF_ADDR ignored: it must be a loopback address with a port", "addr", addr)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go func() {
		if err := http.ListenAndServe(addr, mux); err != nil {
			logger.Warn("pprof listener stopped", "err", err)
		}
	}()
	logger.Info("profiler listening", "addr", addr)
}
