package shamir

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"testing"
)

// counter is a deterministic "random" source: start, start+step, ...
type counter struct{ next, step byte }

func (c *counter) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = c.next
		c.next += c.step
	}
	return len(p), nil
}

// slowMul is the schoolbook reference: shift-and-add, reduce by 0x11b.
func slowMul(a, b byte) byte {
	x, y := uint16(a), uint16(b)
	var r uint16
	for y != 0 {
		if y&1 != 0 {
			r ^= x
		}
		x <<= 1
		if x&0x100 != 0 {
			x ^= 0x11b
		}
		y >>= 1
	}
	return byte(r)
}

// logExpTables builds the classic tables from the generator 3.
func logExpTables(t *testing.T) (logT [256]byte, expT [255]byte) {
	t.Helper()
	seen := map[byte]bool{}
	v := byte(1)
	for i := range 255 {
		if seen[v] {
			t.Fatalf("3 is not a generator: 3^%d repeats %#x", i, v)
		}
		seen[v] = true
		expT[i] = v
		logT[v] = byte(i)
		v = slowMul(v, 3)
	}
	if v != 1 {
		t.Fatalf("3^255 = %#x, want 1", v)
	}
	return logT, expT
}

func TestFieldAgainstReference(t *testing.T) {
	logT, expT := logExpTables(t)
	tableMul := func(a, b byte) byte {
		if a == 0 || b == 0 {
			return 0
		}
		return expT[(int(logT[a])+int(logT[b]))%255]
	}
	tableDiv := func(a, b byte) byte {
		if a == 0 {
			return 0
		}
		return expT[(int(logT[a])-int(logT[b])+255)%255]
	}
	for a := range 256 {
		for b := range 256 {
			x, y := byte(a), byte(b)
			if got, want := mul(x, y), slowMul(x, y); got != want {
				t.Fatalf("mul(%#x, %#x) = %#x, want %#x (reference)", x, y, got, want)
			}
			if got, want := mul(x, y), tableMul(x, y); got != want {
				t.Fatalf("mul(%#x, %#x) = %#x, want %#x (log/exp)", x, y, got, want)
			}
			if y == 0 {
				continue
			}
			if got, want := div(x, y), tableDiv(x, y); got != want {
				t.Fatalf("div(%#x, %#x) = %#x, want %#x (log/exp)", x, y, got, want)
			}
			if got := mul(div(x, y), y); got != x {
				t.Fatalf("div(%#x, %#x)*%#x = %#x, want %#x", x, y, y, got, x)
			}
		}
		if a == 0 {
			if got := inv(0); got != 0 {
				t.Errorf("inv(0) = %#x, want 0", got)
			}
			continue
		}
		x := byte(a)
		if got := mul(x, inv(x)); got != 1 {
			t.Errorf("%#x * inv(%#x) = %#x, want 1", x, x, got)
		}
		if got, want := inv(x), expT[(255-int(logT[x]))%255]; got != want {
			t.Errorf("inv(%#x) = %#x, want %#x (log/exp)", x, got, want)
		}
	}
	// Vault's own field test values.
	for _, c := range []struct{ a, b, mul, div byte }{{3, 7, 9, 0}, {6, 3, 10, 2}, {3, 3, 5, 1}} {
		if got := mul(c.a, c.b); got != c.mul {
			t.Errorf("mul(%d, %d) = %d, want %d", c.a, c.b, got, c.mul)
		}
		if c.div != 0 {
			if got := div(c.a, c.b); got != c.div {
				t.Errorf("div(%d, %d) = %d, want %d", c.a, c.b, got, c.div)
			}
		}
	}
}

// Frozen vectors, computed independently (Python, schoolbook GF(2^8)) with
// the coefficient order documented on Split.
func TestSplitKnownAnswers(t *testing.T) {
	for name, tc := range map[string]struct {
		secret           []byte
		parts, threshold int
		rand             io.Reader
		want             []string // hex; for 255 parts every 50th share
		every            int
	}{
		"3 of 5": {
			secret: []byte("coffer"), parts: 5, threshold: 3, rand: &counter{1, 1}, every: 1,
			want: []string{"60686569667501", "697974485f5402", "6a7e77475c5303", "472312fae19e04", "442411f5e29905"},
		},
		"2 of 3": {
			secret: []byte("coffer"), parts: 3, threshold: 2, rand: &counter{1, 1}, every: 1,
			want: []string{"626d6562607401", "616b606e6f7e02", "6069636a6a7803"},
		},
		"255 of 255": {
			secret: []byte{0x00, 0xff}, parts: 255, threshold: 255, rand: &counter{1, 7}, every: 50,
			want: []string{"09f601", "ce6d33", "ae9e65", "544597", "131bc9", "1f49fb"},
		},
		"1 of 1 is the secret itself, as in Vault": {
			secret: []byte("coffer"), parts: 1, threshold: 1, rand: &counter{}, every: 1,
			want: []string{hex.EncodeToString([]byte("coffer"))},
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			shares, err := Split(tc.secret, tc.parts, tc.threshold, tc.rand)
			if err != nil {
				t.Fatal(err)
			}
			if len(shares) != tc.parts {
				t.Fatalf("got %d shares, want %d", len(shares), tc.parts)
			}
			var got []string
			for i := 0; i < len(shares); i += tc.every {
				got = append(got, hex.EncodeToString(shares[i]))
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d sampled shares, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("share %d = %s, want %s", i*tc.every, got[i], tc.want[i])
				}
			}
			back, err := Combine(shares[:tc.threshold])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, tc.secret) {
				t.Errorf("Combine = %x, want %x", back, tc.secret)
			}
		})
	}
}

