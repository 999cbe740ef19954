package httpapi

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/coffer-dev/coffer/internal/core"
	"github.com/coffer-dev/coffer/internal/logical"
	"github.com/coffer-dev/coffer/internal/seal"
	"github.com/coffer-dev/coffer/internal/version"
)

// decodeKey reads an unseal key share given in hex or base64, as Vault
// accepts both.
func decodeKey(s string) ([]byte, error) {
	if s == "" {
		return nil, logical.Errorf(logical.Invalid, "missing key")
	}
	if b, err := hex.DecodeString(s); err == nil {
		return b, nil
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return nil, logical.Errorf(logical.Invalid, "'key' must be a valid hex or base64 string")
}

func (s *server) initStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.core.SealStatus(r.Context())
	if err != nil {
		writeError(w, s.logger, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"initialized": st.Initialized})
}

type initRequest struct {
	SecretShares      logical.Int `json:"secret_shares"`
	SecretThreshold   logical.Int `json:"secret_threshold"`
	RecoveryShares    logical.Int `json:"recovery_shares"`
	RecoveryThreshold logical.Int `json:"recovery_threshold"`
	PGPKeys           []string    `json:"pgp_keys"`
	RecoveryPGPKeys   []string    `json:"recovery_pgp_keys"`
}

func encodeKeys(keys [][]byte) (hexKeys, b64Keys []string) {
	hexKeys, b64Keys = make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		hexKeys[i] = hex.EncodeToString(k)
		b64Keys[i] = base64.StdEncoding.EncodeToString(k)
	}
	return hexKeys, b64Keys
}

func (s *server) initialize(w http.ResponseWriter, r *http.Request) {
	var req initRequest
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, s.logger, err)
		return
	}
	if len(req.PGPKeys) > 0 || len(req.RecoveryPGPKeys) > 0 {
		writeError(w, s.logger, logical.Errorf(logical.Invalid, "PGP-encrypted keys are not supported yet: send no pgp_keys"))
		return
	}
	res, err := s.core.Init(r.Context(), core.InitRequest{
		SecretShares: int(req.SecretShares), SecretThreshold: int(req.SecretThreshold),
		RecoveryShares: int(req.RecoveryShares), RecoveryThreshold: int(req.RecoveryThreshold),
	})
	if err != nil && res == nil {
		writeError(w, s.logger, err)
		return
	}
	hexKeys, b64Keys := encodeKeys(res.Keys)
	body := map[string]any{
		"keys":        hexKeys,
		"keys_base64": b64Keys,
		"root_token":  res.RootToken,
	}
	if len(res.RecoveryKeys) > 0 {
		body["recovery_keys"], body["recovery_keys_base64"] = encodeKeys(res.RecoveryKeys)
	}
	if err != nil {
		// The seal was initialized but something after failed: the keys
		// are the only way in, so they are returned with the error.
		body["errors"] = []string{err.Error()}
		writeJSON(w, http.StatusInternalServerError, body)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// sealStatusBody is Vault's sys/seal-status (and sys/unseal) answer.
type sealStatusBody struct {
	Type         string `json:"type"`
	Initialized  bool   `json:"initialized"`
	Sealed       bool   `json:"sealed"`
	T            int    `json:"t"`
	N            int    `json:"n"`
	Progress     int    `json:"progress"`
	Nonce        string `json:"nonce"`
	Version      string `json:"version"`
	BuildDate    string `json:"build_date"`
	Migration    bool   `json:"migration"`
	ClusterName  string `json:"cluster_name,omitempty"`
	ClusterID    string `json:"cluster_id,omitempty"`
	RecoverySeal bool   `json:"recovery_seal"`
	StorageType  string `json:"storage_type"`
	// SealedReason is Coffer's: why auto-unseal has not opened the server.
	SealedReason string `json:"sealed_reason,omitempty"`
}

func (s *server) sealStatusBody(st seal.Status) sealStatusBody {
	name, id := s.core.ClusterInfo()
	typ := st.Type
	if typ == "" {
		typ = "shamir"
	}
	return sealStatusBody{
		Type:         typ,
		Initialized:  st.Initialized,
		Sealed:       st.Sealed,
		T:            st.T,
		N:            st.N,
		Progress:     st.Progress,
		Nonce:        st.Nonce,
		Version:      version.Version,
		Migration:    st.Migration,
		RecoverySeal: st.RecoverySeal,
		SealedReason: st.Reason,
		ClusterName:  name,
		ClusterID:    id,
		StorageType:  s.core.StorageType(),
	}
}

func (s *server) sealStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.core.SealStatus(r.Context())
	if err != nil {
		writeError(w, s.logger, err)
		return
	}
	writeJSON(w, http.StatusOK, s.sealStatusBody(st))
}

type unsealRequest struct {
	Key     string       `json:"key"`
	Reset   logical.Bool `json:"reset"`
	Migrate logical.Bool `json:"migrate"`
}

