// Package bolt is Coffer's default storage.Backend: one go.etcd.io/bbolt file
// on local disk, fsynced on every commit.
//
// # Writes: group commit
//
// A bolt commit costs two fsyncs, whatever its size. So one committer
// goroutine owns all writes: Apply queues its ops and waits; the committer
// takes the first waiting request, then every other request already queued
// (up to 512 requests or 4 MiB), applies them all in one bolt transaction with
// one round of fsyncs, and answers each caller. There is no timer: while one
// commit is syncing, the next batch accumulates by itself, so a lone writer
// pays one commit and 100 concurrent writers share a few.
//
// If a combined transaction fails, each of its requests is retried in a
// transaction of its own, so one bad request cannot fail the others.
//
// # Reads
//
// Get and Scan use bolt read transactions directly and never wait for the
// committer. Scan copies entries out in chunks and calls its callback with no
// transaction open, so the callback may call Get and Apply on the same
// backend without the deadlock a held bolt read transaction would cause.
// Each chunk (up to 256 entries or 1 MiB) is read at one point in time; a
// longer scan may see writes made while it runs.
//
// # Integrity
//
// bbolt checksums its two meta pages and falls back to the older one if the
// newer is damaged; if both are damaged, Open fails with ErrCorrupt. Damage to
// a page's structure is reported as ErrCorrupt by the read or write that
// meets it (bolt's panics and faults on the mapped file are caught). bbolt
// does not checksum values: a flipped bit inside a value is returned as is.
// Values reaching this layer are sealed by the barrier (AES-GCM), which
// detects that.
//
// # Snapshots
//
// Backend implements storage.Snapshotter: Snapshot streams a consistent copy
// of the file (a bolt database itself) while writes continue, and Restore
// replaces the whole store with such a copy.
package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/coffer-dev/coffer/internal/storage"
)

// DefaultTimeout is how long Open waits for another process's lock on the
// data file when Config.Timeout is zero.
const DefaultTimeout = time.Second

const (
	// maxBatchRequests and maxBatchBytes cap one group commit. A batch always
	// takes at least one request, however large.
	maxBatchRequests = 512
	maxBatchBytes    = 4 << 20

	// scanChunkEntries and scanChunkBytes cap what Scan copies out of one
	// read transaction.
	scanChunkEntries = 256
	scanChunkBytes   = 1 << 20

	fileMode = 0o600
)

// bucketName is the single bucket holding every key.
var bucketName = []byte("coffer")

var (
	// ErrCorrupt is returned when the data file (or a snapshot given to
	// Restore) is damaged or is not a Coffer bolt file.
	ErrCorrupt = errors.New("bolt: data file corrupt")

	// ErrLocked is returned by Open when another process holds the data
	// file's lock for longer than Config.Timeout.
	ErrLocked = errors.New("bolt: data file locked by another process")

	// ErrInvalidOp is returned by Apply, before anything is written, for an
	// op bolt cannot store: an empty key, a key over 32 KiB or a value over
	// 2 GiB.
	ErrInvalidOp = errors.New("bolt: invalid op")
)

// Config configures Open.
type Config struct {
	// Path is the data file. Required. It is created with mode 0600 if it
	// does not exist; its directory must exist.
	Path string

	// NoSync skips fsync on commit. For tests only: a crash may then lose
	// acknowledged writes or corrupt the file. Zero: fsync every commit.
	NoSync bool

	// Logger receives operational events. Nil: discard.
	Logger *slog.Logger

	// Timeout is how long Open waits for another process's lock on the
	// file. Zero: DefaultTimeout. Negative: wait forever.
	Timeout time.Duration
}

// Backend is a storage.Backend and storage.Snapshotter over one bbolt file.
// It is safe for concurrent use. Create it with Open.
type Backend struct {
	cfg   Config
	log   *slog.Logger
	queue chan *request // to the committer
	stop  chan struct{} // closed to stop the committer
	done  chan struct{} // closed when the committer has returned

	commits atomic.Int64 // bolt write transactions committed, for tests

	// mu guards following. Get, Scan, Snapshot and Apply hold it for reading
	// while they use db (Apply until its batch is answered), so Close and
	// Restore, which hold it for writing, see no request in flight.
	mu     sync.RWMutex
	db     *bbolt.DB
	closed bool
}

// request is one Apply waiting for the committer.
type request struct {
	db   *bbolt.DB // the file the caller saw; constant while it waits
	ops  []storage.Op
	size int
	done chan error // buffered: the committer never blocks on it
}

