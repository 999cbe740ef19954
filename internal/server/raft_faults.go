package server

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// cutFileEnv names the environment variable that turns on the test-only
// cluster network cut: while the file it names exists, the node's raft
// traffic is cut in both directions (connections closed, dials and
// accepts refused), as if its cluster network were unplugged; the API
// listener keeps working. A relative name is taken in the node's raft
// data directory, so one variable serves every node of a test cluster.
// Unset (always in production): no effect.
// tests/compat uses it for the minority-partition test.
const cutFileEnv = "COFFER_TEST_RAFT_CUT_FILE"

// cutPollInterval is how often the cut file is checked.
const cutPollInterval = 50 * time.Millisecond

// fileFaults implements raft.NetFaults from the presence of a file.
type fileFaults struct {
	path string

	mu    sync.Mutex // guards following
	cut   bool
	conns []net.Conn
}

// newFileFaults returns nil when path is empty; otherwise it watches path
// (relative: in dir) until stop is closed.
func newFileFaults(path, dir string, stop <-chan struct{}) *fileFaults {
	if path == "" {
		return nil
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	f := &fileFaults{path: path}
	f.poll()
	go func() {
		t := time.NewTicker(cutPollInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				f.poll()
			}
		}
	}()
	return f
}

func (f *fileFaults) poll() {
	_, err := os.Stat(f.path)
	cut := !errors.Is(err, fs.ErrNotExist)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut = cut
	if cut {
		for _, c := range f.conns {
			c.Close()
		}
		f.conns = nil
	}
}

// Allowed implements raft.NetFaults.
func (f *fileFaults) Allowed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.cut
}

// Track implements raft.NetFaults.
func (f *fileFaults) Track(c net.Conn) net.Conn {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut {
		c.Close()
	}
	f.conns = append(f.conns, c)
	return c
}