func (s *server) unseal(w http.ResponseWriter, r *http.Request) {
	var req unsealRequest
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, s.logger, err)
		return
	}
	if req.Reset {
		s.core.ResetUnseal()
		s.sealStatus(w, r)
		return
	}
	key, err := decodeKey(req.Key)
	if err != nil {
		writeError(w, s.logger, err)
		return
	}
	unseal := s.core.Unseal
	if req.Migrate {
		unseal = s.core.UnsealMigrate
	}
	st, err := unseal(r.Context(), key)
	if err != nil {
		writeError(w, s.logger, err)
		return
	}
	writeJSON(w, http.StatusOK, s.sealStatusBody(st))
}

func (s *server) seal(w http.ResponseWriter, r *http.Request) {
	if err := s.core.SealWithToken(clientCtx(r), requestToken(r)); err != nil {
		writeError(w, s.logger, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// health answers sys/health with Vault's status codes: 200 active, 429
// standby, 501 not initialized, 503 sealed, each overridable by a query
// flag (activecode, standbycode, sealedcode, uninitcode, ...), and
// standbyok/perfstandbyok turning a standby's answer into 200.
func (s *server) health(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	code := func(name string, def int) int {
		if v := q.Get(name); v != "" {
			if n, err := strconv.Atoi(v); err == nil && n >= 100 && n < 600 {
				return n
			}
		}
		return def
	}
	st, err := s.core.SealStatus(r.Context())
	if err != nil {
		writeError(w, s.logger, err)
		return
	}
	status := code("activecode", http.StatusOK)
	standby := s.cluster != nil && !s.cluster.Active()
	switch {
	case !st.Initialized:
		status = code("uninitcode", http.StatusNotImplemented)
	case st.Sealed:
		status = code("sealedcode", http.StatusServiceUnavailable)
	case standby && q.Get("standbyok") != "true":
		status = code("standbycode", http.StatusTooManyRequests)
	}
	name, id := s.core.ClusterInfo()
	body := map[string]any{
		"initialized":                  st.Initialized,
		"sealed":                       st.Sealed,
		"standby":                      standby && st.Initialized && !st.Sealed,
		"performance_standby":          false,
		"replication_performance_mode": "disabled",
		"replication_dr_mode":          "disabled",
		"server_time_utc":              time.Now().Unix(),
		"version":                      version.Version,
	}
	if id != "" {
		body["cluster_name"], body["cluster_id"] = name, id
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, body)
}

func (s *server) leader(w http.ResponseWriter, r *http.Request) {
	if s.core.Sealed() {
		writeError(w, s.logger, logical.ErrSealed)
		return
	}
	if s.cluster != nil {
		s.raftLeader(w, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"ha_enabled":                          false,
		"is_self":                             false,
		"active_time":                         "0001-01-01T00:00:00Z",
		"leader_address":                      "",
		"leader_cluster_address":              "",
		"performance_standby":                 false,
		"performance_standby_last_remote_wal": 0,
	})
}

// generateRootJSON is Vault's sys/generate-root answer. The one-time pad
// is in st only when the attempt was just started; the encoded token only
// when the last share completed it.
func generateRootJSON(st *core.GenerateRootStatus) map[string]any {
	return map[string]any{
		"started":            st.Started,
		"nonce":              st.Nonce,
		"progress":           st.Progress,
		"required":           st.Required,
		"complete":           st.Complete,
		"encoded_token":      st.EncodedToken,
		"encoded_root_token": st.EncodedToken,
		"pgp_fingerprint":    "",
		"otp":                st.OTP,
		"otp_length":         st.OTPLength,
	}
}

func (s *server) generateRootStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.core.GenerateRootState(r.Context())
	if err != nil {
		writeError(w, s.logger, err)
		return
	}
	writeJSON(w, http.StatusOK, generateRootJSON(&st))
}

type generateRootInitRequest struct {
	OTP    string `json:"otp"`
	PGPKey string `json:"pgp_key"`
}

func (s *server) generateRootInit(w http.ResponseWriter, r *http.Request) {
	var req generateRootInitRequest
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, s.logger, err)
		return
	}
	if req.PGPKey != "" || req.OTP != "" {
		writeError(w, s.logger, logical.Errorf(logical.Invalid, "only server-generated one-time pads are supported: send no otp or pgp_key"))
		return
	}
	st, err := s.core.GenerateRootInit(r.Context())
	if err != nil {
		writeError(w, s.logger, err)
		return
	}
	writeJSON(w, http.StatusOK, generateRootJSON(st))
}

func (s *server) generateRootCancel(w http.ResponseWriter, r *http.Request) {
	s.core.GenerateRootCancel()
	w.WriteHeader(http.StatusNoContent)
}

