package barrier

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
	"time"
)

// seq returns n bytes counting up from start.
func seq(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// testKeyring is a keyring with fixed keys: path key 00..1f, term 1 key
// 20..3f installed at epoch, term 2 key 40..5f installed an hour later.
func testKeyring(t testing.TB) *keyring {
	t.Helper()
	kr := newKeyring(seq(0x00, 32))
	for i, start := range []byte{0x20, 0x40} {
		key := seq(start, 32)
		aead, err := newAEAD(key)
		if err != nil {
			t.Fatal(err)
		}
		kr.terms = append(kr.terms, term{n: uint32(i + 1), installed: epoch.Add(time.Duration(i) * time.Hour), key: key, aead: aead})
	}
	return kr
}

// Frozen vectors for the barrier's own formats. If one of these fails, the
// on-disk format changed and existing data would no longer open: add a new
// version instead. The envelope and the keyed hashes were checked against
// Python's hmac module and the cryptography package's AESGCM.
const (
	// Key 00..1f, nonce a0..ab, term 7, context "d:kv/a", plaintext "s3cret".
	frozenEnvelope = "0100000007" + "a0a1a2a3a4a5a6a7a8a9aaab" + "952b1f5f20bf1290a25735a402709a6016f5bb2c19e9"
	// Path key 00..1f. Layout 2: the entry of kv/a (base64url of the first
	// 16 bytes of the same HMACs as layout 1's names below).
	frozenEntryKey = "e/qkKGxXUOE0eU2_n757CVdQ/9_1n0KjcF4UeJ8Q88FSNpg"
	// Layout 1 (migrated on unseal): the value and the directory entry of kv/a.
	frozenV1DataKey  = "d/9beed7e1bd623930ce0013e977ee3a7e239f8a19431408cf6f63459f4dee7daf"
	frozenV1EntryKey = "l/aa4286c5750e134794dbf9fbe7b095758631c5822da54623f698291038491a70/f7fd67d0a8dc17851e27c43cf0548da69d9854ba3e6cdbd5a6905b3dc6b82fdd"
	// testKeyring.
	frozenKeyring = "01" + "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" + "00000002" +
		"00000001" + "1828ac0686338000" + "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f" +
		"00000002" + "1828af4cb6ec2000" + "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
)

func TestFrozenEnvelope(t *testing.T) {
	t.Parallel()
	aead, err := newAEAD(seq(0x00, 32))
	if err != nil {
		t.Fatal(err)
	}
	got, err := sealEnvelope(aead, bytes.NewReader(seq(0xa0, nonceSize)), 7, "d:kv/a", []byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(got) != frozenEnvelope {
		t.Errorf("envelope = %x, want %s", got, frozenEnvelope)
	}
	want, _ := hex.DecodeString(frozenEnvelope)
	pt, err := openEnvelope(aead, "d:kv/a", want)
	if err != nil || string(pt) != "s3cret" {
		t.Errorf("open(frozen) = %q, %v; want %q", pt, err, "s3cret")
	}
	for name, ctx := range map[string]string{
		"another path":             "d:kv/b",
		"another kind":             "l:kv/a",
		"no context":               "",
		"path with a trailing NUL": "d:kv/a\x00",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := openEnvelope(aead, ctx, want); !errors.Is(err, ErrCorrupt) {
				t.Errorf("open with context %q = %v, want ErrCorrupt", ctx, err)
			}
		})
	}
	other, _ := newAEAD(seq(0x01, 32))
	if _, err := openEnvelope(other, "d:kv/a", want); !errors.Is(err, ErrCorrupt) {
		t.Errorf("open under another key = %v, want ErrCorrupt", err)
	}
}

func TestFrozenPhysicalKeys(t *testing.T) {
	t.Parallel()
	kr := testKeyring(t)
	for _, c := range []struct{ name, got, want string }{
		{"dataKey(kv/a)", kr.dataKey("kv/a"), frozenEntryKey},
		{"entryKey(kv/, a)", kr.entryKey("kv/", "a"), frozenEntryKey},
		{"v1DataKey(kv/a)", kr.v1DataKey("kv/a"), frozenV1DataKey},
		{"v1EntryKey(kv/, a)", kr.v1EntryKey("kv/", "a"), frozenV1EntryKey},
	} {
		if c.got != c.want {
			t.Errorf("%s = %s, want %s", c.name, c.got, c.want)
		}
	}
}

