// Package httpapi serves Coffer's Vault-compatible HTTP API: it turns an
// HTTP request into a logical.Request for the core, and the core's answer
// back into Vault's JSON envelope, with every error mapped to its status
// through one table (statusOf).
//
// Bare-JSON system endpoints (seal-status, health, init, unseal, leader,
// generate-root, rekey, metrics, storage backup) are served here directly
// through the Core's methods, because their shapes are not the envelope.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coffer-dev/coffer/internal/core"
	"github.com/coffer-dev/coffer/internal/logical"
)

// DefaultMaxRequestSize is Vault's default request body limit, 32 MiB.
const DefaultMaxRequestSize = 32 << 20

// Config configures the handler.
type Config struct {
	// Core serves the requests. Required.
	Core *core.Core
	// MaxRequestSize caps request bodies; 0: DefaultMaxRequestSize.
	MaxRequestSize int64
	// Logger receives internal errors. nil: discard.
	Logger *slog.Logger
	// Cluster is the raft side of an HA server (raft.go); nil: a single
	// server.
	Cluster Cluster
	// Forwarder sends a standby's requests to the active node. nil:
	// http.DefaultClient.
	Forwarder *http.Client
}

type server struct {
	core      *core.Core
	maxSize   int64
	logger    *slog.Logger
	cluster   Cluster
	forwarder *http.Client
}

// Handler returns the HTTP handler of the whole API.
func Handler(cfg Config) http.Handler {
	s := &server{core: cfg.Core, maxSize: cfg.MaxRequestSize, logger: cfg.Logger, cluster: cfg.Cluster, forwarder: cfg.Forwarder}
	if s.forwarder == nil {
		s.forwarder = http.DefaultClient
	}
	if s.maxSize == 0 {
		s.maxSize = DefaultMaxRequestSize
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/sys/init", s.initStatus)
	mux.HandleFunc("PUT /v1/sys/init", s.initialize)
	mux.HandleFunc("POST /v1/sys/init", s.initialize)
	mux.HandleFunc("GET /v1/sys/seal-status", s.sealStatus)
	mux.HandleFunc("PUT /v1/sys/unseal", s.unseal)
	mux.HandleFunc("POST /v1/sys/unseal", s.unseal)
	mux.HandleFunc("PUT /v1/sys/seal", s.seal)
	mux.HandleFunc("POST /v1/sys/seal", s.seal)
	mux.HandleFunc("GET /v1/sys/health", s.health)
	mux.HandleFunc("HEAD /v1/sys/health", s.health)
	mux.HandleFunc("GET /v1/sys/leader", s.leader)
	mux.HandleFunc("GET /v1/sys/generate-root/attempt", s.generateRootStatus)
	mux.HandleFunc("PUT /v1/sys/generate-root/attempt", s.generateRootInit)
	mux.HandleFunc("POST /v1/sys/generate-root/attempt", s.generateRootInit)
	mux.HandleFunc("DELETE /v1/sys/generate-root/attempt", s.generateRootCancel)
	mux.HandleFunc("PUT /v1/sys/generate-root/update", s.generateRootUpdate)
	mux.HandleFunc("POST /v1/sys/generate-root/update", s.generateRootUpdate)
	mux.HandleFunc("GET /v1/sys/rekey/init", s.rekeyStatus)
	mux.HandleFunc("PUT /v1/sys/rekey/init", s.rekeyInit)
	mux.HandleFunc("POST /v1/sys/rekey/init", s.rekeyInit)
	mux.HandleFunc("DELETE /v1/sys/rekey/init", s.rekeyCancel)
	mux.HandleFunc("PUT /v1/sys/rekey/update", s.rekeyUpdate)
	mux.HandleFunc("POST /v1/sys/rekey/update", s.rekeyUpdate)
	mux.HandleFunc("GET /v1/sys/metrics", s.metrics)
	mux.HandleFunc("GET /v1/sys/storage/backup", s.backup)
	mux.HandleFunc("POST /v1/sys/storage/restore", s.restore)
	mux.HandleFunc("PUT /v1/sys/storage/restore", s.restore)
	mux.HandleFunc("GET /v1/sys/events/subscribe/", s.subscribe)
	s.routeRaft(mux)
	mux.HandleFunc("/v1/", s.logical)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, s.logger, logical.Errorf(logical.NotFound, "not found: the API is under /v1/"))
	})
	return s.guard(mux)
}

