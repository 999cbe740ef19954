package transit

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/coffer-dev/coffer/internal/logical"
)

// lenientString reads a JSON string or number as a string (salt_length may
// be "auto", "hash", 32 or "32").
type lenientString string

func (s *lenientString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return &logical.FieldError{Want: "string"}
		}
		*s = lenientString(v)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return &logical.FieldError{Want: "string or number"}
	}
	*s = lenientString(n)
	return nil
}

// signItem is one sign, verify or hmac input, alone or in batch_input.
type signItem struct {
	Input     *string `json:"input"`
	Context   string  `json:"context"`
	Signature string  `json:"signature"`
	HMAC      string  `json:"hmac"`
	Reference string  `json:"reference"`
}

type signRequest struct {
	signItem
	KeyVersion          logical.Int   `json:"key_version"`
	HashAlgorithm       string        `json:"hash_algorithm"`
	Algorithm           string        `json:"algorithm"`
	Prehashed           logical.Bool  `json:"prehashed"`
	SignatureAlgorithm  string        `json:"signature_algorithm"`
	MarshalingAlgorithm string        `json:"marshaling_algorithm"`
	SaltLength          lenientString `json:"salt_length"`
	BatchInput          []signItem    `json:"batch_input"`
}

func (r *signRequest) items() ([]signItem, bool) {
	if r.BatchInput != nil {
		return r.BatchInput, true
	}
	return []signItem{r.signItem}, false
}

// hash returns the algorithm: from the URL, else hash_algorithm, else the
// older "algorithm" field.
func (r *signRequest) hash(url string) string {
	for _, s := range []string{url, r.HashAlgorithm, r.Algorithm} {
		if s != "" {
			return s
		}
	}
	return ""
}

func (r *signRequest) opts(url string) *signOpts {
	return &signOpts{
		hash: r.hash(url), prehashed: bool(r.Prehashed), sigAlgo: r.SignatureAlgorithm,
		marshaling: r.MarshalingAlgorithm, saltLength: string(r.SaltLength),
	}
}

type signResult struct {
	Signature  string `json:"signature,omitempty"`
	HMAC       string `json:"hmac,omitempty"`
	Valid      *bool  `json:"valid,omitempty"`
	KeyVersion int    `json:"key_version,omitempty"`
	Reference  string `json:"reference"`
	Error      string `json:"error,omitempty"`
}

func signFail(it *signItem, err error) signResult {
	return signResult{Reference: it.Reference, Error: err.Error()}
}

func (it *signItem) input() ([]byte, error) {
	if it.Input == nil {
		return nil, userError("missing input")
	}
	return decodeB64(*it.Input, "input")
}

// signingKey returns the key for sign and verify.
func (b *Backend) signingKey(ctx context.Context, name string) (*policy, error) {
	p, err := b.get(ctx, name)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, userError("signing key not found")
	}
	return p, nil
}

func (b *Backend) sign(ctx context.Context, req *logical.Request, name, urlAlgo string) (*logical.Response, error) {
	var in signRequest
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	items, batch := in.items()
	p, err := b.signingKey(ctx, name)
	if err != nil {
		return nil, err
	}
	if !p.typ.supportsSigning() {
		return nil, userError("key type %s does not support signing", p.typ)
	}
	o := in.opts(urlAlgo)
	return batchResponse(items, batch, func(it *signItem) (signResult, error) {
		input, err := it.input()
		if err != nil {
			return signResult{}, err
		}
		kctx, err := decodeB64(it.Context, "context")
		if err != nil {
			return signResult{}, err
		}
		sig, ver, err := p.sign(b.rand, int(in.KeyVersion), kctx, input, o)
		return signResult{Signature: sig, KeyVersion: ver, Reference: it.Reference}, err
	}, signFail, func(r signResult) any {
		return map[string]any{"signature": r.Signature, "key_version": r.KeyVersion}
	})
}

func (b *Backend) verify(ctx context.Context, req *logical.Request, name, urlAlgo string) (*logical.Response, error) {
	var in signRequest
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	items, batch := in.items()
	p, err := b.signingKey(ctx, name)
	if err != nil {
		return nil, err
	}
	o := in.opts(urlAlgo)
	return batchResponse(items, batch, func(it *signItem) (signResult, error) {
		input, err := it.input()
		if err != nil {
			return signResult{}, err
		}
		var valid bool
		switch {
		case it.Signature != "" && it.HMAC != "":
			return signResult{}, userError("provide one of 'signature' or 'hmac', not both")
		case it.HMAC != "":
			valid, err = p.verifyHMAC(it.HMAC, o.hash, input)
		case it.Signature != "":
			var kctx []byte
			if kctx, err = decodeB64(it.Context, "context"); err != nil {
				return signResult{}, err
			}
			valid, err = p.verify(it.Signature, kctx, input, o)
		default:
			return signResult{}, userError("missing signature or hmac")
		}
		return signResult{Valid: &valid, Reference: it.Reference}, err
	}, signFail, func(r signResult) any {
		return map[string]any{"valid": *r.Valid}
	})
}

func (b *Backend) hmac(ctx context.Context, req *logical.Request, name, urlAlgo string) (*logical.Response, error) {
	var in signRequest
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	items, batch := in.items()
	p, err := b.get(ctx, name)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, userError("encryption key not found")
	}
	algo := in.hash(urlAlgo)
	return batchResponse(items, batch, func(it *signItem) (signResult, error) {
		input, err := it.input()
		if err != nil {
			return signResult{}, err
		}
		mac, err := p.computeHMAC(int(in.KeyVersion), algo, input)
		return signResult{HMAC: mac, Reference: it.Reference}, err
	}, signFail, func(r signResult) any {
		return map[string]any{"hmac": r.HMAC}
	})
}