// TestFrozenEntryPacking pins how an entry joins its two envelopes.
func TestFrozenEntryPacking(t *testing.T) {
	t.Parallel()
	name, value := seq(0x10, 3), seq(0x80, 2)
	if got, want := hex.EncodeToString(packEntry(name, value)), "03"+"101112"+"8081"; got != want {
		t.Errorf("packEntry = %s, want %s", got, want)
	}
	long := seq(0, 200)
	got := packEntry(long, nil)
	if hex.EncodeToString(got[:2]) != "c801" || len(got) != 202 {
		t.Errorf("packEntry of a 200-byte name starts %x (%d bytes), want c801 (202 bytes)", got[:2], len(got))
	}
	n, v, err := unpackEntry(got)
	if err != nil || !bytes.Equal(n, long) || len(v) != 0 {
		t.Errorf("unpackEntry(packEntry(long, nil)) = %x, %x, %v", n, v, err)
	}
}

func TestFrozenKeyring(t *testing.T) {
	t.Parallel()
	kr := testKeyring(t)
	got := kr.marshal()
	if hex.EncodeToString(got) != frozenKeyring {
		t.Errorf("keyring = %x, want %s", got, frozenKeyring)
	}
	want, _ := hex.DecodeString(frozenKeyring)
	back, err := parseKeyring(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.pathKey, kr.pathKey) || len(back.terms) != 2 {
		t.Fatalf("parsed keyring differs")
	}
	for i, tm := range back.terms {
		w := kr.terms[i]
		if tm.n != w.n || !tm.installed.Equal(w.installed) || !bytes.Equal(tm.key, w.key) || tm.aead == nil {
			t.Errorf("term %d = (%d, %v), want (%d, %v)", i, tm.n, tm.installed, w.n, w.installed)
		}
	}
}

func TestParseKeyringRejectsMalformed(t *testing.T) {
	t.Parallel()
	good := testKeyring(t).marshal()
	for name, tc := range map[string]func([]byte) []byte{
		"empty":              func(b []byte) []byte { return nil },
		"unknown version":    func(b []byte) []byte { b[0] = 2; return b },
		"truncated":          func(b []byte) []byte { return b[:len(b)-1] },
		"trailing byte":      func(b []byte) []byte { return append(b, 0) },
		"no terms":           func(b []byte) []byte { b = b[:keyringHeader]; b[keyringHeader-1] = 0; return b },
		"count too high":     func(b []byte) []byte { b[keyringHeader-1] = 3; return b },
		"term 0":             func(b []byte) []byte { b[keyringHeader+3] = 0; return b },
		"terms out of order": func(b []byte) []byte { b[keyringHeader+keyringTermSize+3] = 1; return b },
		"huge count, no terms": func(b []byte) []byte {
			b = b[:keyringHeader]
			copy(b[keyringHeader-4:], []byte{0xff, 0xff, 0xff, 0xff})
			return b
		},
		"only the header bytes": func(b []byte) []byte { return b[:keyringHeader] },
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := parseKeyring(tc(append([]byte(nil), good...))); !errors.Is(err, ErrCorrupt) {
				t.Errorf("parseKeyring = %v, want ErrCorrupt", err)
			}
		})
	}
}

func FuzzParseKeyring(f *testing.F) {
	f.Add(testKeyring(f).marshal())
	f.Add([]byte{keyringVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		kr, err := parseKeyring(b)
		if err != nil {
			return
		}
		if got := kr.marshal(); !bytes.Equal(got, b) {
			t.Fatalf("keyring changed on round trip:\n in %x\nout %x", b, got)
		}
	})
}

func FuzzOpenEnvelope(f *testing.F) {
	want, _ := hex.DecodeString(frozenEnvelope)
	f.Add(want, "d:kv/a")
	f.Add([]byte{envelopeVersion, 0, 0, 0, 1}, "")
	aead, err := newAEAD(seq(0x00, 32))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, v []byte, context string) {
		pt, err := openEnvelope(aead, context, v)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("open = %v, want ErrCorrupt", err)
			}
			return
		}
		// Whatever opens must be exactly what sealing it again produces.
		term, _ := envelopeTerm(v)
		again, err := sealEnvelope(aead, bytes.NewReader(v[headerSize:headerSize+nonceSize]), term, context, pt)
		if err != nil || !bytes.Equal(again, v) {
			t.Fatalf("opened envelope does not re-seal to itself")
		}
	})
}