// guard applies what every request needs before routing: refuse unclean
// paths (so a path cannot name one thing to the policy check and another
// to the engine, and ServeMux never redirects them), refuse namespaces,
// and set the response headers every answer carries.
func (s *server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Type", "application/json")
		if hasDotSegment(r.URL.Path) || hasDotSegment(r.URL.RawPath) || strings.Contains(r.URL.Path, "//") {
			writeError(w, s.logger, logical.Errorf(logical.Invalid, "invalid request path: '.' and '..' segments and empty segments are not allowed"))
			return
		}
		if ns := strings.Trim(r.Header.Get("X-Vault-Namespace"), "/ "); ns != "" && ns != "root" {
			writeError(w, s.logger, logical.Errorf(logical.Invalid, "namespaces are not supported by this server: remove the X-Vault-Namespace header (got %q)", ns))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func hasDotSegment(p string) bool {
	for p != "" {
		seg, rest, _ := strings.Cut(p, "/")
		if seg == "." || seg == ".." || strings.EqualFold(seg, "%2e") || strings.EqualFold(seg, "%2e%2e") {
			return true
		}
		p = rest
	}
	return false
}

// clientCtx is r's context carrying the client's address, for the core's
// entry points that take no logical.Request (a token's bound CIDRs are
// checked against it).
func clientCtx(r *http.Request) context.Context {
	return logical.WithRemoteAddr(r.Context(), r.RemoteAddr)
}

// requestToken returns the client's token from X-Vault-Token or an
// Authorization: Bearer header.
func requestToken(r *http.Request) string {
	if t := r.Header.Get("X-Vault-Token"); t != "" {
		return t
	}
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// readBody reads the body within the size limit. An oversized body is a
// TooLarge error (413).
func (s *server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxSize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, logical.Errorf(logical.TooLarge, "request body is larger than the limit of %d bytes", s.maxSize)
		}
		return nil, logical.Errorf(logical.Invalid, "could not read the request body")
	}
	return body, nil
}

// decode reads the body into v (a bare endpoint's request struct).
func (s *server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	return logical.DecodeJSON(body, v)
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return string(out[:])
}

// operation maps an HTTP method (and ?list=true) to a logical operation.
func operation(r *http.Request) (logical.Operation, bool) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if v := r.URL.Query().Get("list"); v == "true" || v == "1" {
			return logical.ListOperation, true
		}
		return logical.ReadOperation, true
	case "LIST":
		return logical.ListOperation, true
	case http.MethodPost, http.MethodPut:
		return logical.UpdateOperation, true
	case http.MethodPatch:
		return logical.PatchOperation, true
	case http.MethodDelete:
		return logical.DeleteOperation, true
	}
	return "", false
}

