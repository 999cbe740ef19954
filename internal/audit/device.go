package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// record is a device as the table in storage keeps it. Salt and Seed are
// secrets: they live only in the barrier.
type record struct {
	Name        string            `json:"name"`
	Type        string            `json:"type"`
	Description string            `json:"description"`
	Options     map[string]string `json:"options"`
	Local       bool              `json:"local"`
	FromConfig  bool              `json:"from_config"`
	Salt        string            `json:"salt"`
	Seed        []byte            `json:"seed"`
}

// chainState is a device's position in its chain, persisted at every
// checkpoint so that a new file or connection continues the chain.
type chainState struct {
	Seq      uint64 `json:"seq"`
	PrevHash string `json:"prev_hash"`
}

// job is one entry for one device. The device replies once on res, which
// has room for every device's reply.
type job struct {
	body []byte
	res  chan<- result
}

type result struct {
	d   *device
	err error
}

type ctrlOp int

const (
	opReopen ctrlOp = iota
)

type ctrl struct {
	op    ctrlOp
	reply chan error
}

// errStopped is returned for work a stopped device can no longer do.
var errStopped = errors.New("audit device stopped")

// reopenBackoff limits how often a device whose sink is down tries to
// open it again while entries arrive.
const reopenBackoff = time.Second

// device is one enabled audit device: its keys, its queue and the
// goroutine that owns its sink and its chain.
type device struct {
	b    *Broker
	rec  record
	opts options
	salt []byte
	mac  *macKey // HMACs keyed with salt
	priv ed25519.PrivateKey
	pub  string

	queue    chan job
	ctrl     chan ctrl
	quit     chan struct{}
	quitOnce sync.Once
	done     chan struct{}
	opened   chan error // the first open attempt's result

	written, dropped, writeErrors, timeouts atomic.Uint64
	pendingDrops                            atomic.Uint64

	mu         sync.Mutex // guards following
	failed     bool
	reason     string
	sink       sink
	aborted    bool
	stopReason string // the closing checkpoint's reason; "" means shutdown

	// Owned by the run goroutine.
	jobs            []job       // the batch being written
	batch           []byte      // its framed lines
	lines           []batchLine // and where each ends
	prevBuf         []byte
	seq             uint64
	prev            string
	sinceCheckpoint int
	lastOpenTry     time.Time
	lastOpenErr     error
}

func newDevice(b *Broker, rec record, opts options, st chainState) (*device, error) {
	if len(rec.Seed) != ed25519.SeedSize || rec.Salt == "" {
		return nil, fmt.Errorf("audit: device %q: bad keys in storage", rec.Name)
	}
	priv := ed25519.NewKeyFromSeed(rec.Seed)
	d := &device{
		b: b, rec: rec, opts: opts, salt: []byte(rec.Salt), mac: newMACKey([]byte(rec.Salt)), priv: priv,
		pub:    FormatPublicKey(priv.Public().(ed25519.PublicKey)),
		queue:  make(chan job, opts.queueSize),
		ctrl:   make(chan ctrl),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		opened: make(chan error, 1),
		seq:    st.Seq,
		prev:   st.PrevHash,
	}
	if d.prev == "" {
		d.prev = zeroHash
	}
	return d, nil
}

// run is the device's goroutine; stop ends it.
func (d *device) run() {
	defer close(d.done)
	d.opened <- d.ensureOpen(true)
	for {
		select {
		case <-d.quit:
			d.drain()
			d.mu.Lock()
			reason := d.stopReason
			d.mu.Unlock()
			if reason == "" {
				reason = "shutdown"
			}
			d.finish(reason)
			return
		default:
		}
		select {
		case j := <-d.queue:
			d.handle(j)
		case c := <-d.ctrl:
			c.reply <- d.control(c.op)
		case <-d.quit:
		}
	}
}

func (d *device) drain() {
	for {
		select {
		case j := <-d.queue:
			d.handle(j)
		default:
			return
		}
	}
}