// Open opens or creates the bolt file at cfg.Path and starts its committer.
// It returns ErrLocked if another process holds the file, ErrCorrupt if the
// file is damaged or not a bolt file.
func Open(cfg Config) (*Backend, error) {
	if cfg.Path == "" {
		return nil, errors.New("bolt: Config.Path is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	db, err := openDB(cfg)
	if err != nil {
		return nil, err
	}
	b := &Backend{
		cfg:   cfg,
		log:   cfg.Logger,
		queue: make(chan *request, maxBatchRequests),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		db:    db,
	}
	go b.run()
	return b, nil
}

// openDB opens the file and makes sure our bucket exists.
func openDB(cfg Config) (db *bbolt.DB, err error) {
	timeout := cfg.Timeout
	switch {
	case timeout == 0:
		timeout = DefaultTimeout
	case timeout < 0:
		timeout = 0 // bbolt: wait forever
	}
	defer func() {
		if err != nil && db != nil {
			db.Close()
			db = nil
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer catchCorruption(cfg.Logger, "open", &err)
	db, err = bbolt.Open(cfg.Path, fileMode, &bbolt.Options{
		Timeout:      timeout,
		NoSync:       cfg.NoSync,
		FreelistType: bbolt.FreelistMapType,
	})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("bolt: open %s: %w", cfg.Path, ErrLocked)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("bolt: open %s: %w: %w", cfg.Path, ErrCorrupt, err)
	case err != nil:
		return nil, fmt.Errorf("bolt: open %s: %w", cfg.Path, err)
	}
	// Look before creating, so that opening an existing file writes nothing.
	var exists bool
	err = db.View(func(tx *bbolt.Tx) error {
		exists = tx.Bucket(bucketName) != nil
		return nil
	})
	if err == nil && !exists {
		err = db.Update(func(tx *bbolt.Tx) error {
			_, err := tx.CreateBucket(bucketName)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", cfg.Path, err)
	}
	return db, nil
}

// catchCorruption turns a panic or memory fault raised by bbolt on a damaged
// file into ErrCorrupt. Deferred directly by every function that touches the
// file, together with debug.SetPanicOnFault(true).
func catchCorruption(log *slog.Logger, op string, err *error) {
	if r := recover(); r != nil {
		// bbolt's panic messages name pages and flags, never keys or values.
		log.Error("bolt: damaged data file", "op", op, "panic", fmt.Sprint(r))
		*err = fmt.Errorf("bolt: %s: %w", op, ErrCorrupt)
	}
}

// view runs fn in a read transaction on db, with bolt's panics on a damaged
// file caught.
func (b *Backend) view(db *bbolt.DB, op string, fn func(*bbolt.Tx, *bbolt.Bucket) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer catchCorruption(b.log, op, &err)
	return db.View(func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucketName)
		if bk == nil {
			return fmt.Errorf("bolt: %s: bucket missing: %w", op, ErrCorrupt)
		}
		return fn(tx, bk)
	})
}

// Get implements storage.Backend. It returns ErrNotFound for a missing key,
// ErrClosed after Close.
func (b *Backend) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return nil, storage.ErrClosed
	}
	var out []byte
	err := b.view(b.db, "get", func(_ *bbolt.Tx, bk *bbolt.Bucket) error {
		k, v := bk.Cursor().Seek([]byte(key))
		if k == nil || string(k) != key {
			return storage.ErrNotFound
		}
		out = make([]byte, len(v))
		copy(out, v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Scan implements storage.Backend. fn runs with no transaction open and may
// call Get and Apply. It returns ErrClosed if the backend is closed before or
// during the scan.
func (b *Backend) Scan(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	p := []byte(prefix)
	var after []byte // last key handed to fn; nil before the first chunk
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk, more, err := b.scanChunk(p, after)
		if err != nil {
			return err
		}
		for _, e := range chunk {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(e.key, e.value); err != nil {
				return err
			}
		}
		if !more || len(chunk) == 0 {
			return nil
		}
		after = []byte(chunk[len(chunk)-1].key)
	}
}

type entry struct {
	key   string
	value []byte
}

// scanChunk copies up to one chunk of entries with prefix p and keys after
// after (from the start when after is nil). more reports that the chunk was
// cut short by its limits.
func (b *Backend) scanChunk(p, after []byte) (chunk []entry, more bool, err error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return nil, false, storage.ErrClosed
	}
	err = b.view(b.db, "scan", func(_ *bbolt.Tx, bk *bbolt.Bucket) error {
		c := bk.Cursor()
		var k, v []byte
		if after == nil {
			k, v = c.Seek(p)
		} else if k, v = c.Seek(after); bytes.Equal(k, after) {
			k, v = c.Next()
		}
		size := 0
		for ; k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			if len(chunk) == scanChunkEntries || size >= scanChunkBytes {
				more = true
				return nil
			}
			val := make([]byte, len(v))
			copy(val, v)
			chunk = append(chunk, entry{string(k), val})
			size += len(k) + len(v)
		}
		return nil
	})
	return chunk, more, err
}

// Apply implements storage.Backend. It returns once ops are committed and
// (unless Config.NoSync) fsynced, possibly together with other callers' ops.
// A cancelled ctx stops Apply only before its ops are queued; once queued,
// Apply waits for the commit's outcome, so its error is never ambiguous.
// It returns ErrInvalidOp for an op bolt cannot store and ErrClosed after
// Close; on any error none of ops is applied.
func (b *Backend) Apply(ctx context.Context, ops []storage.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	size := 0
	for i, op := range ops {
		switch {
		case op.Key == "":
			return fmt.Errorf("bolt: apply: op %d: empty key: %w", i, ErrInvalidOp)
		case len(op.Key) > bbolt.MaxKeySize:
			return fmt.Errorf("bolt: apply: op %d: key of %d bytes: %w", i, len(op.Key), ErrInvalidOp)
		case int64(len(op.Value)) > bbolt.MaxValueSize:
			return fmt.Errorf("bolt: apply: op %d: value of %d bytes: %w", i, len(op.Value), ErrInvalidOp)
		}
		size += len(op.Key) + len(op.Value)
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return storage.ErrClosed
	}
	if len(ops) == 0 {
		return nil
	}
	req := &request{db: b.db, ops: ops, size: size, done: make(chan error, 1)}
	select {
	case b.queue <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-req.done
}

// run is the committer. It owns every write to the file.
func (b *Backend) run() {
	defer close(b.done)
	debug.SetPanicOnFault(true)
	batch := make([]*request, 0, maxBatchRequests)
	for {
		select {
		case <-b.stop:
			// Apply holds mu while its request is queued, and Close takes mu
			// before stopping us, so nothing should be left; be thorough.
			for {
				select {
				case r := <-b.queue:
					r.done <- storage.ErrClosed
				default:
					return
				}
			}
		case r := <-b.queue:
			batch = append(batch[:0], r)
			size := r.size
		drain:
			for len(batch) < maxBatchRequests && size < maxBatchBytes {
				select {
				case r := <-b.queue:
					batch = append(batch, r)
					size += r.size
				default:
					break drain
				}
			}
			b.commit(batch)
			clear(batch) // let answered requests be collected
		}
	}
}

// commit applies batch in one transaction and answers every request. If the
// combined transaction fails, each request is retried alone.
func (b *Backend) commit(batch []*request) {
	err := b.update(batch[0].db, batch)
	if err == nil || len(batch) == 1 {
		for _, r := range batch {
			r.done <- err
		}
		return
	}
	b.log.Warn("bolt: group commit failed; retrying each request alone", "requests", len(batch), "err", err)
	for i, r := range batch {
		r.done <- b.update(r.db, batch[i:i+1])
	}
}

// update runs one write transaction holding every op of reqs.
func (b *Backend) update(db *bbolt.DB, reqs []*request) (err error) {
	defer catchCorruption(b.log, "apply", &err)
	err = db.Update(func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucketName)
		if bk == nil {
			return fmt.Errorf("bucket missing: %w", ErrCorrupt)
		}
		for _, r := range reqs {
			for _, op := range r.ops {
				var err error
				if op.Delete {
					err = bk.Delete([]byte(op.Key))
				} else {
					err = bk.Put([]byte(op.Key), nonNil(op.Value))
				}
				if err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bolt: apply: %w", err)
	}
	b.commits.Add(1)
	return nil
}

var empty = []byte{}

// nonNil returns v, or an empty non-nil slice: bbolt stores a nil value as a
// zero-length one anyway, this just makes it explicit.
func nonNil(v []byte) []byte {
	if v == nil {
		return empty
	}
	return v
}

// Close implements storage.Backend. It waits for requests in flight, stops
// the committer and closes the file. It is idempotent and safe to call
// concurrently with other methods, which then return ErrClosed.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	close(b.stop)
	<-b.done
	err := b.db.Close()
	b.db = nil
	if err != nil {
		return fmt.Errorf("bolt: close: %w", err)
	}
	return nil
}

// Snapshot implements storage.Snapshotter: it writes a consistent copy of the
// whole file, as of one moment, to w and returns the bytes written. Writes
// continue meanwhile; Close and Restore wait for it. The copy is itself a bolt
// file that Restore accepts. It returns ctx's error if ctx is done while
// writing, ErrClosed after Close.
func (b *Backend) Snapshot(ctx context.Context, w io.Writer) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return 0, storage.ErrClosed
	}
	var n int64
	err := b.view(b.db, "snapshot", func(tx *bbolt.Tx, _ *bbolt.Bucket) error {
		var err error
		n, err = tx.WriteTo(ctxWriter{ctx, w})
		return err
	})
	if err != nil {
		return n, fmt.Errorf("bolt: snapshot: %w", err)
	}
	return n, nil
}

// SnapshotSize returns the number of bytes Snapshot would write now, for a
// progress bar. It returns 0 after Close or on error.
func (b *Backend) SnapshotSize() int64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return 0
	}
	var n int64
	if err := b.view(b.db, "snapshot size", func(tx *bbolt.Tx, _ *bbolt.Bucket) error {
		n = tx.Size()
		return nil
	}); err != nil {
		return 0
	}
	return n
}

