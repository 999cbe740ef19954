// Package audit records every request and response of the server in one or
// more audit devices, as Vault does, and adds what Vault lacks: a log that
// shows tampering, and devices that can never stall the server.
//
// # Devices and entries
//
// A Broker owns the enabled devices. Types are "file" (option file_path: a
// path, "stdout" or "discard"; mode, default 0600) and "socket" (address,
// socket_type tcp or unix, write_timeout, default 2s). Every device takes
// the common options timeout (how long a request waits for this device to
// confirm its write, default 2s), hmac_accessor (default true) and
// queue_size (Coffer-only: the entries a slow device may hold back, default
// 1024).
//
// Each request and each response becomes one JSON line in Vault's audit
// entry shape ("type", "time", "auth", "request", "response", "error").
// Every string value of request and response data, every token and (unless
// hmac_accessor=false) every accessor is replaced by
// "hmac-sha256:<hex>", the HMAC-SHA256 keyed with the device's own salt,
// exactly as Vault renders it; Broker.Hash (sys/audit-hash) computes the
// same value for a known input. Paths, operations, display names, policies
// and auth metadata stay readable, so "who read secret X" can be answered.
//
// # Tamper evidence
//
// Coffer adds two top-level fields to every line: "seq", a counter that
// never restarts for a device, and "prev_hash", "sha256:<hex>" of the bytes
// of the previous line (without its newline; 64 zeros for the very first
// line). The chain continues across restarts (a file's last line is read
// back when it is opened) and across rotation (Reopen, on SIGHUP). A
// "checkpoint" line, signed with the device's Ed25519 key, is written every
// 1,000 entries, on Reopen, on Disable and on Close, and as the first line
// of every new file or socket connection, where it carries the device's
// public key. Verify checks a log offline; a rewritten log cannot be
// re-chained without the private key, which never leaves the barrier.
//
// # Never hang, fail closed
//
// Each device has its own goroutine and a bounded queue. LogRequest and
// LogResponse format the entry for every device, enqueue it without
// blocking and return as soon as one device confirms its write. A device
// that does not confirm within its timeout keeps the entry and catches up
// later; a device whose queue is full is marked failed (in the log, in
// List and in Metrics) and the entries it could not take are counted and
// recorded as a "dropped" line once it writes again. If no device records
// an entry, Log* returns an error wrapping ErrNotAudited and the caller
// must answer with a 500 and no data. With no device enabled Log* does
// nothing. A device's goroutine writes the entries queued at the time in
// one write (an entry is confirmed once that write returns), so
// concurrent requests share a write system call.
//
// # Safe paths
//
// A file device enabled through the API (not declared in the server
// config) may only write under Config.AllowedDirs, after symlinks and ".."
// are resolved, and never through a symlink; Config.AllowAnyPath (--dev)
// lifts the rule.
//
// The package knows nothing of HTTP: HandleRequest serves sys/audit,
// sys/audit/<name> and sys/audit-hash/<name> as logical requests.
package audit