func (d *device) isAborted() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.aborted
}

// finish writes the closing checkpoint, saves the chain and closes the
// sink, unless the device was aborted.
func (d *device) finish(reason string) {
	if d.sink != nil && !d.isAborted() {
		d.writeCheckpoint(reason)
	}
	d.closeSink()
}

// stop ends the goroutine after it wrote what is queued and its closing
// checkpoint. When ctx ends first it aborts the device, interrupting a
// blocked write, and returns ctx's error.
func (d *device) stop(ctx context.Context) error {
	d.quitOnce.Do(func() { close(d.quit) })
	select {
	case <-d.done:
		return nil
	case <-ctx.Done():
	}
	d.abort()
	select {
	case <-d.done:
	case <-time.After(time.Second):
	}
	return fmt.Errorf("audit: device %q did not stop in time: %w", d.rec.Name, ctx.Err())
}

// abort closes the sink from outside, so a blocked write returns, and
// keeps the goroutine from opening it again.
func (d *device) abort() {
	d.mu.Lock()
	d.aborted = true
	s := d.sink
	d.mu.Unlock()
	if s != nil {
		s.close()
	}
}

func (d *device) closeSink() {
	d.mu.Lock()
	s := d.sink
	d.sink = nil
	d.mu.Unlock()
	if s != nil {
		s.close()
	}
}

func (d *device) currentSink() sink {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sink
}

// ensureOpen opens the sink if it is closed, at most once per
// reopenBackoff unless force, and writes a start checkpoint to a new file
// or connection.
func (d *device) ensureOpen(force bool) error {
	if d.currentSink() != nil {
		return nil
	}
	if d.isAborted() {
		return errStopped
	}
	now := time.Now()
	if !force && now.Sub(d.lastOpenTry) < reopenBackoff {
		return d.lastOpenErr
	}
	d.lastOpenTry = now
	s, fresh, err := d.open()
	d.lastOpenErr = err
	if err != nil {
		d.setFailed("open: " + err.Error())
		return err
	}
	d.mu.Lock()
	if d.aborted {
		d.mu.Unlock()
		s.close()
		return errStopped
	}
	d.sink = s
	d.mu.Unlock()
	if fresh {
		return d.writeCheckpoint("start")
	}
	return nil
}

// open opens the sink. fresh reports a new file or connection, whose first
// line must be a start checkpoint; for an existing file the chain
// continues from its last line.
func (d *device) open() (s sink, fresh bool, err error) {
	switch d.rec.Type {
	case "socket":
		c, err := net.DialTimeout(d.opts.socketType, d.opts.address, d.opts.timeout)
		if err != nil {
			return nil, false, err
		}
		return &connSink{c: c, writeTimeout: d.opts.writeTimeout}, true, nil
	}
	switch d.opts.filePath {
	case "discard":
		return discardSink{}, true, nil
	case "stdout":
		return &fileSink{f: os.Stdout, noClose: true}, true, nil
	}
	path := d.opts.filePath
	if !d.rec.FromConfig {
		if path, err = resolveAllowed(path, d.b.cfg.AllowedDirs, d.b.cfg.AllowAnyPath); err != nil {
			return nil, false, err
		}
	}
	fs, tail, err := openFile(path, d.opts.mode, !d.rec.FromConfig)
	if err != nil {
		return nil, false, err
	}
	if tail == nil {
		return fs, true, nil
	}
	var h lineHeader
	if json.Unmarshal(tail, &h) == nil && h.Seq != nil {
		d.seq = *h.Seq
	}
	d.prev = lineHash(tail)
	return fs, false, nil
}

func (d *device) reply(j job, err error) {
	select {
	case j.res <- result{d: d, err: err}:
	default:
	}
}

// Batches: a device's goroutine writes what its queue holds at once, up
// to these bounds.
const (
	maxBatch      = 64
	maxBatchBytes = 256 << 10
)

