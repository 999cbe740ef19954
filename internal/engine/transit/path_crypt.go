package transit

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	"github.com/coffer-dev/coffer/internal/logical"
)

// isUserError reports whether err is the client's mistake (a
// *logical.Error), which batch requests report per item.
func isUserError(err error) bool {
	var e *logical.Error
	return errors.As(err, &e)
}

// decodeB64 decodes an optional base64 field; field names it in the error.
func decodeB64(s, field string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, userError("failed to base64-decode %s", field)
	}
	return b, nil
}

// cryptItem is one encrypt, decrypt or rewrap input, alone or in
// batch_input.
type cryptItem struct {
	Plaintext      *string     `json:"plaintext"`
	Ciphertext     *string     `json:"ciphertext"`
	Context        string      `json:"context"`
	Nonce          string      `json:"nonce"`
	KeyVersion     logical.Int `json:"key_version"`
	AssociatedData string      `json:"associated_data"`
	Reference      string      `json:"reference"`
}

type cryptRequest struct {
	cryptItem
	// For encrypt, when it creates the key.
	Type                 string       `json:"type"`
	ConvergentEncryption logical.Bool `json:"convergent_encryption"`
	BatchInput           []cryptItem  `json:"batch_input"`
}

// items returns the batch, or the single request as a batch of one.
func (r *cryptRequest) items() ([]cryptItem, bool) {
	if r.BatchInput != nil {
		return r.BatchInput, true
	}
	return []cryptItem{r.cryptItem}, false
}

type cryptResult struct {
	Ciphertext string  `json:"ciphertext,omitempty"`
	KeyVersion int     `json:"key_version,omitempty"`
	Plaintext  *string `json:"plaintext,omitempty"`
	Reference  string  `json:"reference"`
	Error      string  `json:"error,omitempty"`
}

// batchResponse runs fn over items. In a batch each user error is
// reported in its item, built by fail; otherwise it is the request's error.
// Internal errors always fail the request. single shapes the response of a
// request that was not a batch.
func batchResponse[I, R any](items []I, batch bool, fn func(*I) (R, error), fail func(*I, error) R, single func(R) any) (*logical.Response, error) {
	if batch && len(items) == 0 {
		return nil, userError("missing batch input to process")
	}
	results := make([]R, len(items))
	for i := range items {
		r, err := fn(&items[i])
		if err != nil {
			if !batch || !isUserError(err) {
				return nil, err
			}
			r = fail(&items[i], err)
		}
		results[i] = r
	}
	if !batch {
		return &logical.Response{Data: single(results[0])}, nil
	}
	return &logical.Response{Data: map[string]any{"batch_results": results}}, nil
}

func cryptFail(it *cryptItem, err error) cryptResult {
	return cryptResult{Reference: it.Reference, Error: err.Error()}
}

func (b *Backend) encrypt(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	var in cryptRequest
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	items, batch := in.items()
	if !batch && in.Plaintext == nil {
		return nil, userError("missing plaintext to encrypt")
	}
	t, ok := parseKeyType(in.Type)
	if !ok {
		return nil, userError("unknown key type %q", in.Type)
	}
	p, _, err := b.getOrCreate(ctx, name, createParams{
		typ:           t,
		derived:       len(items) > 0 && items[0].Context != "",
		convergent:    bool(in.ConvergentEncryption),
		forEncryption: true,
	})
	if err != nil {
		return nil, err
	}
	return batchResponse(items, batch, func(it *cryptItem) (cryptResult, error) {
		ct, ver, err := encryptItem(p, b.rand, it)
		return cryptResult{Ciphertext: ct, KeyVersion: ver, Reference: it.Reference}, err
	}, cryptFail, func(r cryptResult) any {
		return map[string]any{"ciphertext": r.Ciphertext, "key_version": r.KeyVersion}
	})
}

func encryptItem(p *policy, rand io.Reader, it *cryptItem) (string, int, error) {
	if it.Plaintext == nil {
		return "", 0, userError("missing plaintext to encrypt")
	}
	pt, err := decodeB64(*it.Plaintext, "plaintext")
	if err != nil {
		return "", 0, err
	}
	return sealItem(p, rand, it, pt)
}

