package bolt

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coffer-dev/coffer/internal/storage"
	"github.com/coffer-dev/coffer/internal/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		return openTest(t, filepath.Join(t.TempDir(), "coffer.db"), true)
	})
}

// openTest opens a backend at path and closes it when the test ends.
func openTest(t testing.TB, path string, noSync bool) *Backend {
	t.Helper()
	b, err := Open(Config{Path: path, NoSync: noSync})
	if err != nil {
		t.Fatalf("Open(%s) = %v", path, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func put(key string, value []byte) storage.Op { return storage.Op{Key: key, Value: value} }

func mustApply(t testing.TB, b storage.Backend, ops ...storage.Op) {
	t.Helper()
	if err := b.Apply(context.Background(), ops); err != nil {
		t.Fatalf("Apply = %v", err)
	}
}

func wantValue(t *testing.T, b storage.Backend, key string, want []byte) {
	t.Helper()
	got, err := b.Get(context.Background(), key)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("Get(%q) = %.20q, %v; want %.20q", key, got, err, want)
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		cfg  Config
		want error // nil: any error
	}{
		"empty path is refused":        {Config{}, nil},
		"missing directory is refused": {Config{Path: filepath.Join(dir, "nope", "db")}, nil},
		"a file that is not bolt is corrupt": {
			Config{Path: writeFile(t, filepath.Join(dir, "text"), bytes.Repeat([]byte("not a database "), 1000))}, ErrCorrupt,
		},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := Open(tc.cfg)
			if err == nil {
				b.Close()
				t.Fatal("Open succeeded, want an error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Open = %v, want %v", err, tc.want)
			}
		})
	}

	t.Run("the file is created with mode 0600", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "db")
		openTest(t, path, true)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("mode = %o, want 600", got)
		}
	})

	t.Run("a file held by another backend is locked", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "db")
		openTest(t, path, true)
		start := time.Now()
		b, err := Open(Config{Path: path, Timeout: 50 * time.Millisecond})
		if err == nil {
			b.Close()
		}
		if !errors.Is(err, ErrLocked) {
			t.Errorf("second Open = %v, want ErrLocked", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("second Open took %v, want about the 50ms timeout", d)
		}
	})
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	b := openTest(t, path, false)
	mustApply(t, b, put("a", []byte("1")), put("b", []byte("2")))
	mustApply(t, b, storage.Op{Key: "a", Delete: true}, put("c", []byte("3")))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openTest(t, path, false)
	if _, err := b.Get(context.Background(), "a"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get(a) after reopen = %v, want ErrNotFound", err)
	}
	wantValue(t, b, "b", []byte("2"))
	wantValue(t, b, "c", []byte("3"))
}

func TestApplyRejectsInvalidOps(t *testing.T) {
	b := openTest(t, filepath.Join(t.TempDir(), "db"), true)
	for name, op := range map[string]storage.Op{
		"empty key":         put("", []byte("v")),
		"empty key deleted": {Key: "", Delete: true},
		"key over 32 KiB":   put(strings.Repeat("k", 32769), nil),
	} {
		t.Run(name, func(t *testing.T) {
			err := b.Apply(context.Background(), []storage.Op{put("before", []byte("v")), op})
			if !errors.Is(err, ErrInvalidOp) {
				t.Errorf("Apply = %v, want ErrInvalidOp", err)
			}
			if _, err := b.Get(context.Background(), "before"); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("Get(before) = %v, want ErrNotFound: a rejected batch wrote its first op", err)
			}
		})
	}
}

// TestCommitRetriesAlone hands the committer a batch holding one request that
// bolt rejects, bypassing Apply's checks: the others must still commit.
func TestCommitRetriesAlone(t *testing.T) {
	b := openTest(t, filepath.Join(t.TempDir(), "db"), true)
	req := func(ops ...storage.Op) *request {
		return &request{db: b.db, ops: ops, done: make(chan error, 1)}
	}
	batch := []*request{
		req(put("good/1", []byte("1"))),
		req(put("good/2", []byte("2")), put("", []byte("bad"))),
		req(put("good/3", []byte("3"))),
	}
	b.commit(batch)
	for i, r := range batch {
		err := <-r.done
		if wantErr := i == 1; (err != nil) != wantErr {
			t.Errorf("request %d answered %v, want error %v", i, err, wantErr)
		}
	}
	wantValue(t, b, "good/1", []byte("1"))
	wantValue(t, b, "good/3", []byte("3"))
	if _, err := b.Get(context.Background(), "good/2"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get(good/2) = %v, want ErrNotFound: the failed request was half applied", err)
	}
}

