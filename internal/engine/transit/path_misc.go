package transit

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"

	"github.com/coffer-dev/coffer/internal/logical"
)

// maxRandomBytes is Vault's limit on one random request.
const maxRandomBytes = 128 * 1024

type randomRequest struct {
	Bytes  *logical.Int `json:"bytes"`
	Format string       `json:"format"`
	Source string       `json:"source"`
}

func encode(b []byte, format, def string) (string, error) {
	if format == "" {
		format = def
	}
	switch format {
	case "hex":
		return hex.EncodeToString(b), nil
	case "base64":
		return base64.StdEncoding.EncodeToString(b), nil
	}
	return "", userError("unsupported encoding format %q; must be \"hex\" or \"base64\"", format)
}

// random serves random[/<source>][/<bytes>]. The source (platform, seal,
// all) is accepted for compatibility; every source is the engine's Rand.
func (b *Backend) random(req *logical.Request, segs []string) (*logical.Response, error) {
	var in randomRequest
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	n := 32
	if in.Bytes != nil {
		n = int(*in.Bytes)
	}
	source := in.Source
	for _, s := range segs {
		if v, err := strconv.Atoi(s); err == nil {
			n = v
		} else {
			source = s
		}
	}
	switch source {
	case "", "platform", "seal", "all":
	default:
		return nil, userError("unsupported entropy source %q; must be \"platform\" or \"seal\", or \"all\"", source)
	}
	if n < 1 {
		return nil, userError(`"bytes" cannot be less than 1`)
	}
	if n > maxRandomBytes {
		return nil, userError(`"bytes" should be less than %d`, maxRandomBytes)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(b.rand, buf); err != nil {
		return nil, fmt.Errorf("transit: read random bytes: %w", err)
	}
	s, err := encode(buf, in.Format, "base64")
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{"random_bytes": s}}, nil
}

type hashRequest struct {
	Input     *string `json:"input"`
	Algorithm string  `json:"algorithm"`
	Format    string  `json:"format"`
}

// hash serves hash[/<algorithm>].
func (b *Backend) hash(req *logical.Request, segs []string) (*logical.Response, error) {
	var in hashRequest
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	algo := in.Algorithm
	if len(segs) == 1 {
		algo = segs[0]
	}
	if in.Input == nil {
		return nil, userError("missing input to hash")
	}
	input, err := decodeB64(*in.Input, "input")
	if err != nil {
		return nil, err
	}
	h, err := lookupHash(algo, false)
	if err != nil {
		return nil, err
	}
	if in.Format != "" && in.Format != "hex" && in.Format != "base64" {
		return nil, userError("unsupported encoding format %s; must be \"hex\" or \"base64\"", in.Format)
	}
	d := h.new()
	d.Write(input)
	s, err := encode(d.Sum(nil), in.Format, "hex")
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{"sum": s}}, nil
}
