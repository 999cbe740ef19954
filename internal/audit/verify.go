package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ErrTampered matches every *VerifyError.
var ErrTampered = errors.New("audit: the log does not verify")

// VerifyError names the first line of a log that fails verification.
type VerifyError struct {
	Line   int // 1-based
	Reason string
}

func (e *VerifyError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// Is makes errors.Is(err, ErrTampered) true.
func (e *VerifyError) Is(target error) bool { return target == ErrTampered }

// Report summarizes a log that verified.
type Report struct {
	Lines       int
	Entries     int    // request and response lines
	Checkpoints int    // signed checkpoints, all valid
	Dropped     uint64 // entries the device itself recorded as lost
	FirstSeq    uint64
	LastSeq     uint64
	// FirstPrevHash is the first line's prev_hash: after rotation it is
	// the hash of the previous file's last line.
	FirstPrevHash string
	// PublicKey is the key the checkpoints were verified with;
	// KeyFromLog is set when it was taken from the log's first line
	// rather than given (which proves less: a forger can sign with his
	// own key).
	PublicKey  string
	KeyFromLog bool
	// LastCheckpoint is the line, seq and line hash of the last
	// checkpoint. Compare them with a checkpoint published elsewhere to
	// detect a truncated log.
	LastCheckpointLine int
	LastCheckpointSeq  uint64
	LastCheckpointHash string
	// Unsigned counts the lines after the last checkpoint; the chain
	// protects their order but only a later checkpoint signs them. A log
	// still being written ends with unsigned lines; a closed one ends
	// with a checkpoint.
	Unsigned int
}

// Verify checks a log written by one device: every line's seq follows the
// previous one, every prev_hash is the hash of the previous line, and
// every checkpoint is signed by pubKey (nil: the key the first line
// carries, see Report.KeyFromLog). It reads r to the end and returns a
// *VerifyError (matching ErrTampered) naming the first bad line, or
// another error if r fails. An edit of the very last line is found only if
// a line follows it: a closed log ends with a signed checkpoint.
func Verify(r io.Reader, pubKey ed25519.PublicKey) (Report, error) {
	var rep Report
	br := bufio.NewReaderSize(r, 64<<10)
	var prev, prevPrev []byte
	var prevSeq uint64
	n := 0
	bad := func(line int, format string, args ...any) (Report, error) {
		return rep, &VerifyError{Line: line, Reason: fmt.Sprintf(format, args...)}
	}
	for {
		line, err := br.ReadBytes('\n')
		if len(line) == 0 && errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return rep, fmt.Errorf("audit: read log: %w", err)
		}
		n++
		if !bytes.HasSuffix(line, []byte("\n")) {
			return bad(n, "the log ends with an incomplete line")
		}
		line = line[:len(line)-1]
		var h lineHeader
		if err := json.Unmarshal(line, &h); err != nil {
			return bad(n, "not a JSON audit entry")
		}
		if h.Seq == nil || h.PrevHash == "" {
			return bad(n, "no seq or prev_hash: not written by a Coffer audit device")
		}
		seq := *h.Seq
		if n == 1 {
			rep.FirstSeq, rep.FirstPrevHash = seq, h.PrevHash
			if pubKey == nil {
				if h.Checkpoint == nil || h.Type != "checkpoint" {
					return bad(n, "the first line carries no public key: pass the device's public key")
				}
				k, err := ParsePublicKey(h.Checkpoint.PublicKey)
				if err != nil {
					return bad(n, "the first line's public key is malformed")
				}
				pubKey, rep.KeyFromLog = k, true
			}
			rep.PublicKey = FormatPublicKey(pubKey)
		} else {
			switch {
			case seq == prevSeq && prevPrev != nil && h.PrevHash == lineHash(prevPrev):
				return bad(n-1, "inserted: line %d follows line %d", n, n-2)
			case seq > prevSeq+1:
				return bad(n, "seq jumps from %d to %d: lines were removed or moved", prevSeq, seq)
			case seq <= prevSeq:
				return bad(n, "seq %d does not follow %d: lines were moved, duplicated or inserted", seq, prevSeq)
			case h.PrevHash != lineHash(prev):
				return bad(n-1, "edited: its hash does not match the prev_hash of line %d", n)
			}
		}
		switch h.Type {
		case "checkpoint":
			c := h.Checkpoint
			if c == nil {
				return bad(n, "checkpoint without signature")
			}
			if c.PublicKey != rep.PublicKey {
				return bad(n, "checkpoint signed by another key")
			}
			sig, ok := parseSignature(c.Signature)
			if !ok || !ed25519.Verify(pubKey, checkpointMessage(seq, h.PrevHash, h.Time, c.Reason, c.PublicKey), sig) {
				return bad(n, "bad checkpoint signature: this line or the lines before it were rewritten")
			}
			// A checkpoint must be byte for byte what a device writes, so
			// that no change (even one encoding/json would ignore, such as
			// the case of a field name) slips past when it is the last line.
			canon, err := marshalLine(checkpointBody{Time: h.Time, Type: "checkpoint", Checkpoint: *c})
			if err != nil || !bytes.Equal(frame(seq, h.PrevHash, canon), line) {
				return bad(n, "checkpoint is not in its canonical form")
			}
			rep.Checkpoints++
			rep.LastCheckpointLine, rep.LastCheckpointSeq, rep.LastCheckpointHash = n, seq, lineHash(line)
			rep.Unsigned = 0
		case "request", "response":
			rep.Entries++
			rep.Unsigned++
		case "dropped":
			var d struct {
				Dropped uint64 `json:"dropped"`
			}
			_ = json.Unmarshal(line, &d)
			rep.Dropped += d.Dropped
			rep.Unsigned++
		default:
			return bad(n, "unknown entry type")
		}
		prevPrev, prev, prevSeq = prev, line, seq
		rep.Lines, rep.LastSeq = n, seq
	}
	if n == 0 {
		return bad(1, "the log is empty")
	}
	return rep, nil
}