// Restore replaces all data with the snapshot read from r. The stream is
// written to a temporary file next to the data file, checked (a bolt file
// with Coffer's bucket that passes bolt's consistency check) and fsynced;
// then, with new requests held back and those in flight finished, the
// current file is closed and atomically replaced by it.
//
// If r fails, ctx is done or the stream is not a valid snapshot, Restore
// returns an error (ErrCorrupt for a bad stream) and the current data is
// untouched. If reopening fails after the replacement, the backend is closed
// and the error says so.
func (b *Backend) Restore(ctx context.Context, r io.Reader) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.RLock()
	closed := b.closed
	b.mu.RUnlock()
	if closed {
		return storage.ErrClosed
	}

	dir := filepath.Dir(b.cfg.Path)
	tmp, err := os.CreateTemp(dir, filepath.Base(b.cfg.Path)+".restore-*")
	if err != nil {
		return fmt.Errorf("bolt: restore: %w", err)
	}
	tmpPath := tmp.Name()
	renamed := false
	defer func() {
		if !renamed {
			os.Remove(tmpPath)
		}
	}()
	if err := tmp.Chmod(fileMode); err != nil {
		tmp.Close()
		return fmt.Errorf("bolt: restore: %w", err)
	}
	_, err = io.Copy(tmp, ctxReader{ctx, r})
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("bolt: restore: write temporary file: %w", err)
	}
	if err := b.checkSnapshot(tmpPath); err != nil {
		return err
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return storage.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.db.Close(); err != nil {
		b.log.Error("bolt: restore: close before swap", "err", err)
	}
	if err := os.Rename(tmpPath, b.cfg.Path); err != nil {
		// The old file is still in place: reopen it.
		db, oerr := openDB(b.cfg)
		if oerr != nil {
			b.failLocked()
			return fmt.Errorf("bolt: restore: rename: %w; reopening old data: %w (backend closed)", err, oerr)
		}
		b.db = db
		return fmt.Errorf("bolt: restore: rename: %w", err)
	}
	renamed = true
	if err := syncDir(dir); err != nil {
		b.log.Warn("bolt: restore: fsync directory", "dir", dir, "err", err)
	}
	db, err := openDB(b.cfg)
	if err != nil {
		b.failLocked()
		return fmt.Errorf("bolt: restore: reopen: %w (backend closed)", err)
	}
	b.db = db
	b.log.Info("bolt: restored snapshot", "path", b.cfg.Path)
	return nil
}