type shareRequest struct {
	Key   string `json:"key"`
	Nonce string `json:"nonce"`
}

func (s *server) generateRootUpdate(w http.ResponseWriter, r *http.Request) {
	var req shareRequest
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, s.logger, err)
		return
	}
	key, err := decodeKey(req.Key)
	if err != nil {
		writeError(w, s.logger, err)
		return
	}
	st, err := s.core.GenerateRootUpdate(r.Context(), req.Nonce, key)
	if err != nil {
		writeError(w, s.logger, err)
		return
	}
	writeJSON(w, http.StatusOK, generateRootJSON(st))
}

func rekeyJSON(st seal.RekeyStatus) map[string]any {
	return map[string]any{
		"started":               st.Started,
		"nonce":                 st.Nonce,
		"t":                     st.SecretThreshold,
		"n":                     st.SecretShares,
		"progress":              st.Progress,
		"required":              st.Required,
		"pgp_fingerprints":      nil,
		"backup":                false,
		"verification_required": false,
	}
}

func (s *server) rekeyStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.core.RekeyStatus(r.Context())
	if err != nil {
		writeError(w, s.logger, err)
		return
	}
	writeJSON(w, http.StatusOK, rekeyJSON(st))
}

type rekeyInitRequest struct {
	SecretShares    logical.Int `json:"secret_shares"`
	SecretThreshold logical.Int `json:"secret_threshold"`
}

func (s *server) rekeyInit(w http.ResponseWriter, r *http.Request) {
	var req rekeyInitRequest
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, s.logger, err)
		return
	}
	st, err := s.core.RekeyInit(r.Context(), int(req.SecretShares), int(req.SecretThreshold))
	if err != nil {
		writeError(w, s.logger, err)
		return
	}
	writeJSON(w, http.StatusOK, rekeyJSON(st))
}

func (s *server) rekeyCancel(w http.ResponseWriter, r *http.Request) {
	s.core.RekeyCancel()
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) rekeyUpdate(w http.ResponseWriter, r *http.Request) {
	var req shareRequest
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, s.logger, err)
		return
	}
	key, err := decodeKey(req.Key)
	if err != nil {
		writeError(w, s.logger, err)
		return
	}
	st, res, err := s.core.RekeyUpdate(r.Context(), req.Nonce, key)
	if err != nil {
		writeError(w, s.logger, err)
		return
	}
	if res == nil {
		writeJSON(w, http.StatusOK, rekeyJSON(st))
		return
	}
	hexKeys, b64Keys := encodeKeys(res.Keys)
	writeJSON(w, http.StatusOK, map[string]any{
		"complete":              true,
		"nonce":                 req.Nonce,
		"keys":                  hexKeys,
		"keys_base64":           b64Keys,
		"backup":                false,
		"pgp_fingerprints":      nil,
		"verification_required": false,
	})
}

func (s *server) metrics(w http.ResponseWriter, r *http.Request) {
	if err := s.core.Authorize(clientCtx(r), requestToken(r), logical.ReadOperation, "sys/metrics"); err != nil {
		writeError(w, s.logger, err)
		return
	}
	if f := r.URL.Query().Get("format"); f != "" && f != "prometheus" {
		writeError(w, s.logger, logical.Errorf(logical.Invalid, "unsupported metrics format %q: use format=prometheus", f))
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	if err := s.core.WriteMetrics(w); err != nil {
		s.logger.Warn("write metrics", "err", err)
	}
}

// backup streams a consistent copy of the store (Coffer-only endpoint).
func (s *server) backup(w http.ResponseWriter, r *http.Request) {
	if err := s.core.Authorize(clientCtx(r), requestToken(r), logical.ReadOperation, "sys/storage/backup"); err != nil {
		writeError(w, s.logger, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	// The size is an estimate taken before the copy (writes may go on), so
	// it is a hint for progress bars, not a Content-Length. Completeness is
	// proven by the trailer: the SHA-256 of what was sent, set only after
	// the whole copy succeeded.
	if n := s.core.BackupSize(); n > 0 {
		w.Header().Set("X-Coffer-Backup-Size", fmt.Sprint(n))
	}
	w.Header().Set("Trailer", "X-Coffer-Backup-Sha256")
	h := sha256.New()
	if _, err := s.core.Backup(clientCtx(r), requestToken(r), io.MultiWriter(w, h)); err != nil {
		s.logger.Error("backup failed", "err", err)
		return
	}
	w.Header().Set("X-Coffer-Backup-Sha256", hex.EncodeToString(h.Sum(nil)))
}

// maxRestoreSize bounds a restore upload.
const maxRestoreSize = 64 << 30

func (s *server) restore(w http.ResponseWriter, r *http.Request) {
	body := io.LimitReader(r.Body, maxRestoreSize)
	if err := s.core.Restore(clientCtx(r), requestToken(r), body); err != nil {
		writeError(w, s.logger, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
