package raft

import (
	"context"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter feeds hashicorp/raft's hclog output into the caller's slog
// logger. raft logs indexes, terms and addresses, never log entry data.
type hclogAdapter struct {
	l    *slog.Logger
	name string
	args []any
}

func newHCLog(l *slog.Logger) hclog.Logger { return &hclogAdapter{l: l, name: "raft"} }

func (h *hclogAdapter) level(lv hclog.Level) slog.Level {
	switch lv {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (h *hclogAdapter) Log(lv hclog.Level, msg string, args ...any) {
	h.l.Log(context.Background(), h.level(lv), h.name+": "+msg, append(h.args[:len(h.args):len(h.args)], args...)...)
}
func (h *hclogAdapter) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogAdapter) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogAdapter) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }
func (h *hclogAdapter) enabled(lv hclog.Level) bool {
	return h.l.Enabled(context.Background(), h.level(lv))
}
func (h *hclogAdapter) IsTrace() bool         { return false }
func (h *hclogAdapter) IsDebug() bool         { return h.enabled(hclog.Debug) }
func (h *hclogAdapter) IsInfo() bool          { return h.enabled(hclog.Info) }
func (h *hclogAdapter) IsWarn() bool          { return h.enabled(hclog.Warn) }
func (h *hclogAdapter) IsError() bool         { return h.enabled(hclog.Error) }
func (h *hclogAdapter) ImpliedArgs() []any    { return h.args }
func (h *hclogAdapter) Name() string          { return h.name }
func (h *hclogAdapter) SetLevel(hclog.Level)  {}
func (h *hclogAdapter) GetLevel() hclog.Level { return hclog.Info }
func (h *hclogAdapter) With(args ...any) hclog.Logger {
	return &hclogAdapter{l: h.l, name: h.name, args: append(h.args[:len(h.args):len(h.args)], args...)}
}
func (h *hclogAdapter) Named(name string) hclog.Logger {
	return &hclogAdapter{l: h.l, name: h.name + "." + name, args: h.args}
}
func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	return &hclogAdapter{l: h.l, name: name, args: h.args}
}
func (h *hclogAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return slog.NewLogLogger(h.l.Handler(), slog.LevelInfo)
}
func (h *hclogAdapter) StandardWriter(o *hclog.StandardLoggerOptions) io.Writer {
	return h.StandardLogger(o).Writer()
}