// sealItem encrypts pt with the context, nonce, version and associated
// data of it.
func sealItem(p *policy, rand io.Reader, it *cryptItem, pt []byte) (string, int, error) {
	kctx, err := decodeB64(it.Context, "context")
	if err != nil {
		return "", 0, err
	}
	nonce, err := decodeB64(it.Nonce, "nonce")
	if err != nil {
		return "", 0, err
	}
	ad, err := decodeB64(it.AssociatedData, "associated_data")
	if err != nil {
		return "", 0, err
	}
	return p.encrypt(rand, int(it.KeyVersion), kctx, nonce, pt, ad)
}

// openItem decrypts the ciphertext of it.
func openItem(p *policy, it *cryptItem) ([]byte, error) {
	if it.Ciphertext == nil || *it.Ciphertext == "" {
		return nil, userError("missing ciphertext to decrypt")
	}
	kctx, err := decodeB64(it.Context, "context")
	if err != nil {
		return nil, err
	}
	nonce, err := decodeB64(it.Nonce, "nonce")
	if err != nil {
		return nil, err
	}
	ad, err := decodeB64(it.AssociatedData, "associated_data")
	if err != nil {
		return nil, err
	}
	pt, _, err := p.decrypt(*it.Ciphertext, kctx, nonce, ad)
	return pt, err
}

// encryptionKey returns the key for an operation that never creates one.
func (b *Backend) encryptionKey(ctx context.Context, name string) (*policy, error) {
	p, err := b.get(ctx, name)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, userError("encryption key not found")
	}
	return p, nil
}

func (b *Backend) decrypt(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	var in cryptRequest
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	items, batch := in.items()
	p, err := b.encryptionKey(ctx, name)
	if err != nil {
		return nil, err
	}
	return batchResponse(items, batch, func(it *cryptItem) (cryptResult, error) {
		pt, err := openItem(p, it)
		if err != nil {
			return cryptResult{}, err
		}
		s := base64.StdEncoding.EncodeToString(pt)
		return cryptResult{Plaintext: &s, Reference: it.Reference}, nil
	}, cryptFail, func(r cryptResult) any {
		return map[string]any{"plaintext": *r.Plaintext}
	})
}

func (b *Backend) rewrap(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	var in cryptRequest
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	items, batch := in.items()
	p, err := b.encryptionKey(ctx, name)
	if err != nil {
		return nil, err
	}
	return batchResponse(items, batch, func(it *cryptItem) (cryptResult, error) {
		pt, err := openItem(p, it)
		if err != nil {
			return cryptResult{}, err
		}
		ct, ver, err := sealItem(p, b.rand, it, pt)
		return cryptResult{Ciphertext: ct, KeyVersion: ver, Reference: it.Reference}, err
	}, cryptFail, func(r cryptResult) any {
		return map[string]any{"ciphertext": r.Ciphertext, "key_version": r.KeyVersion}
	})
}

type datakeyRequest struct {
	Context        string      `json:"context"`
	Nonce          string      `json:"nonce"`
	KeyVersion     logical.Int `json:"key_version"`
	Bits           logical.Int `json:"bits"`
	AssociatedData string      `json:"associated_data"`
}

// datakey serves datakey/<plaintext|wrapped>/<name>: a fresh random key,
// returned encrypted under the named key and, for "plaintext", also in
// the clear.
func (b *Backend) datakey(ctx context.Context, req *logical.Request, kind, name string) (*logical.Response, error) {
	if kind != "plaintext" && kind != "wrapped" {
		return nil, userError("Invalid path, must be 'plaintext' or 'wrapped'")
	}
	var in datakeyRequest
	if err := req.Decode(&in); err != nil {
		return nil, err
	}
	bits := int(in.Bits)
	switch bits {
	case 0:
		bits = 256
	case 128, 256, 512:
	default:
		return nil, userError("invalid bits; must be 128, 256, or 512")
	}
	p, err := b.encryptionKey(ctx, name)
	if err != nil {
		return nil, err
	}
	dk := make([]byte, bits/8)
	if _, err := io.ReadFull(b.rand, dk); err != nil {
		return nil, fmt.Errorf("transit: generate data key: %w", err)
	}
	ct, ver, err := sealItem(p, b.rand, &cryptItem{
		Context: in.Context, Nonce: in.Nonce, KeyVersion: in.KeyVersion, AssociatedData: in.AssociatedData,
	}, dk)
	if err != nil {
		return nil, err
	}
	data := map[string]any{"ciphertext": ct, "key_version": ver}
	if kind == "plaintext" {
		data["plaintext"] = base64.StdEncoding.EncodeToString(dk)
	}
	return &logical.Response{Data: data}, nil
}
