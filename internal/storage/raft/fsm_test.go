package raft

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/coffer-dev/coffer/internal/storage"
)

func TestEncodeOps(t *testing.T) {
	for name, batches := range map[string][][]storage.Op{
		"one put":                  {{{Key: "a", Value: []byte("1")}}},
		"puts and deletes":         {{{Key: "a", Value: []byte("1")}, {Key: "b", Delete: true}}, {{Key: "c", Value: []byte{}}}},
		"binary keys and values":   {{{Key: "\x00\xff", Value: []byte{0, 1, 2}}}},
		"no ops":                   {},
		"empty batch among others": {{}, {{Key: "x", Value: []byte("y")}}},
	} {
		t.Run(name, func(t *testing.T) {
			var want []storage.Op
			for _, b := range batches {
				for _, op := range b {
					if op.Value == nil && !op.Delete {
						op.Value = []byte{}
					}
					want = append(want, op)
				}
			}
			got, err := decodeOps(encodeOps(batches...))
			if err != nil {
				t.Fatalf("decodeOps = %v", err)
			}
			if len(got) != len(want) {
				t.Fatalf("got %d ops, want %d", len(got), len(want))
			}
			for i := range want {
				if got[i].Key != want[i].Key || got[i].Delete != want[i].Delete || !bytes.Equal(got[i].Value, want[i].Value) {
					t.Errorf("op %d = %+v, want %+v", i, got[i], want[i])
				}
			}
		})
	}
}

func TestDecodeOpsRejects(t *testing.T) {
	good := encodeOps([]storage.Op{{Key: "key", Value: []byte("value")}})
	for name, data := range map[string][]byte{
		"empty":            nil,
		"unknown version":  append([]byte{9}, good[1:]...),
		"truncated":        good[:len(good)-1],
		"trailing bytes":   append(bytes.Clone(good), 0),
		"bad op kind":      {1, 1, 7, 1, 'k'},
		"count too large":  {1, 100, 0, 1, 'k', 0},
		"length too large": {1, 1, 0, 50, 'k'},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeOps(data); !errors.Is(err, ErrBadEntry) {
				t.Errorf("decodeOps(%x) = %v, want ErrBadEntry", data, err)
			}
		})
	}
}

// FuzzDecodeOps: decoding never panics, and what decodes re-encodes to the
// same bytes.
func FuzzDecodeOps(f *testing.F) {
	f.Add(encodeOps([]storage.Op{{Key: "a", Value: []byte("1")}, {Key: "b", Delete: true}}))
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 1, 0, 1, 'k', 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		ops, err := decodeOps(data)
		if err != nil {
			return
		}
		if again := encodeOps(ops); !bytes.Equal(again, data) {
			// Uvarints have non-minimal encodings; compare decoded ops.
			ops2, err := decodeOps(again)
			if err != nil || !reflect.DeepEqual(ops, ops2) {
				t.Fatalf("round trip changed the ops: %v", err)
			}
		}
	})
}

func TestSnapshotHeader(t *testing.T) {
	idx, err := readHeader(bytes.NewReader(header(42)))
	if err != nil || idx != 42 {
		t.Errorf("readHeader(header(42)) = %d, %v", idx, err)
	}
	for _, bad := range [][]byte{nil, []byte("short"), []byte("NOTMAGIC12345678")} {
		if _, err := readHeader(bytes.NewReader(bad)); !errors.Is(err, ErrBadEntry) {
			t.Errorf("readHeader(%q) = %v, want ErrBadEntry", bad, err)
		}
	}
}