// logical serves every enveloped path through the core.
func (s *server) logical(w http.ResponseWriter, r *http.Request) {
	op, ok := operation(r)
	if !ok {
		w.Header().Set("Allow", "GET, LIST, POST, PUT, PATCH, DELETE")
		writeError(w, s.logger, logical.Errorf(logical.Unsupported, "method %s is not supported", r.Method))
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		writeError(w, s.logger, err)
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	if op == logical.ListOperation && !strings.HasSuffix(path, "/") {
		path += "/"
	}
	req := &logical.Request{
		ID:          newRequestID(),
		Operation:   op,
		Path:        path,
		Body:        body,
		Query:       r.URL.Query(),
		ClientToken: requestToken(r),
		RemoteAddr:  r.RemoteAddr,
	}
	if v := r.Header.Get("X-Vault-Wrap-TTL"); v != "" {
		ttl, err := logical.ParseDuration(v)
		if err != nil || ttl <= 0 {
			writeError(w, s.logger, logical.Errorf(logical.Invalid, "invalid X-Vault-Wrap-TTL: a positive duration such as 300 or 5m is required"))
			return
		}
		req.WrapTTL = ttl
	}
	if s.standby(w, r, req, body) {
		return
	}
	resp, err := s.core.HandleRequest(r.Context(), req)
	if err != nil {
		writeError(w, s.logger, err)
		return
	}
	s.setIndex(w, req)
	writeResponse(w, req, resp)
}

// envelope is Vault's response body.
type envelope struct {
	RequestID     string            `json:"request_id"`
	LeaseID       string            `json:"lease_id"`
	Renewable     bool              `json:"renewable"`
	LeaseDuration int64             `json:"lease_duration"`
	Data          any               `json:"data"`
	WrapInfo      *logical.WrapInfo `json:"wrap_info"`
	Warnings      []string          `json:"warnings"`
	Auth          *logical.Auth     `json:"auth"`
	MountType     string            `json:"mount_type,omitempty"`
}

func writeResponse(w http.ResponseWriter, req *logical.Request, resp *logical.Response) {
	if resp == nil {
		if req.Operation == logical.ReadOperation || req.Operation == logical.ListOperation {
			writeJSON(w, http.StatusNotFound, map[string][]string{"errors": {}})
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	env := envelope{
		RequestID: req.ID,
		Data:      resp.Data,
		WrapInfo:  resp.WrapInfo,
		Warnings:  resp.Warnings,
		Auth:      resp.Auth,
		MountType: resp.MountType,
	}
	if resp.Lease != nil {
		env.LeaseID = resp.Lease.ID
		env.Renewable = resp.Lease.Renewable
		env.LeaseDuration = int64(resp.Lease.Duration / time.Second)
	}
	status := http.StatusOK
	if resp.StatusCode != 0 {
		status = resp.StatusCode
	}
	if !resp.Inline {
		writeEnvelope(w, status, &env)
		return
	}
	// Older sys endpoints repeat data's fields at the top level.
	raw, err := json.Marshal(env)
	if err != nil {
		writeError(w, nil, err)
		return
	}
	top := map[string]json.RawMessage{}
	if d, err := json.Marshal(resp.Data); err == nil {
		_ = json.Unmarshal(d, &top)
	}
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(raw, &fields)
	for k, v := range fields {
		top[k] = v
	}
	writeJSON(w, status, top)
}

// writeEnvelope writes env as writeJSON would, without reflection for the
// common types (see jsonw.go).
func writeEnvelope(w http.ResponseWriter, status int, env *envelope) {
	bp := bufPool.Get().(*[]byte)
	b, err := appendEnvelope((*bp)[:0], env)
	if err != nil {
		writeJSON(w, status, env)
		return
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if status != http.StatusNoContent && status != http.StatusNotModified {
		h.Set("Content-Length", strconv.Itoa(len(b)))
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
	if cap(b) <= maxPooledBuf {
		*bp = b
		bufPool.Put(bp)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// statusOf is the one table from error codes to HTTP statuses.
var statusOf = map[logical.Code]int{
	logical.Internal:           http.StatusInternalServerError,
	logical.Invalid:            http.StatusBadRequest,
	logical.PermissionDenied:   http.StatusForbidden,
	logical.NotFound:           http.StatusNotFound,
	logical.Unsupported:        http.StatusMethodNotAllowed,
	logical.Conflict:           http.StatusBadRequest,
	logical.TooLarge:           http.StatusRequestEntityTooLarge,
	logical.RateLimited:        http.StatusTooManyRequests,
	logical.Sealed:             http.StatusServiceUnavailable,
	logical.Unavailable:        http.StatusServiceUnavailable,
	logical.PreconditionFailed: http.StatusPreconditionFailed,
}

// writeError writes err as {"errors":[...]}. Errors that are not a
// *logical.Error are internal: the client gets a generic message and the
// details go to the log only.
func writeError(w http.ResponseWriter, logger *slog.Logger, err error) {
	var le *logical.Error
	if !errors.As(err, &le) {
		if errors.Is(err, context.Canceled) {
			return
		}
		if logger != nil {
			logger.Error("internal error", "err", err)
		}
		le = &logical.Error{Code: logical.Internal, Message: "internal error"}
	}
	msgs := le.Messages
	if msgs == nil {
		msgs = []string{le.Message}
	}
	status, ok := statusOf[le.Code]
	if !ok {
		status = http.StatusInternalServerError
	}
	if le.Code == logical.RateLimited {
		secs := int64((le.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	}
	writeJSON(w, status, map[string][]string{"errors": msgs})
}
