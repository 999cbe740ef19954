package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// zeroHash is the prev_hash of a device's very first line.
var zeroHash = "sha256:" + strings.Repeat("0", 64)

// lineHash renders "sha256:<hex>" of a line's bytes (without newline).
func lineHash(line []byte) string {
	s := sha256.Sum256(line)
	return "sha256:" + hex.EncodeToString(s[:])
}

// frame prepends seq and prev_hash to body, a JSON object.
func frame(seq uint64, prev string, body []byte) []byte {
	return appendFrame(make([]byte, 0, len(body)+120), seq, prev, body)
}

// appendFrame appends body, a JSON object, with seq and prev_hash
// prepended, to dst.
func appendFrame[S string | []byte](dst []byte, seq uint64, prev S, body []byte) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"prev_hash":"`...)
	dst = append(dst, prev...)
	dst = append(dst, `",`...)
	return append(dst, body[1:]...)
}

// checkpointBody is the device-specific part of a checkpoint line.
type checkpointBody struct {
	Time       string         `json:"time"`
	Type       string         `json:"type"`
	Checkpoint checkpointInfo `json:"checkpoint"`
}

type checkpointInfo struct {
	// Reason is "start" (first line of a file or connection), "interval",
	// "reopen", "disable" or "shutdown".
	Reason    string `json:"reason"`
	PublicKey string `json:"public_key"`
	Signature string `json:"signature"`
}

// checkpointMessage is what a checkpoint's signature covers. prev_hash
// chains every earlier line, so the signature vouches for all of them.
func checkpointMessage(seq uint64, prevHash, time, reason, publicKey string) []byte {
	return fmt.Appendf(nil, "coffer-audit-checkpoint-v1\nseq=%d\nprev_hash=%s\ntime=%s\nreason=%s\npublic_key=%s\n",
		seq, prevHash, time, reason, publicKey)
}

// FormatPublicKey renders an Ed25519 public key as the log and sys/audit
// show it: "ed25519:" and standard base64.
func FormatPublicKey(k ed25519.PublicKey) string {
	return "ed25519:" + base64.StdEncoding.EncodeToString(k)
}

// ParsePublicKey reads a key rendered by FormatPublicKey, with or without
// the "ed25519:" prefix.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(strings.TrimPrefix(strings.TrimSpace(s), "ed25519:"))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("audit: not an ed25519 public key")
	}
	return ed25519.PublicKey(b), nil
}

func formatSignature(sig []byte) string { return "ed25519:" + base64.StdEncoding.EncodeToString(sig) }

func parseSignature(s string) ([]byte, bool) {
	b, err := base64.StdEncoding.Strict().DecodeString(strings.TrimPrefix(s, "ed25519:"))
	return b, err == nil && strings.HasPrefix(s, "ed25519:") && len(b) == ed25519.SignatureSize
}

// maxTail bounds how far back readTail looks for the start of the last
// line.
const maxTail = 64 << 20

// readTail returns the last line of f (without its newline) and whether
// the file ends without a newline (a torn write). An empty file returns a
// nil line.
func readTail(f *os.File) (line []byte, torn bool, err error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	size := fi.Size()
	if size == 0 {
		return nil, false, nil
	}
	var last [1]byte
	if _, err := f.ReadAt(last[:], size-1); err != nil {
		return nil, false, err
	}
	end := size
	if last[0] == '\n' {
		end--
	} else {
		torn = true
	}
	const chunk = 64 << 10
	var buf []byte
	pos := end
	for pos > 0 && end-pos < maxTail {
		n := min(int64(chunk), pos)
		b := make([]byte, n)
		if _, err := f.ReadAt(b, pos-n); err != nil && !errors.Is(err, io.EOF) {
			return nil, false, err
		}
		pos -= n
		buf = append(b, buf...)
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return buf[i+1:], torn, nil
		}
	}
	if pos > 0 {
		return nil, false, errors.New("last line too long")
	}
	return buf, torn, nil
}

// lineHeader is the part of a line the chain needs.
type lineHeader struct {
	Seq        *uint64         `json:"seq"`
	PrevHash   string          `json:"prev_hash"`
	Type       string          `json:"type"`
	Time       string          `json:"time"`
	Checkpoint *checkpointInfo `json:"checkpoint"`
}
