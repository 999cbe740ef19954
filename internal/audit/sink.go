package audit

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sync"
	"time"
)

// sink is where a device's lines go. write writes b, whole lines each
// ending in a newline, in one call where the sink allows, and returns how
// many bytes it wrote (all of them unless err is set); close is idempotent
// and may be called from another goroutine to interrupt a blocked write
// (it does for FIFOs, pipes and sockets; a write stuck in a regular file's
// syscall cannot be interrupted).
type sink interface {
	write(b []byte) (int, error)
	close() error
}

type fileSink struct {
	f       *os.File
	noClose bool // stdout
	once    sync.Once
	err     error
}

func (s *fileSink) write(b []byte) (int, error) { return s.f.Write(b) }

func (s *fileSink) close() error {
	s.once.Do(func() {
		if !s.noClose {
			s.err = s.f.Close()
		}
	})
	return s.err
}

type discardSink struct{}

func (discardSink) write(b []byte) (int, error) { return len(b), nil }
func (discardSink) close() error                { return nil }

type connSink struct {
	c            net.Conn
	writeTimeout time.Duration
	once         sync.Once
}

func (s *connSink) write(b []byte) (int, error) {
	if err := s.c.SetWriteDeadline(time.Now().Add(s.writeTimeout)); err != nil {
		return 0, err
	}
	return s.c.Write(b)
}

func (s *connSink) close() error {
	var err error
	s.once.Do(func() { err = s.c.Close() })
	return err
}

// errNoReader is returned when a FIFO has no reader: opening it for
// writing would block, so Coffer refuses instead.
var errNoReader = errors.New("no process has the FIFO open for reading")

// openFile opens a file device's path for appending, never blocking: a
// FIFO is opened non-blocking (and refused without a reader), and
// noFollow refuses a symlink as the final component. For a regular file it
// returns its last line (nil when empty) so the chain can continue, after
// terminating a torn last line with a newline.
func openFile(path string, mode os.FileMode, noFollow bool) (s *fileSink, tail []byte, err error) {
	extra := 0
	if noFollow {
		extra = oNoFollow
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeNamedPipe != 0 {
		f, err := os.OpenFile(path, os.O_WRONLY|oNonBlock|oCloExec|extra, 0)
		if errors.Is(err, errENXIO) {
			return nil, nil, fmt.Errorf("open %s: %w", path, errNoReader)
		}
		if err != nil {
			return nil, nil, err
		}
		return &fileSink{f: f}, nil, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|oNonBlock|oCloExec|extra, mode)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return &fileSink{f: f}, nil, nil
	}
	if mode != 0 && fi.Mode().Perm() != mode {
		if err := f.Chmod(mode); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	tail, torn, err := readTail(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("read the last line of %s: %w", path, err)
	}
	if torn {
		if _, err := f.Write([]byte("\n")); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	return &fileSink{f: f}, tail, nil
}
