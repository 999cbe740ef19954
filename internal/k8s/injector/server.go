package injector

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Options configure Run.
type Options struct {
	// Listen is the address to serve on (--listen). "": ":8443".
	Listen string
	// Listener, when set, is used instead of Listen (tests). Run closes it.
	Listener net.Listener
	// TLSCertFile and TLSKeyFile are the serving certificate and key
	// (--tls-cert-file, --tls-key-file), re-read when either file
	// changes. Required.
	TLSCertFile, TLSKeyFile string
	// Config is the injection's settings (--agent-image, --coffer-addr,
	// --ca-cert).
	Config Config
	// Logger receives the logs. nil: discard.
	Logger *slog.Logger
}

// Run serves POST /mutate (AdmissionReview v1) and GET /healthz over TLS
// until ctx is done, then shuts down gracefully and returns nil. It
// fails at once if the certificate cannot be loaded.
func Run(ctx context.Context, opts Options) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Config.AgentImage == "" || opts.Config.Address == "" {
		return errors.New("injector: --agent-image and --coffer-addr are required")
	}
	certs := &certReloader{certFile: opts.TLSCertFile, keyFile: opts.TLSKeyFile, log: opts.Logger}
	if _, err := certs.get(); err != nil {
		return err
	}
	l := opts.Listener
	if l == nil {
		addr := opts.Listen
		if addr == "" {
			addr = ":8443"
		}
		var err error
		if l, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("injector: %w", err)
		}
	}
	srv := &http.Server{
		Handler:           Handler(opts.Config, opts.Logger),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return certs.get()
		}},
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(l, "", "") }()
	opts.Logger.Info("injector listening", "address", l.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("injector: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	<-errc
	return nil
}

// certReloader loads the key pair and loads it again when either file's
// modification time or size changes; a failed reload keeps serving the
// previous certificate and logs why.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu    sync.Mutex // guards following
	cert  *tls.Certificate
	stamp string
}

func (c *certReloader) get() (*tls.Certificate, error) {
	stamp := ""
	for _, f := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			stamp += "missing;"
			continue
		}
		stamp += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert != nil && stamp == c.stamp {
		return c.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		if c.cert != nil {
			c.log.Warn("reloading the TLS certificate failed; keeping the previous one", "error", err)
			c.stamp = stamp
			return c.cert, nil
		}
		return nil, fmt.Errorf("injector: load TLS certificate: %w", err)
	}
	if c.cert != nil {
		c.log.Info("TLS certificate reloaded")
	}
	c.cert, c.stamp = &cert, stamp
	return c.cert, nil
}

// Handler serves /mutate and /healthz.
func Handler(cfg Config, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("POST /mutate", func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
		if err != nil || json.Unmarshal(body, &review) != nil || review.Request == nil {
			http.Error(w, "the body must be an AdmissionReview with a request", http.StatusBadRequest)
			return
		}
		resp := Review(review.Request, cfg)
		if resp.Result != nil {
			log.Warn("pod refused", "namespace", review.Request.Namespace, "name", review.Request.Name, "reason", resp.Result.Message)
		} else if resp.Patch != nil {
			log.Info("agent injected", "namespace", review.Request.Namespace, "name", review.Request.Name)
		}
		out := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Response: resp}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
	return mux
}

// Review answers one admission request: allowed with a patch, allowed
// unchanged, or refused with the reason.
func Review(req *admissionv1.AdmissionRequest, cfg Config) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create {
		return resp
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		resp.Allowed = false
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusBadRequest, Reason: metav1.StatusReasonBadRequest, Message: "coffer injector: the object is not a Pod"}
		return resp
	}
	patch, err := Mutate(&pod, cfg)
	if err != nil {
		resp.Allowed = false
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusBadRequest, Reason: metav1.StatusReasonBadRequest, Message: "coffer injector: " + err.Error()}
		return resp
	}
	if patch != nil {
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
	}
	return resp
}