// failLocked marks the backend closed after its file could not be reopened.
func (b *Backend) failLocked() {
	b.closed = true
	b.db = nil
	close(b.stop)
	<-b.done
}

// checkSnapshot opens path read-only and checks it is a sound Coffer file.
func (b *Backend) checkSnapshot(path string) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer catchCorruption(b.log, "restore", &err)
	db, err := bbolt.Open(path, fileMode, &bbolt.Options{
		ReadOnly:        true,
		PreLoadFreelist: true,
		Timeout:         DefaultTimeout,
	})
	if err != nil {
		return fmt.Errorf("bolt: restore: not a bolt file: %w", ErrCorrupt)
	}
	defer db.Close()
	return db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketName) == nil {
			return fmt.Errorf("bolt: restore: snapshot has no %q bucket: %w", bucketName, ErrCorrupt)
		}
		// Read every entry here first, where a fault on a damaged page is
		// caught: bolt's check runs in a goroutine of its own.
		entries, sum := 0, uint32(0)
		if err := tx.Bucket(bucketName).ForEach(func(k, v []byte) error {
			entries++
			sum = crc32.Update(sum, crc32.IEEETable, v)
			return nil
		}); err != nil {
			return fmt.Errorf("bolt: restore: %w: %w", ErrCorrupt, err)
		}
		b.log.Debug("bolt: restore: snapshot read", "entries", entries, "crc32", sum)
		problems := 0
		// Messages may quote keys and values: count them, never show them.
		for range tx.Check() {
			problems++
		}
		if problems > 0 {
			return fmt.Errorf("bolt: restore: snapshot fails consistency check (%d problems): %w", problems, ErrCorrupt)
		}
		return nil
	})
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ctxWriter and ctxReader stop a long copy once ctx is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