// batchLine is one framed line of a batch.
type batchLine struct {
	end     int               // where the line (with its newline) ends in batch
	sum     [sha256.Size]byte // the line's hash
	job     int               // the entry's index in the batch's jobs; -1 for a dropped line
	dropped uint64            // a dropped line's count
}

// handle writes j and the entries queued behind it, up to maxBatch, in as
// few writes as the chain allows (an interval checkpoint follows the last
// entry of its interval, as when lines are written one by one), and
// replies to each entry once its line is written or lost. An entry whose
// line a failed write cut is lost; the entries after it are tried again
// as new ones, after the sink reopens.
func (d *device) handle(j job) {
	jobs := append(d.jobs[:0], j)
	// Yield once before draining the queue: requests running on the other
	// goroutines queue their entries meanwhile and share this write (as
	// concurrent writers share one bolt commit). With nothing else
	// runnable it returns at once.
	runtime.Gosched()
	for len(jobs) < maxBatch {
		select {
		case j := <-d.queue:
			jobs = append(jobs, j)
			continue
		default:
		}
		break
	}
	ok := true
	for rest := jobs; len(rest) > 0; {
		if err := d.ensureOpen(false); err != nil {
			for _, j := range rest {
				d.lost(1)
				d.reply(j, err)
			}
			ok = false
			break
		}
		var n int
		n, ok = d.flush(rest[:d.frame(rest)])
		rest = rest[n:]
		if d.sinceCheckpoint >= CheckpointInterval {
			d.writeCheckpoint("interval")
		}
	}
	clear(jobs) // the bodies and reply channels are garbage now
	d.jobs = jobs[:0]
	if ok && len(d.queue) == 0 {
		d.setOK()
	}
}

// frame frames entries of jobs (each after a dropped line when entries
// were lost before it) into d.batch and returns how many it took: at least
// one, at most what fits in maxBatchBytes and what the current checkpoint
// interval has left.
func (d *device) frame(jobs []job) int {
	d.batch, d.lines = d.batch[:0], d.lines[:0]
	seq := d.seq
	d.prevBuf = append(d.prevBuf[:0], d.prev...)
	add := func(body []byte, job int, dropped uint64) {
		seq++
		start := len(d.batch)
		d.batch = appendFrame(d.batch, seq, d.prevBuf, body)
		l := batchLine{job: job, dropped: dropped, sum: sha256.Sum256(d.batch[start:])}
		d.batch = append(d.batch, '\n')
		l.end = len(d.batch)
		d.lines = append(d.lines, l)
		d.prevBuf = hex.AppendEncode(append(d.prevBuf[:0], "sha256:"...), l.sum[:])
	}
	left := CheckpointInterval - d.sinceCheckpoint
	n := 0
	for n < len(jobs) && (n == 0 || n < left && len(d.batch) < maxBatchBytes) {
		if k := d.pendingDrops.Swap(0); k > 0 {
			body, _ := marshalLine(droppedBody{Time: d.b.now().UTC(), Type: "dropped", Dropped: k})
			add(body, -1, k)
		}
		add(jobs[n].body, n, 0)
		n++
	}
	return n
}

// flush writes the framed batch of jobs in one write and advances the
// chain over the lines written. It returns how many jobs it is done with
// (all unless the write failed, then those written and the one cut) and
// whether the write succeeded. On failure the sink is closed, to be
// reopened by a later entry.
func (d *device) flush(jobs []job) (done int, ok bool) {
	var written int
	var err error
	if s := d.currentSink(); s == nil {
		err = errStopped
	} else if written, err = s.write(d.batch); err != nil {
		d.writeErrors.Add(1)
		d.setFailed("write: " + err.Error())
		d.closeSink()
	}
	committed := 0
	for _, l := range d.lines {
		if l.end > written {
			break
		}
		committed++
		d.seq++
		if l.job >= 0 {
			d.written.Add(1)
			d.sinceCheckpoint++
		}
	}
	if committed > 0 {
		d.prev = "sha256:" + hex.EncodeToString(d.lines[committed-1].sum[:])
	}
	if err == nil {
		for _, j := range jobs {
			d.reply(j, nil)
		}
		return len(jobs), true
	}
	// Reply to the entries written, lose the one whose line (or whose
	// dropped line) was cut, and count again the drops not recorded.
	done = len(jobs)
	for i, l := range d.lines {
		switch {
		case i < committed && l.job >= 0:
			d.reply(jobs[l.job], nil)
		case i >= committed && l.dropped > 0:
			d.pendingDrops.Add(l.dropped)
		case i >= committed && done == len(jobs):
			d.lost(1)
			d.reply(jobs[l.job], err)
			done = l.job + 1
		}
	}
	return done, false
}

