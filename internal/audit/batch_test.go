//go:build unix

package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/logical"
)

// TestConcurrentEntriesKeepOneChain logs from 16 goroutines, so the
// device's goroutine writes several queued entries at once, across a
// checkpoint interval: every entry is in the log once, the chain
// verifies, and the interval checkpoint follows the 1,000th entry exactly.
func TestConcurrentEntriesKeepOneChain(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "a.log")
	b := newBroker(t, Config{AllowedDirs: []string{dir}})
	enableFile(t, b, "file", path)
	const workers, each = 16, 70
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := b.LogRequest(ctx, request(fmt.Sprintf("w%d-%d", w, i), logical.ReadOperation, "p", "")); err != nil {
					t.Errorf("LogRequest: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if m := b.Metrics().Devices["file"]; m.Written != workers*each || m.Dropped != 0 {
		t.Errorf("metrics = %+v, want %d written, none dropped", m, workers*each)
	}
	closeBroker(t, b)

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, raw)
	if rep.Entries != workers*each || rep.Checkpoints != 3 {
		t.Errorf("report = %+v, want %d entries and 3 checkpoints", rep, workers*each)
	}
	seen := map[string]int{}
	entries := 0
	for _, l := range readLines(t, path) {
		var e struct {
			Type       string              `json:"type"`
			Request    struct{ ID string } `json:"request"`
			Checkpoint *checkpointInfo     `json:"checkpoint"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		if e.Type == "request" {
			entries++
			seen[e.Request.ID]++
		}
		if e.Checkpoint != nil && e.Checkpoint.Reason == "interval" && entries != CheckpointInterval {
			t.Errorf("interval checkpoint after %d entries, want %d", entries, CheckpointInterval)
		}
	}
	if len(seen) != workers*each {
		t.Errorf("%d distinct entries in the log, want %d", len(seen), workers*each)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("entry %s is in the log %d times", id, n)
		}
	}
}

// TestCutWriteKeepsTheChain makes a socket device's write time out half
// way through what it holds (its peer stops reading) and then lets it
// reconnect: the complete lines of the first connection followed by the
// second connection verify as one chain, and they hold exactly the entries
// the device counted as written.
func TestCutWriteKeepsTheChain(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conns := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	b := newBroker(t, Config{AllowedDirs: []string{dir}})
	if err := b.Enable(ctx, "sock", DeviceConfig{Type: "socket", Options: map[string]string{
		"address": sock, "socket_type": "unix", "write_timeout": "100ms", "timeout": "300ms",
	}}, false); err != nil {
		t.Fatal(err)
	}
	enableFile(t, b, "file", filepath.Join(dir, "a.log")) // keeps requests answered
	first := <-conns
	defer first.Close()

	// Log from 16 goroutines until the device has failed and reconnected.
	var second net.Conn
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := b.LogRequest(ctx, request(fmt.Sprintf("w%d-%d", w, i), logical.UpdateOperation, "secret/data/x", `{"k":"v"}`)); err != nil {
					t.Errorf("LogRequest: %v", err)
					return
				}
			}
		})
	}
	var firstBytes []byte
	reading := false
	read := make(chan struct{})
	deadline := time.After(20 * time.Second)
wait:
	for {
		select {
		case c := <-conns:
			second = c
			break wait
		case <-deadline:
			close(stop)
			wg.Wait()
			t.Fatal("the socket device never failed and reconnected")
		case <-time.After(20 * time.Millisecond):
			if !reading && deviceInfo(t, b, "sock").Failed {
				reading = true
				go func() { // the device closed it: read what it holds
					firstBytes, _ = io.ReadAll(first)
					close(read)
				}()
			}
		}
	}
	defer second.Close()
	var secondBytes []byte
	readSecond := make(chan struct{})
	go func() {
		secondBytes, _ = io.ReadAll(second)
		close(readSecond)
	}()
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	closeBroker(t, b) // the device writes what it holds first
	written := b.Metrics().Devices["sock"].Written
	if !reading {
		go func() { firstBytes, _ = io.ReadAll(first); close(read) }()
	}
	<-read
	<-readSecond

	if !bytes.HasSuffix(firstBytes, []byte("\n")) {
		firstBytes = firstBytes[:bytes.LastIndexByte(firstBytes, '\n')+1] // a cut line
	}
	rep, err := Verify(bytes.NewReader(append(firstBytes, secondBytes...)), nil)
	if err != nil {
		t.Fatalf("the two connections do not verify as one chain: %v", err)
	}
	if uint64(rep.Entries) != written {
		t.Errorf("the log holds %d entries, the device counted %d written", rep.Entries, written)
	}
	if !strings.Contains(string(secondBytes), `"reason":"start"`) {
		t.Errorf("the second connection does not start with a checkpoint")
	}
	t.Logf("first connection %d bytes, second %d bytes, %d entries, %d dropped", len(firstBytes), len(secondBytes), rep.Entries, rep.Dropped)
}