func TestEverySubsetOf3Of5(t *testing.T) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	shares, err := Split(secret, 5, 3, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for mask := 1; mask < 1<<5; mask++ {
		var subset [][]byte
		for i := range 5 {
			if mask&(1<<i) != 0 {
				subset = append(subset, shares[i])
			}
		}
		got, err := Combine(subset)
		switch {
		case len(subset) >= 3:
			if err != nil || !bytes.Equal(got, secret) {
				t.Errorf("subset %05b: Combine = (%x, %v), want the secret", mask, got, err)
			}
		case len(subset) == 1:
			// One part is taken as a 1-of-1 key: returned as is.
			if err != nil || bytes.Equal(got, secret) {
				t.Errorf("subset %05b: Combine = (%x, %v), want the share unchanged", mask, got, err)
			}
		default:
			if err != nil {
				t.Errorf("subset %05b: Combine error %v", mask, err)
			} else if bytes.Equal(got, secret) {
				t.Errorf("subset %05b: %d shares rebuilt the secret, threshold is 3", mask, len(subset))
			}
		}
	}
	// Order does not matter.
	got, err := Combine([][]byte{shares[4], shares[0], shares[2]})
	if err != nil || !bytes.Equal(got, secret) {
		t.Errorf("Combine(4,0,2) = (%x, %v), want the secret", got, err)
	}
}

func TestSplitRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		secret           []byte
		parts, threshold int
		want             error
	}{
		"threshold above parts":        {[]byte("s"), 3, 4, ErrInvalidParams},
		"threshold 1 of several":       {[]byte("s"), 3, 1, ErrInvalidParams},
		"threshold 0":                  {[]byte("s"), 1, 0, ErrInvalidParams},
		"parts 0":                      {[]byte("s"), 0, 0, ErrInvalidParams},
		"more than 255 parts":          {[]byte("s"), 256, 2, ErrInvalidParams},
		"negative threshold":           {[]byte("s"), 2, -1, ErrInvalidParams},
		"empty secret":                 {nil, 3, 2, ErrEmptySecret},
		"255 of 255 is the upper edge": {[]byte("s"), 255, 255, nil},
		"2 of 2 is the lower edge":     {[]byte("s"), 2, 2, nil},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Split(tc.secret, tc.parts, tc.threshold, rand.Reader)
			if !errors.Is(err, tc.want) {
				t.Errorf("Split(%d of %d) = %v, want %v", tc.threshold, tc.parts, err, tc.want)
			}
		})
	}
}

func TestSplitShortRandom(t *testing.T) {
	_, err := Split([]byte("secret"), 3, 2, bytes.NewReader([]byte{1, 2}))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Split with 2 random bytes = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestCombineRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		parts [][]byte
		want  error
	}{
		"no parts":               {nil, ErrNoParts},
		"one empty part":         {[][]byte{{}}, ErrShortPart},
		"parts of one byte":      {[][]byte{{1}, {2}}, ErrShortPart},
		"lengths differ":         {[][]byte{{1, 2, 1}, {1, 2}}, ErrLengthMismatch},
		"same x twice":           {[][]byte{{1, 2, 7}, {3, 4, 7}}, ErrDuplicatePart},
		"x of zero":              {[][]byte{{1, 2, 0}, {3, 4, 1}}, ErrDuplicatePart},
		"same part twice":        {[][]byte{{9, 1}, {9, 1}}, ErrDuplicatePart},
		"two well-formed shares": {[][]byte{{9, 1}, {8, 2}}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Combine(tc.parts); !errors.Is(err, tc.want) {
				t.Errorf("Combine = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestCorruptedShareChangesSecret(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	shares, err := Split(secret, 5, 3, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	shares[1][4] ^= 0x01
	got, err := Combine(shares[:3])
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(got, secret) {
		t.Error("a flipped bit in a share still gave the secret")
	}
}

func FuzzCombine(f *testing.F) {
	f.Add([]byte{1, 2, 1}, []byte{3, 4, 2}, []byte{5, 6, 3})
	f.Add([]byte{}, []byte{0}, []byte{0, 0})
	f.Add([]byte{7}, []byte{7}, []byte{7})
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		for _, parts := range [][][]byte{{a}, {a, b}, {a, b, c}} {
			got, err := Combine(parts)
			if err == nil && len(parts) > 1 && len(got) != len(a)-1 {
				t.Fatalf("Combine gave %d bytes from parts of %d", len(got), len(a))
			}
		}
		// Splitting any non-empty input and combining gives it back.
		if len(a) > 0 && len(a) < 64 {
			shares, err := Split(a, 3, 2, &counter{next: byte(len(b)), step: 3})
			if err != nil {
				t.Fatal(err)
			}
			got, err := Combine(shares[1:])
			if err != nil || !bytes.Equal(got, a) {
				t.Fatalf("round trip = (%x, %v), want %x", got, err, a)
			}
		}
	})
}
