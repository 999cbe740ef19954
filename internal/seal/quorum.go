package seal

import (
	"crypto/subtle"
	"fmt"
	"io"
	"time"

	"github.com/coffer-dev/coffer/internal/shamir"
)

// AttemptStatus describes a share quorum (generate-root or rekey).
type AttemptStatus struct {
	// Started is false when no attempt is in progress; then only Required
	// is set.
	Started bool
	// Nonce identifies the attempt; every update must quote it.
	Nonce string
	// Progress counts the distinct shares given so far.
	Progress int
	// Required is the number of shares needed: the current threshold.
	Required int
	// StartedAt is when the attempt began (Config.Now).
	StartedAt time.Time
}

// quorum collects distinct shares of the current KEK. Its owner guards it.
type quorum struct {
	nonce    string
	required int
	shareLen int
	started  time.Time
	shares   [][]byte
}

func newQuorum(rand io.Reader, now time.Time, c *sealConfig) (*quorum, error) {
	nonce, err := newUUID(rand)
	if err != nil {
		return nil, err
	}
	_, t := c.quorum()
	return &quorum{nonce: nonce, required: t, shareLen: c.shareLen(), started: now}, nil
}

func (q *quorum) status() AttemptStatus {
	return AttemptStatus{Started: true, Nonce: q.nonce, Progress: len(q.shares), Required: q.required, StartedAt: q.started}
}

// add records share. It returns ErrInvalidShare (not counted) for a share
// of the wrong length or that cannot be a Shamir share, or one with the
// x-coordinate of a different share already given, and ErrDuplicateShare
// for a share already given.
func (q *quorum) add(share []byte) error {
	if len(share) != q.shareLen {
		return fmt.Errorf("%w: key is %d bytes, want %d", ErrInvalidShare, len(share), q.shareLen)
	}
	tagged := q.shareLen > keySize
	if tagged && share[len(share)-1] == 0 {
		return fmt.Errorf("%w: key has no valid share index", ErrInvalidShare)
	}
	for _, s := range q.shares {
		if subtle.ConstantTimeCompare(s, share) == 1 {
			return ErrDuplicateShare
		}
		if tagged && s[len(s)-1] == share[len(share)-1] {
			return fmt.Errorf("%w: a different key with the same share index was already given", ErrInvalidShare)
		}
	}
	q.shares = append(q.shares, append([]byte(nil), share...))
	return nil
}

func (q *quorum) ready() bool { return len(q.shares) >= q.required }

// combine rebuilds the KEK candidate from the collected shares. The caller
// must verify it and clear it.
func (q *quorum) combine() ([]byte, error) {
	kek, err := shamir.Combine(q.shares)
	if err != nil {
		// add rules out every shape error Combine checks.
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return kek, nil
}

// reset wipes the collected shares, keeping the attempt.
func (q *quorum) reset() {
	for _, s := range q.shares {
		clear(s)
	}
	q.shares = nil
}

// newUUID returns a random (version 4) UUID read from rand.
func newUUID(rand io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", fmt.Errorf("seal: reading randomness: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
