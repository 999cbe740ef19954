package api

import (
	"context"
	"io"
	"net/http"
)

// Read GETs path. A missing path gives an *Error matching ErrNotFound.
func (c *Client) Read(ctx context.Context, path string) (*Response, error) {
	return c.Do(ctx, http.MethodGet, path, nil)
}

// Write PUTs data to path; the Response is empty when the server answers
// 204.
func (c *Client) Write(ctx context.Context, path string, data map[string]any) (*Response, error) {
	return c.Do(ctx, http.MethodPut, path, data)
}

// List sends LIST to path and returns the keys from data.keys (folders
// end in "/"). An empty folder gives an *Error matching ErrNotFound, as
// in Vault.
func (c *Client) List(ctx context.Context, path string) ([]string, error) {
	r, err := c.Do(ctx, "LIST", path, nil)
	if err != nil {
		return nil, err
	}
	return Strings(r.Data["keys"]), nil
}

// Delete sends DELETE to path.
func (c *Client) Delete(ctx context.Context, path string) (*Response, error) {
	return c.Do(ctx, http.MethodDelete, path, nil)
}

// Strings converts a decoded JSON array of strings ([]any) to []string,
// skipping elements that are not strings. Other values give nil.
func Strings(v any) []string {
	arr, ok := v.([]any)
	if !ok {
		if s, ok := v.([]string); ok {
			return s
		}
		return nil
	}
	out := make([]string, 0, len(arr))
	for _, e := range arr {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// SealStatus is the body of sys/seal-status and sys/unseal.
type SealStatus struct {
	Type         string `json:"type"`
	Initialized  bool   `json:"initialized"`
	Sealed       bool   `json:"sealed"`
	T            int    `json:"t"`
	N            int    `json:"n"`
	Progress     int    `json:"progress"`
	Nonce        string `json:"nonce"`
	Version      string `json:"version"`
	BuildDate    string `json:"build_date,omitempty"`
	Migration    bool   `json:"migration"`
	ClusterName  string `json:"cluster_name,omitempty"`
	ClusterID    string `json:"cluster_id,omitempty"`
	RecoverySeal bool   `json:"recovery_seal"`
	StorageType  string `json:"storage_type,omitempty"`
}

// SealStatus reads sys/seal-status, which needs no token.
func (c *Client) SealStatus(ctx context.Context) (*SealStatus, error) {
	var s SealStatus
	if err := c.RawJSON(ctx, http.MethodGet, "sys/seal-status", nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Unseal submits one unseal key share and returns the new status. With
// reset, it discards the shares submitted so far instead (key is ignored).
func (c *Client) Unseal(ctx context.Context, key string, reset bool) (*SealStatus, error) {
	body := map[string]any{"key": key}
	if reset {
		body = map[string]any{"reset": true}
	}
	var s SealStatus
	if err := c.RawJSON(ctx, http.MethodPut, "sys/unseal", body, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// InitRequest is the body of PUT sys/init.
type InitRequest struct {
	SecretShares    int `json:"secret_shares"`
	SecretThreshold int `json:"secret_threshold"`
}

// InitResponse is the answer of PUT sys/init. It holds the unseal keys
// and the root token: never log it.
type InitResponse struct {
	Keys       []string `json:"keys"`
	KeysBase64 []string `json:"keys_base64"`
	RootToken  string   `json:"root_token"`
}

// Init initializes a new server.
func (c *Client) Init(ctx context.Context, req InitRequest) (*InitResponse, error) {
	var r InitResponse
	if err := c.RawJSON(ctx, http.MethodPut, "sys/init", req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Health is the body of sys/health.
type Health struct {
	Initialized   bool   `json:"initialized"`
	Sealed        bool   `json:"sealed"`
	Standby       bool   `json:"standby"`
	ServerTimeUTC int64  `json:"server_time_utc"`
	Version       string `json:"version"`
	ClusterName   string `json:"cluster_name,omitempty"`
	ClusterID     string `json:"cluster_id,omitempty"`
}

// Health reads sys/health. It returns the body together with the status
// code, which encodes the state (200 active, 429 standby, 501 not
// initialized, 503 sealed), so a non-200 status is not an error.
func (c *Client) Health(ctx context.Context) (*Health, int, error) {
	resp, err := c.Raw(ctx, http.MethodGet, "sys/health", nil)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	var h Health
	if err := decodeJSON(io.LimitReader(resp.Body, maxErrorBody), &h); err != nil {
		if resp.StatusCode >= 400 {
			return nil, resp.StatusCode, &Error{StatusCode: resp.StatusCode}
		}
		return nil, resp.StatusCode, err
	}
	return &h, resp.StatusCode, nil
}
