package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coffer-dev/coffer/internal/logical"
)

// sampleLog writes a closed log of n requests (start checkpoint, n
// entries, shutdown checkpoint) and returns its lines and public key.
func sampleLog(t testing.TB, n int) ([]string, ed25519.PublicKey) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "a.log")
	b := newBroker(t, Config{AllowedDirs: []string{dir}})
	enableFile(t, b, "file", path)
	for i := range n {
		if err := b.LogRequest(context.Background(), request("r"+string(rune('a'+i)), logical.ReadOperation, "secret/data/x", "")); err != nil {
			t.Fatal(err)
		}
	}
	key, _ := ParsePublicKey(b.List()[0].PublicKey)
	closeBroker(t, b)
	return readLines(t, path), key
}

func join(lines []string) []byte { return []byte(strings.Join(lines, "\n") + "\n") }

func TestVerifyNamesTheFirstBadLine(t *testing.T) {
	lines, key := sampleLog(t, 6) // line 1 start checkpoint, 2..7 requests, 8 shutdown
	edit := func(i int, f func(string) string) []string {
		out := append([]string(nil), lines...)
		out[i-1] = f(out[i-1])
		return out
	}
	forged := func() []string { // a fabricated entry inserted after line 3, chained correctly
		var h lineHeader
		json.Unmarshal([]byte(lines[2]), &h)
		body := strings.Replace(lines[2][strings.Index(lines[2], `"time"`)-1:], "secret/data/x", "secret/data/forged", 1)
		ins := string(frame(*h.Seq+1, lineHash([]byte(lines[2])), []byte("{"+body[1:])))
		return append(append(append([]string(nil), lines[:3]...), ins), lines[3:]...)
	}
	rechained := func() []string { // line 4 edited and every later prev_hash recomputed
		out := append([]string(nil), lines...)
		out[3] = strings.Replace(out[3], "secret/data/x", "secret/data/y", 1)
		for i := 4; i < len(out); i++ {
			var h lineHeader
			json.Unmarshal([]byte(out[i]), &h)
			out[i] = strings.Replace(out[i], h.PrevHash, lineHash([]byte(out[i-1])), 1)
		}
		return out
	}
	for name, tc := range map[string]struct {
		lines []string
		key   ed25519.PublicKey
		line  int
	}{
		"an edited entry":                          {edit(4, func(s string) string { return strings.Replace(s, "secret/data/x", "secret/data/y", 1) }), nil, 4},
		"an edited last entry before a checkpoint": {edit(7, func(s string) string { return strings.Replace(s, `"read"`, `"list"`, 1) }), nil, 7},
		"a removed entry":                          {append(append([]string(nil), lines[:4]...), lines[5:]...), nil, 5},
		"a reordered pair":                         {append(append(append([]string(nil), lines[:3]...), lines[4], lines[3]), lines[5:]...), nil, 4},
		"an inserted, well-chained entry":          {forged(), nil, 4},
		"a duplicated entry":                       {append(append([]string(nil), lines[:4]...), lines[3:]...), nil, 4},
		"the whole tail re-chained":                {rechained(), nil, 8},
		"an edited checkpoint":                     {edit(8, func(s string) string { return strings.Replace(s, "shutdown", "interval", 1) }), nil, 8},
		"a checkpoint with a field's case changed": {edit(8, func(s string) string { return strings.Replace(s, `"time"`, `"Time"`, 1) }), nil, 8},
		"the wrong public key":                     {lines, otherKey(t), 1},
		"a line that is not JSON":                  {edit(3, func(s string) string { return s[:10] }), nil, 3},
		"a truncated first line":                   {edit(1, func(s string) string { return strings.Replace(s, `"checkpoint":`, `"x":`, 1) }), nil, 1},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Verify(bytes.NewReader(join(tc.lines)), tc.key)
			var ve *VerifyError
			if !errors.As(err, &ve) || !errors.Is(err, ErrTampered) {
				t.Fatalf("Verify = %v, want a VerifyError", err)
			}
			if ve.Line != tc.line {
				t.Errorf("Verify named line %d (%s), want line %d", ve.Line, ve.Reason, tc.line)
			}
		})
	}
	t.Run("the untouched log verifies with its own key and the given one", func(t *testing.T) {
		for _, k := range []ed25519.PublicKey{nil, key} {
			rep, err := Verify(bytes.NewReader(join(lines)), k)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Lines != 8 || rep.Entries != 6 || rep.Checkpoints != 2 || rep.KeyFromLog != (k == nil) || rep.LastCheckpointLine != 8 {
				t.Errorf("report = %+v", rep)
			}
		}
	})
	t.Run("a log cut before its end shows in the last checkpoint", func(t *testing.T) {
		rep, err := Verify(bytes.NewReader(join(lines[:5])), key)
		if err != nil {
			t.Fatal(err)
		}
		if rep.LastCheckpointLine != 1 || rep.Unsigned != 4 {
			t.Errorf("report = %+v, want the start checkpoint as the last and 4 unsigned lines", rep)
		}
	})
}

func otherKey(t testing.TB) ed25519.PublicKey {
	k, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestVerifyCatchesBitFlips flips one bit at a time in a closed log: in
// every byte of the final checkpoint (the one line no later line chains),
// including the case bit encoding/json would ignore in field names, and in
// every 7th byte elsewhere. Each change must fail verification. (Every
// byte of every line is affordable without -race, but not with it.)
func TestVerifyCatchesBitFlips(t *testing.T) {
	lines, key := sampleLog(t, 1)
	raw := join(lines)
	lastStart := len(raw) - len(lines[len(lines)-1]) - 1
	for i := range raw {
		bit := byte(0x01)
		if i >= lastStart {
			bit = 0x20
		} else if i%7 != 0 {
			continue
		}
		b := bytes.Clone(raw)
		b[i] ^= bit
		if _, err := Verify(bytes.NewReader(b), key); err == nil {
			t.Fatalf("flipping bit %#x of byte %d (%q) went unnoticed", bit, i, raw[i])
		}
	}
}

func FuzzVerify(f *testing.F) {
	lines, _ := sampleLog(f, 2)
	f.Add(join(lines))
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"seq":1,"prev_hash":"x","type":"checkpoint","checkpoint":{}}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := Verify(bytes.NewReader(b), nil)
		if err == nil && rep.Checkpoints == 0 {
			t.Fatal("a log verified without any signed checkpoint")
		}
	})
}

func TestVerifyEmptyAndTorn(t *testing.T) {
	lines, _ := sampleLog(t, 1)
	for name, in := range map[string][]byte{
		"an empty log":           nil,
		"a torn last line":       append(join(lines), `{"seq":9`...),
		"a line without a chain": []byte(`{"type":"request"}` + "\n"),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Verify(bytes.NewReader(in), nil); !errors.Is(err, ErrTampered) {
				t.Errorf("Verify = %v, want ErrTampered", err)
			}
		})
	}
}
