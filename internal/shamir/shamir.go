// Package shamir implements Shamir's secret sharing over GF(2^8), byte for
// byte compatible with HashiCorp Vault's shamir package, so unseal keys made
// by Vault combine here and the other way round.
//
// # How it works
//
// Every byte of the secret is the constant term of its own random
// polynomial of degree threshold-1 over GF(2^8) (the AES field: reduction
// polynomial x^8+x^4+x^3+x+1, 0x11b). A share holds the values of all those
// polynomials at one non-zero point x, followed by x itself:
//
//	share = y_0 y_1 ... y_{n-1} x        (len(secret)+1 bytes)
//
// Any threshold shares determine the polynomials, and Lagrange interpolation
// at x = 0 gives the secret back; fewer shares say nothing about it.
//
// # 1-of-1
//
// Vault does not run Shamir for a single share: its "1 of 1" unseal key is
// the key itself, without a tag byte. Split(secret, 1, 1) does the same (it
// returns a copy of the secret), and Combine of exactly one part returns
// that part unchanged.
//
// # Side channels
//
// The field arithmetic is branch-free and uses no lookup tables, so its
// timing does not depend on the secret; the tests check it against the
// classic log/exp tables (generator 3) and a bit-by-bit reference.
package shamir

import (
	"errors"
	"fmt"
	"io"
)

// ShareOverhead is how many bytes longer than the secret a share is when
// threshold is at least 2 (the trailing x-coordinate byte).
const ShareOverhead = 1

// MaxParts is the largest number of shares (the non-zero points of GF(2^8)).
const MaxParts = 255

// Errors returned by Split and Combine. They carry no share or secret bytes.
var (
	// ErrInvalidParams: threshold or parts out of range.
	ErrInvalidParams = errors.New("shamir: invalid parts or threshold")
	// ErrEmptySecret: Split was given an empty secret.
	ErrEmptySecret = errors.New("shamir: cannot split an empty secret")
	// ErrNoParts: Combine was given no parts.
	ErrNoParts = errors.New("shamir: no parts to combine")
	// ErrShortPart: a part is too short to hold a value and its x-coordinate.
	ErrShortPart = errors.New("shamir: part too short")
	// ErrLengthMismatch: the parts are not all the same length.
	ErrLengthMismatch = errors.New("shamir: parts differ in length")
	// ErrDuplicatePart: two parts have the same x-coordinate, or one has x = 0.
	ErrDuplicatePart = errors.New("shamir: duplicate or invalid part x-coordinate")
)

// Split divides secret into parts shares, any threshold of which rebuild it
// with Combine. It requires 2 <= threshold <= parts <= 255, or
// threshold == parts == 1 (then the single share is a copy of the secret,
// as in Vault). Randomness comes from rand, read in full once:
// len(secret)*(threshold-1) bytes, the coefficients of degree 1 to
// threshold-1 of each byte's polynomial in turn. Share i (from 0) has
// x-coordinate i+1. A failing rand is returned wrapped.
func Split(secret []byte, parts, threshold int, rand io.Reader) ([][]byte, error) {
	switch {
	case parts < 1 || parts > MaxParts,
		threshold < 1 || threshold > parts,
		threshold == 1 && parts != 1:
		return nil, fmt.Errorf("%w: %d of %d (want 2 <= threshold <= parts <= %d, or 1 of 1)",
			ErrInvalidParams, threshold, parts, MaxParts)
	case len(secret) == 0:
		return nil, ErrEmptySecret
	}
	if parts == 1 {
		return [][]byte{append([]byte(nil), secret...)}, nil
	}

	degree := threshold - 1
	coeffs := make([]byte, len(secret)*degree)
	defer clear(coeffs)
	if _, err := io.ReadFull(rand, coeffs); err != nil {
		return nil, fmt.Errorf("shamir: reading randomness: %w", err)
	}

	out := make([][]byte, parts)
	for i := range out {
		out[i] = make([]byte, len(secret)+ShareOverhead)
		out[i][len(secret)] = byte(i + 1)
	}
	for b, s := range secret {
		c := coeffs[b*degree : (b+1)*degree]
		for i := range out {
			x := byte(i + 1)
			// Horner: ((c_d x + c_{d-1}) x + ...) x + s
			y := byte(0)
			for k := degree - 1; k >= 0; k-- {
				y = mul(y, x) ^ c[k]
			}
			out[i][b] = mul(y, x) ^ s
		}
	}
	return out, nil
}

// Combine rebuilds a secret from shares made by Split (or by Vault). It
// checks only the shape of its input: given shares of different secrets, or
// fewer than the threshold, it returns a wrong secret without error, so the
// caller must verify the result (for example by decrypting with it). One
// part is returned unchanged (the 1-of-1 case). It never panics.
func Combine(parts [][]byte) ([]byte, error) {
	if len(parts) == 0 {
		return nil, ErrNoParts
	}
	if len(parts) == 1 {
		if len(parts[0]) == 0 {
			return nil, ErrShortPart
		}
		return append([]byte(nil), parts[0]...), nil
	}
	n := len(parts[0])
	if n < 1+ShareOverhead {
		return nil, ErrShortPart
	}
	xs := make([]byte, len(parts))
	var seen [256]bool
	for i, p := range parts {
		if len(p) != n {
			return nil, ErrLengthMismatch
		}
		x := p[n-1]
		if x == 0 || seen[x] {
			return nil, ErrDuplicatePart
		}
		seen[x] = true
		xs[i] = x
	}

	// Lagrange basis at 0: l_i = prod_{j != i} x_j / (x_i - x_j); in
	// characteristic 2 subtraction is XOR. The x's are public.
	basis := make([]byte, len(parts))
	for i := range parts {
		l := byte(1)
		for j := range parts {
			if i != j {
				l = mul(l, div(xs[j], xs[i]^xs[j]))
			}
		}
		basis[i] = l
	}

	secret := make([]byte, n-1)
	for b := range secret {
		var v byte
		for i, p := range parts {
			v ^= mul(p[b], basis[i])
		}
		secret[b] = v
	}
	return secret, nil
}

// mul multiplies in GF(2^8) modulo 0x11b without branches or tables.
func mul(a, b byte) byte {
	var r byte
	for i := 7; i >= 0; i-- {
		// r = r*x (reduced) + a*(bit i of b)
		r = (r << 1) ^ (-(r >> 7) & 0x1b) ^ (-(b >> uint(i) & 1) & a)
	}
	return r
}

// inv returns the multiplicative inverse of a (a^254); inv(0) is 0.
func inv(a byte) byte {
	// a^254 = a^(2+4+8+16+32+64+128)
	r := byte(1)
	sq := a
	for range 7 {
		sq = mul(sq, sq) // a^2, a^4, ..., a^128
		r = mul(r, sq)
	}
	return r
}

// div returns a / b in GF(2^8). b must not be 0 (Combine guarantees it);
// div(a, 0) is 0.
func div(a, b byte) byte {
	return mul(a, inv(b))
}