// TestGroupCommit checks that concurrent Applies share commits.
func TestGroupCommit(t *testing.T) {
	b := openTest(t, filepath.Join(t.TempDir(), "db"), false)
	const writers, each = 64, 5
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			<-start
			for i := range each {
				if err := b.Apply(context.Background(), []storage.Op{put(fmt.Sprintf("%d/%d", w, i), []byte("v"))}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	before := b.commits.Load()
	close(start)
	wg.Wait()
	commits := b.commits.Load() - before
	t.Logf("%d applies in %d commits", writers*each, commits)
	if commits >= writers*each {
		t.Errorf("%d applies took %d commits, want fewer (group commit)", writers*each, commits)
	}
}

// TestCloseDuringApplies closes the backend under concurrent writers: each
// Apply either succeeds, and its data survives, or returns ErrClosed.
func TestCloseDuringApplies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	b := openTest(t, path, true)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		acked []string
	)
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				k := fmt.Sprintf("%02d/%05d", w, i)
				err := b.Apply(context.Background(), []storage.Op{put(k, []byte(k))})
				if errors.Is(err, storage.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Apply = %v, want nil or ErrClosed", err)
					return
				}
				mu.Lock()
				acked = append(acked, k)
				mu.Unlock()
			}
		})
	}
	time.Sleep(100 * time.Millisecond)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	b = openTest(t, path, true)
	for _, k := range acked {
		wantValue(t, b, k, []byte(k))
	}
	if len(acked) == 0 {
		t.Error("no Apply succeeded before Close")
	}
}

const (
	crashEnvPath  = "COFFER_BOLT_CRASH_DB"
	crashEnvRound = "COFFER_BOLT_CRASH_ROUND"
)

func crashValue(key string) []byte {
	return bytes.Repeat([]byte(key+";"), 20)
}

// TestCrashSafety kills a writing process with SIGKILL and checks that every
// write it acknowledged is on disk. The child is this test binary, re-run with
// crashEnvPath set.
func TestCrashSafety(t *testing.T) {
	if path := os.Getenv(crashEnvPath); path != "" {
		crashChild(path, os.Getenv(crashEnvRound))
		return
	}
	if testing.Short() {
		t.Skip("starts child processes")
	}
	path := filepath.Join(t.TempDir(), "db")
	for round := range 3 {
		acked := runCrashChild(t, path, round)
		b, err := Open(Config{Path: path})
		if err != nil {
			t.Fatalf("round %d: Open after SIGKILL = %v", round, err)
		}
		missing := 0
		for _, k := range acked {
			got, err := b.Get(context.Background(), k)
			if err != nil || !bytes.Equal(got, crashValue(k)) {
				missing++
				if missing < 5 {
					t.Errorf("round %d: acknowledged key %q: Get = %d bytes, %v", round, k, len(got), err)
				}
			}
		}
		n := 0
		b.Scan(context.Background(), fmt.Sprintf("r%d/", round), func(string, []byte) error { n++; return nil })
		b.Close()
		t.Logf("round %d: %d writes acknowledged, %d on disk, %d missing", round, len(acked), n, missing)
		if len(acked) == 0 {
			t.Fatalf("round %d: child acknowledged nothing", round)
		}
	}
}

// runCrashChild starts the writer, reads its acknowledgements for about a
// second, kills it and returns the keys it acknowledged.
func runCrashChild(t *testing.T, path string, round int) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashSafety$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnvPath+"="+path, fmt.Sprintf("%s=%d", crashEnvRound, round))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	first := make(chan struct{})
	lines := make(chan []string)
	go func() {
		var acked []string
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if k, ok := strings.CutPrefix(sc.Text(), "ACK "); ok {
				if len(acked) == 0 {
					close(first)
				}
				acked = append(acked, k)
			}
		}
		lines <- acked
	}()
	select {
	case <-first:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("child acknowledged nothing in 20s")
	}
	time.Sleep(time.Second)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	acked := <-lines
	cmd.Wait()
	return acked
}

