//go:build unix

package audit

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// stuckFIFO makes a FIFO and holds its read end open without ever
// reading, so writes succeed until the pipe buffer is full and then block.
func stuckFIFO(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return p
}

// bigBody is a request body of about 4 KiB, to fill pipe buffers fast.
var bigBody = `{"blob":"` + strings.Repeat("x", 4096) + `"}`

func TestEnableFIFOWithoutReaderReturns(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	b := newBroker(t, Config{AllowedDirs: []string{dir}})
	start := time.Now()
	err := b.Enable(context.Background(), "fifo", DeviceConfig{Type: "file", Options: map[string]string{"file_path": p}}, false)
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Enable took %s", took)
	}
	if err == nil || !strings.Contains(err.Error(), "reading") {
		t.Errorf("Enable(FIFO without reader) = %v, want an error saying nobody reads it", err)
	}
	if len(b.List()) != 0 {
		t.Errorf("a device that could not open was enabled")
	}
}

func TestBlockedFIFODoesNotHoldRequests(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	fifo := stuckFIFO(t, dir)
	b := newBroker(t, Config{AllowedDirs: []string{dir}})
	enableFile(t, b, "fifo", fifo, "timeout", "300ms", "queue_size", "4")
	enableFile(t, b, "file", filepath.Join(dir, "a.log"))

	// With a working file device every entry is confirmed at once, while
	// the FIFO fills its pipe buffer, then its queue, then is marked failed.
	var slowest time.Duration
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("the FIFO device was never marked failed after %d entries", i)
		}
		start := time.Now()
		if err := b.LogRequest(ctx, request("r", logical.UpdateOperation, "secret/data/x", bigBody)); err != nil {
			t.Fatalf("entry %d: LogRequest = %v with a working file device", i, err)
		}
		slowest = max(slowest, time.Since(start))
		if info := deviceInfo(t, b, "fifo"); info.Failed && info.Queued == 4 && strings.Contains(info.Reason, "queue full") {
			// Blocked for good, or only busy? A blocked device writes
			// nothing more.
			time.Sleep(200 * time.Millisecond)
			if again := deviceInfo(t, b, "fifo"); again.Written == info.Written && again.Queued == 4 {
				break
			}
		}
	}
	if slowest > time.Second {
		t.Errorf("slowest LogRequest took %s while the FIFO blocked", slowest)
	}
	t.Logf("slowest LogRequest with a blocked FIFO and a file device: %s", slowest)
	m := b.Metrics()
	if m.Devices["fifo"].Dropped == 0 || m.Failed != 1 || m.Unaudited != 0 {
		t.Errorf("metrics = %+v, want fifo drops, one failed device, nothing unaudited", m)
	}

	// With only the blocked FIFO left, requests fail closed within its timeout.
	if err := b.Disable(ctx, "file"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		start := time.Now()
		err := b.LogRequest(ctx, request("r", logical.UpdateOperation, "secret/data/x", bigBody))
		if !errors.Is(err, ErrNotAudited) {
			t.Fatalf("LogRequest with only a blocked FIFO = %v, want ErrNotAudited", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("failing closed took %s, want about the 300ms timeout", took)
		}
	}
	if b.Metrics().Unaudited != 3 {
		t.Errorf("Unaudited = %d, want 3", b.Metrics().Unaudited)
	}

	// Close gives up on the blocked device when its context ends.
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := b.Close(cctx); err == nil {
		t.Errorf("Close with a blocked device = nil, want a timeout error")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Close took %s", took)
	}
}

func TestSocketPeerThatStopsReading(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c // held open, never read
		}
	}()
	defer func() {
		for {
			select {
			case c := <-accepted:
				c.Close()
			default:
				return
			}
		}
	}()
	b := newBroker(t, Config{AllowedDirs: []string{dir}})
	if err := b.Enable(ctx, "sock", DeviceConfig{Type: "socket", Options: map[string]string{
		"address": sock, "socket_type": "unix", "write_timeout": "100ms", "timeout": "300ms",
	}}, false); err != nil {
		t.Fatal(err)
	}
	enableFile(t, b, "file", filepath.Join(dir, "a.log"))
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("the socket device was never marked failed after %d entries", i)
		}
		start := time.Now()
		if err := b.LogRequest(ctx, request("r", logical.UpdateOperation, "secret/data/x", bigBody)); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("entry %d took %s while the socket peer stopped reading", i, took)
		}
		if info := deviceInfo(t, b, "sock"); info.Failed {
			break
		}
	}
	if m := b.Metrics().Devices["sock"]; m.WriteErrors == 0 && m.Dropped == 0 {
		t.Errorf("socket metrics = %+v, want write errors or drops", m)
	}
}

func deviceInfo(t *testing.T, b *Broker, name string) DeviceInfo {
	t.Helper()
	for _, d := range b.List() {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no device %q", name)
	return DeviceInfo{}
}
