package core

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/seal"
	"github.com/coffer-dev/coffer/internal/storage"
	"github.com/coffer-dev/coffer/internal/token"
)

// Operator actions that are not enveloped engine calls: httpapi serves
// them, and they go through Authorize like every other request.

// Authorize checks that tok may perform op on path (with sudo when the path
// needs it), for endpoints httpapi serves itself. A token with bound CIDRs
// is checked against the client's address in ctx (logical.WithRemoteAddr);
// without one it is refused.
func (c *Core) Authorize(ctx context.Context, tok string, op logical.Operation, path string) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.state == nil {
		return logical.ErrSealed
	}
	e, err := c.authenticate(ctx, c.state, tok, logical.RemoteAddrFrom(ctx))
	if err != nil {
		return err
	}
	return c.authorize(ctx, c.state, e, op, path)
}

// SealWithToken seals the server if tok may update sys/seal (sudo).
func (c *Core) SealWithToken(ctx context.Context, tok string) error {
	if err := c.Authorize(ctx, tok, logical.UpdateOperation, "sys/seal"); err != nil {
		return err
	}
	return c.Seal(ctx)
}

// GenerateRootStatus is sys/generate-root/attempt's answer.
type GenerateRootStatus struct {
	seal.AttemptStatus
	OTP          string
	OTPLength    int
	EncodedToken string
	Complete     bool
}

// otpLength is the length of a root token and so of the one-time pad.
const otpLength = 28

// GenerateRootInit starts an attempt to mint a new root token from a
// quorum of unseal key holders. The one-time pad the token will be XORed
// with is returned only here.
func (c *Core) GenerateRootInit(ctx context.Context) (*GenerateRootStatus, error) {
	otp, err := randomBase62(c.cfg.Rand, otpLength)
	if err != nil {
		return nil, err
	}
	st, err := c.seal.GenerateRootInit(ctx)
	if err != nil {
		return nil, sealError(err)
	}
	c.mu.Lock()
	c.pendingOTP = otp
	c.mu.Unlock()
	return &GenerateRootStatus{AttemptStatus: st, OTP: otp, OTPLength: otpLength}, nil
}

// GenerateRootState reports the attempt in progress.
func (c *Core) GenerateRootState(ctx context.Context) (GenerateRootStatus, error) {
	st, err := c.seal.GenerateRootStatus(ctx)
	return GenerateRootStatus{AttemptStatus: st, OTPLength: otpLength}, sealError(err)
}

// GenerateRootCancel drops the attempt.
func (c *Core) GenerateRootCancel() {
	c.seal.GenerateRootCancel()
	c.mu.Lock()
	c.pendingOTP = ""
	c.mu.Unlock()
}

// GenerateRootUpdate adds a share; on the last one it mints a root token
// and returns it XORed with the one-time pad, base64 (raw std encoding),
// as Vault does.
func (c *Core) GenerateRootUpdate(ctx context.Context, nonce string, key []byte) (*GenerateRootStatus, error) {
	st, done, err := c.seal.GenerateRootUpdate(ctx, nonce, key)
	if err != nil {
		return nil, sealError(err)
	}
	out := &GenerateRootStatus{AttemptStatus: st, OTPLength: otpLength}
	if !done {
		return out, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	otp := c.pendingOTP
	c.pendingOTP = ""
	if c.state == nil {
		return nil, logical.ErrSealed
	}
	tok, _, err := c.state.tokens.Create(ctx, nil, token.CreateRequest{
		Policies:    []string{"root"},
		DisplayName: "root",
		Path:        "auth/token/root",
	})
	if err != nil {
		return nil, fmt.Errorf("core: create root token: %w", err)
	}
	if len(otp) != len(tok) {
		return nil, errors.New("core: one-time pad and token lengths differ")
	}
	x := make([]byte, len(tok))
	subtle.XORBytes(x, []byte(tok), []byte(otp))
	out.EncodedToken = base64.RawStdEncoding.EncodeToString(x)
	out.Complete = true
	return out, nil
}

// RekeyInit, RekeyUpdate, RekeyCancel and RekeyStatus replace the unseal
// key shares; see the seal package.
func (c *Core) RekeyInit(ctx context.Context, n, t int) (seal.RekeyStatus, error) {
	st, err := c.seal.RekeyInit(ctx, seal.RekeyRequest{SecretShares: n, SecretThreshold: t})
	return st, sealError(err)
}

// RekeyUpdate adds one of the current shares; the last returns new keys.
func (c *Core) RekeyUpdate(ctx context.Context, nonce string, key []byte) (seal.RekeyStatus, *seal.RekeyResult, error) {
	st, res, err := c.seal.RekeyUpdate(ctx, nonce, key)
	return st, res, sealError(err)
}

// RekeyCancel drops the rekey attempt.
func (c *Core) RekeyCancel() { c.seal.RekeyCancel() }

// RekeyStatus reports the rekey attempt.
func (c *Core) RekeyStatus(ctx context.Context) (seal.RekeyStatus, error) {
	st, err := c.seal.RekeyStatus(ctx)
	return st, sealError(err)
}

// Backup writes a consistent copy of the whole store to w, if tok may read
// sys/storage/backup (sudo). It returns the bytes written.
func (c *Core) Backup(ctx context.Context, tok string, w io.Writer) (int64, error) {
	if err := c.Authorize(ctx, tok, logical.ReadOperation, "sys/storage/backup"); err != nil {
		return 0, err
	}
	s, ok := c.cfg.Backend.(storage.Snapshotter)
	if !ok {
		return 0, logical.Errorf(logical.Invalid, "the %s storage cannot make online backups", c.cfg.StorageType)
	}
	return s.Snapshot(ctx, w)
}

// BackupSize estimates the size of a backup, for a progress bar; 0 when
// unknown.
func (c *Core) BackupSize() int64 {
	if s, ok := c.cfg.Backend.(interface{ SnapshotSize() int64 }); ok {
		return s.SnapshotSize()
	}
	return 0
}

type restorer interface {
	Restore(ctx context.Context, r io.Reader) error
}

// Restore replaces the whole store with a backup read from r, if tok may
// update sys/storage/restore (sudo), then seals: the server must be
// unsealed with the unseal keys of the backup.
func (c *Core) Restore(ctx context.Context, tok string, r io.Reader) error {
	if err := c.Authorize(ctx, tok, logical.UpdateOperation, "sys/storage/restore"); err != nil {
		return err
	}
	rs, ok := c.cfg.Backend.(restorer)
	if !ok {
		return logical.Errorf(logical.Invalid, "the %s storage cannot restore backups", c.cfg.StorageType)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.teardownLocked()
	c.barrier.Seal()
	c.seal.ResetUnseal()
	if err := rs.Restore(ctx, r); err != nil {
		return logical.Errorf(logical.Invalid, "restore failed, the previous data is kept and the server is sealed: %v", err)
	}
	c.logger.Info("restored a backup; the server is sealed")
	return nil
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func randomBase62(r io.Reader, n int) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, n*2)
	for len(out) < n {
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		for _, b := range buf {
			if b >= 248 { // reject to keep the distribution uniform (248 = 4*62)
				continue
			}
			out = append(out, base62[int(b)%62])
			if len(out) == n {
				break
			}
		}
	}
	return string(out), nil
}