// crashChild writes from 16 goroutines until killed, printing each key once
// its Apply has returned.
func crashChild(path, round string) {
	b, err := Open(Config{Path: path, Timeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				k := fmt.Sprintf("r%s/%02d/%06d", round, w, i)
				if err := b.Apply(context.Background(), []storage.Op{put(k, crashValue(k))}); err != nil {
					fmt.Fprintln(os.Stderr, "crash child: Apply:", err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "ACK %s\n", k)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// pageSize reads the page size from the first meta page of a bolt file.
func pageSize(t *testing.T, data []byte) int {
	t.Helper()
	return int(binary.LittleEndian.Uint32(data[16+8:]))
}

func metaTxid(data []byte, page, size int) uint64 {
	return binary.LittleEndian.Uint64(data[page*size+16+48:])
}

func TestCorruptMetaPages(t *testing.T) {
	setup := func(t *testing.T) (path string, data []byte, size int) {
		path = filepath.Join(t.TempDir(), "db")
		b := openTest(t, path, false)
		mustApply(t, b, put("k", []byte("v1")))
		mustApply(t, b, put("k", []byte("v2")))
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return path, data, pageSize(t, data)
	}
	// flip changes the meta's pgid field, which its checksum covers.
	flip := func(data []byte, page, size int) { data[page*size+16+40] ^= 0x40 }

	t.Run("both meta pages damaged fails Open", func(t *testing.T) {
		path, data, size := setup(t)
		flip(data, 0, size)
		flip(data, 1, size)
		writeFile(t, path, data)
		b, err := Open(Config{Path: path})
		if err == nil {
			b.Close()
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("Open = %v, want ErrCorrupt", err)
		}
	})

	t.Run("newest meta page damaged falls back to the previous commit", func(t *testing.T) {
		path, data, size := setup(t)
		newest := 0
		if metaTxid(data, 1, size) > metaTxid(data, 0, size) {
			newest = 1
		}
		flip(data, newest, size)
		writeFile(t, path, data)
		b := openTest(t, path, false)
		wantValue(t, b, "k", []byte("v1"))
	})

	t.Run("older meta page damaged changes nothing", func(t *testing.T) {
		path, data, size := setup(t)
		older := 1
		if metaTxid(data, 1, size) > metaTxid(data, 0, size) {
			older = 0
		}
		flip(data, older, size)
		writeFile(t, path, data)
		b := openTest(t, path, false)
		wantValue(t, b, "k", []byte("v2"))
	})
}

// TestCorruptLeafPage damages the header of every page holding our values: each
// read must then fail with ErrCorrupt or return the right value, never
// panic or return something else.
func TestCorruptLeafPage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	b := openTest(t, path, false)
	value := func(i int) []byte { return fmt.Appendf(nil, "MARKER-%03d-%s", i, strings.Repeat("x", 200)) }
	var ops []storage.Op
	for i := range 200 {
		ops = append(ops, put(fmt.Sprintf("k/%03d", i), value(i)))
	}
	mustApply(t, b, ops...)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	size := pageSize(t, data)
	damaged := 0
	for off := 2 * size; off+size <= len(data); off += size {
		page := data[off : off+size]
		if binary.LittleEndian.Uint16(page[8:]) == 0x02 && bytes.Contains(page, []byte("MARKER-")) {
			binary.LittleEndian.PutUint16(page[8:], 0) // no such page type
			damaged++
		}
	}
	if damaged == 0 {
		t.Fatal("found no leaf page to damage")
	}
	writeFile(t, path, data)

	b2, err := Open(Config{Path: path})
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("Open = %v, want ErrCorrupt", err)
		}
		return
	}
	defer b2.Close()
	corrupt := 0
	for i := range 200 {
		got, err := b2.Get(context.Background(), fmt.Sprintf("k/%03d", i))
		switch {
		case errors.Is(err, ErrCorrupt):
			corrupt++
		case err != nil:
			t.Errorf("Get(k/%03d) = %v, want ErrCorrupt or the value", i, err)
		case !bytes.Equal(got, value(i)):
			t.Errorf("Get(k/%03d) returned a wrong value", i)
		}
	}
	if corrupt == 0 {
		t.Error("no Get reported the damaged pages")
	}
	if err := b2.Scan(context.Background(), "", func(string, []byte) error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Scan = %v, want ErrCorrupt", err)
	}
	if err := b2.Apply(context.Background(), []storage.Op{put("k/050", []byte("new"))}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Apply over a damaged page = %v, want ErrCorrupt", err)
	}
}

// TestSnapshotWhileWriting takes a snapshot while 8 goroutines write pairs of
// keys in sequence: the snapshot must open and hold, for each writer, both
// keys of its first n batches and nothing after (a consistent prefix).
func TestSnapshotWhileWriting(t *testing.T) {
	dir := t.TempDir()
	b := openTest(t, filepath.Join(dir, "db"), true)
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var written atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				v := bytes.Repeat([]byte{byte(i)}, 512)
				err := b.Apply(ctx, []storage.Op{
					put(fmt.Sprintf("w%d/a/%06d", w, i), v),
					put(fmt.Sprintf("w%d/b/%06d", w, i), v),
				})
				if err != nil {
					t.Error(err)
					return
				}
				written.Add(1)
			}
		})
	}
	for written.Load() < 200 {
		time.Sleep(time.Millisecond)
	}
	snapPath := filepath.Join(dir, "snap")
	f, err := os.Create(snapPath)
	if err != nil {
		t.Fatal(err)
	}
	n, err := b.Snapshot(ctx, f)
	f.Close()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("Snapshot = %v", err)
	}
	if fi, _ := os.Stat(snapPath); fi.Size() != n {
		t.Errorf("Snapshot returned %d, file has %d bytes", n, fi.Size())
	}

	s := openTest(t, snapPath, true)
	total := 0
	for w := range 8 {
		counts := map[string]int{}
		for _, half := range []string{"a", "b"} {
			i := 0
			err := s.Scan(ctx, fmt.Sprintf("w%d/%s/", w, half), func(k string, v []byte) error {
				if want := fmt.Sprintf("w%d/%s/%06d", w, half, i); k != want {
					return fmt.Errorf("snapshot has %q where %q was expected: not a prefix", k, want)
				}
				if len(v) != 512 || v[0] != byte(i) {
					return fmt.Errorf("snapshot has a wrong value at %q", k)
				}
				i++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			counts[half] = i
			total += i
		}
		if counts["a"] != counts["b"] {
			t.Errorf("writer %d: snapshot has %d a-keys and %d b-keys: a torn batch", w, counts["a"], counts["b"])
		}
	}
	t.Logf("snapshot of %d bytes holds %d of the %d+ batches written", n, total/2, written.Load())
	if total == 0 {
		t.Error("snapshot holds no batches")
	}
}

func TestSnapshotSize(t *testing.T) {
	b := openTest(t, filepath.Join(t.TempDir(), "db"), true)
	mustApply(t, b, put("k", bytes.Repeat([]byte("v"), 100000)))
	var buf bytes.Buffer
	n, err := b.Snapshot(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.SnapshotSize(); got != n {
		t.Errorf("SnapshotSize = %d, Snapshot wrote %d", got, n)
	}
	b.Close()
	if got := b.SnapshotSize(); got != 0 {
		t.Errorf("SnapshotSize after Close = %d, want 0", got)
	}
}

func TestRestore(t *testing.T) {
	ctx := context.Background()
	// snapshot of a store holding only "new".
	src := openTest(t, filepath.Join(t.TempDir(), "src"), true)
	mustApply(t, src, put("new", []byte("restored")))
	var snap bytes.Buffer
	if _, err := src.Snapshot(ctx, &snap); err != nil {
		t.Fatal(err)
	}

	setup := func(t *testing.T) (*Backend, string) {
		dir := t.TempDir()
		path := filepath.Join(dir, "db")
		b := openTest(t, path, true)
		mustApply(t, b, put("old", []byte("original")))
		return b, path
	}
	noTempFiles := func(t *testing.T, path string) {
		t.Helper()
		entries, _ := os.ReadDir(filepath.Dir(path))
		for _, e := range entries {
			if e.Name() != filepath.Base(path) {
				t.Errorf("file %s left next to the data file", e.Name())
			}
		}
	}

	t.Run("a snapshot replaces all data", func(t *testing.T) {
		b, path := setup(t)
		if err := b.Restore(ctx, bytes.NewReader(snap.Bytes())); err != nil {
			t.Fatalf("Restore = %v", err)
		}
		wantValue(t, b, "new", []byte("restored"))
		if _, err := b.Get(ctx, "old"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Get(old) after Restore = %v, want ErrNotFound", err)
		}
		mustApply(t, b, put("after", []byte("1")))
		noTempFiles(t, path)
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Errorf("restored file mode = %o, want 600", fi.Mode().Perm())
		}
		b.Close()
		b = openTest(t, path, true)
		wantValue(t, b, "new", []byte("restored"))
		wantValue(t, b, "after", []byte("1"))
	})

	noBucket := func() []byte {
		// A valid bolt file written by this package, with the bucket renamed.
		return bytes.ReplaceAll(snap.Bytes(), bucketName, []byte("xoffer"))
	}
	for name, r := range map[string]io.Reader{
		"an empty stream":           bytes.NewReader(nil),
		"garbage":                   bytes.NewReader(bytes.Repeat([]byte("garbage!"), 4096)),
		"a truncated snapshot":      bytes.NewReader(snap.Bytes()[:snap.Len()/2]),
		"a file without our bucket": bytes.NewReader(noBucket()),
		"a failing reader":          io.MultiReader(bytes.NewReader(snap.Bytes()[:4096]), errReader{}),
	} {
		t.Run(name+" leaves the old data", func(t *testing.T) {
			b, path := setup(t)
			if err := b.Restore(ctx, r); err == nil {
				t.Fatal("Restore succeeded, want an error")
			}
			wantValue(t, b, "old", []byte("original"))
			mustApply(t, b, put("still", []byte("writable")))
			wantValue(t, b, "still", []byte("writable"))
			noTempFiles(t, path)
		})
	}

	t.Run("a cancelled context leaves the old data", func(t *testing.T) {
		b, _ := setup(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := b.Restore(cctx, bytes.NewReader(snap.Bytes())); !errors.Is(err, context.Canceled) {
			t.Errorf("Restore = %v, want context.Canceled", err)
		}
		wantValue(t, b, "old", []byte("original"))
	})

	t.Run("restore after close fails", func(t *testing.T) {
		b, _ := setup(t)
		b.Close()
		if err := b.Restore(ctx, bytes.NewReader(snap.Bytes())); !errors.Is(err, storage.ErrClosed) {
			t.Errorf("Restore = %v, want ErrClosed", err)
		}
	})

	t.Run("restore while writers run", func(t *testing.T) {
		b, _ := setup(t)
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for w := range 4 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if err := b.Apply(ctx, []storage.Op{put(fmt.Sprintf("w/%d/%d", w, i), []byte("v"))}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		time.Sleep(20 * time.Millisecond)
		err := b.Restore(ctx, bytes.NewReader(snap.Bytes()))
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatalf("Restore = %v", err)
		}
		wantValue(t, b, "new", []byte("restored"))
	})
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("stream broke") }

// BenchmarkApplyParallel measures one-op Applies of 1 KiB values from
// several goroutines per CPU with fsync on; req/commit shows how many share
// each commit (parallelism=1 is close to one writer per commit).
func BenchmarkApplyParallel(b *testing.B) {
	for _, p := range []int{1, 8} {
		b.Run(fmt.Sprintf("parallelism=%d", p), func(b *testing.B) {
			be := openTest(b, filepath.Join(b.TempDir(), "db"), false)
			value := bytes.Repeat([]byte("v"), 1024)
			var n atomic.Int64
			before := be.commits.Load()
			b.SetParallelism(p)
			b.SetBytes(1024)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					k := fmt.Sprintf("bench/%012d", n.Add(1))
					if err := be.Apply(context.Background(), []storage.Op{put(k, value)}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			if c := be.commits.Load() - before; c > 0 {
				b.ReportMetric(float64(b.N)/float64(c), "req/commit")
			}
		})
	}
}