// droppedBody records, in the chain, how many entries a device lost.
type droppedBody struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Dropped uint64    `json:"dropped"`
}

// lost counts entries that will never be in this device's log, to be
// recorded by the next dropped line.
func (d *device) lost(n uint64) {
	d.dropped.Add(n)
	d.pendingDrops.Add(n)
}

// writeBody frames body as the next line of the chain and writes it. On
// failure the chain does not advance and the sink is closed, to be
// reopened by a later entry.
func (d *device) writeBody(body []byte) error {
	s := d.currentSink()
	if s == nil {
		return errStopped
	}
	line := frame(d.seq+1, d.prev, body)
	if _, err := s.write(append(line, '\n')); err != nil {
		d.writeErrors.Add(1)
		d.setFailed("write: " + err.Error())
		d.closeSink()
		return err
	}
	d.seq++
	d.prev = lineHash(line)
	return nil
}

// writeCheckpoint writes a signed checkpoint and saves the chain state.
func (d *device) writeCheckpoint(reason string) error {
	t := d.b.now().UTC().Format(time.RFC3339Nano)
	sig := ed25519.Sign(d.priv, checkpointMessage(d.seq+1, d.prev, t, reason, d.pub))
	body, err := marshalLine(checkpointBody{Time: t, Type: "checkpoint", Checkpoint: checkpointInfo{
		Reason: reason, PublicKey: d.pub, Signature: formatSignature(sig),
	}})
	if err != nil {
		return err
	}
	if err := d.writeBody(body); err != nil {
		return err
	}
	d.sinceCheckpoint = 0
	d.saveChain()
	return nil
}

func (d *device) saveChain() {
	d.mu.Lock()
	forget := d.stopReason == "disable" // Disable deletes the chain state
	d.mu.Unlock()
	if forget {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, _ := json.Marshal(chainState{Seq: d.seq, PrevHash: d.prev})
	if err := d.b.cfg.Storage.Put(ctx, chainKey(d.rec.Name), b); err != nil {
		d.b.log.Warn("audit: save chain state", "device", d.rec.Name, "err", err)
	}
}

func (d *device) control(op ctrlOp) error {
	switch op {
	case opReopen:
		if d.currentSink() != nil {
			d.writeCheckpoint("reopen")
			d.closeSink()
		}
		return d.ensureOpen(true)
	}
	return nil
}

// do runs op on the device's goroutine and waits for it, or for ctx.
func (d *device) do(ctx context.Context, op ctrlOp) error {
	c := ctrl{op: op, reply: make(chan error, 1)}
	select {
	case d.ctrl <- c:
	case <-d.done:
		return errStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-c.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *device) setFailed(reason string) {
	d.mu.Lock()
	was := d.failed
	d.failed, d.reason = true, reason
	d.mu.Unlock()
	if !was {
		d.b.log.Warn("audit device failed", "device", d.rec.Name, "reason", reason)
	}
}

func (d *device) setOK() {
	d.mu.Lock()
	was := d.failed
	d.failed, d.reason = false, ""
	d.mu.Unlock()
	if was {
		d.b.log.Info("audit device recovered", "device", d.rec.Name)
	}
}

func (d *device) status() (failed bool, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.failed, d.reason
}
