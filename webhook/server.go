package webhook

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
)

// Path is where the server accepts AdmissionReviews.
const Path = "/mutate"

// DefaultMaxRequestBytes is the default cap on a request body: the API
// server's own limit on a request, so nothing it sends is refused.
const DefaultMaxRequestBytes = 3 << 20

// Defaults of the in-flight caps (Config.MaxInFlight, Config.MaxLargeInFlight).
const (
	DefaultMaxInFlight      = 64
	DefaultMaxLargeInFlight = 8
)

// LargeRequestBytes is the body size above which a request is large: it
// takes one of Config.MaxLargeInFlight slots as well. An AdmissionReview of
// a Deployment is a few KiB, an UPDATE carries the object twice; bodies
// this large are rare.
const LargeRequestBytes = 256 << 10

// initialBodyBuffer is the most readBody allocates before the body's bytes
// arrive, whatever Content-Length says.
const initialBodyBuffer = 64 << 10

// CertificateSource supplies the serving certificate for each TLS handshake,
// so a renewed certificate is served without a restart. SecretCertificate and
// FileCertificate implement it; so does a *certwatcher.CertWatcher.
type CertificateSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// Config configures a Server. Only Certificates is required.
type Config struct {
	// Addr is the TCP address to listen on. Empty means ":9443".
	Addr string
	// Listener, if not nil, is used instead of listening on Addr; Start
	// closes it. Tests pass one bound to 127.0.0.1:0.
	Listener net.Listener
	// Certificates supplies the serving certificate. Required.
	Certificates CertificateSource
	// Registry receives the request counter and latency histogram. Nil
	// means the metrics are kept but not registered anywhere; the global
	// default registry is never used.
	Registry prometheus.Registerer
	// Logger logs failed requests and the server's lifecycle. The zero
	// Logger discards.
	Logger logr.Logger
	// MaxRequestBytes caps a request body; larger bodies get 413. Zero means
	// DefaultMaxRequestBytes. The body is read into a buffer that grows as
	// its bytes arrive: Content-Length decides no allocation.
	MaxRequestBytes int64
	// MaxInFlight caps the requests being read or answered at once; past
	// it the webhook answers 429 Too Many Requests with Retry-After: 1,
	// which the API server retries within the webhook's timeout. Zero means
	// DefaultMaxInFlight.
	MaxInFlight int
	// MaxLargeInFlight caps, within MaxInFlight, the requests whose body
	// is larger than LargeRequestBytes (by Content-Length, which net/http
	// enforces as an upper bound; a body of unknown length counts as
	// large); past it they get 429 too. With MaxInFlight it bounds the
	// memory request bodies can hold at once, about
	// MaxLargeInFlight*MaxRequestBytes + MaxInFlight*LargeRequestBytes (40
	// MiB at the defaults), while a flood of large bodies leaves room for
	// ordinary reviews. Zero means DefaultMaxLargeInFlight.
	MaxLargeInFlight int
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout are the
	// http.Server timeouts. Zero means 5s, 10s, 15s and 90s. ReadTimeout
	// bounds reading one request's header and body, so it is the longest a
	// slow client holds an in-flight slot; 10s is the API server's default
	// webhook timeout, after which it no longer waits for the answer (it
	// waits 30s at most, and sends the body at once). IdleTimeout bounds a
	// kept-alive connection between requests, which holds no slot.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown once Start's context is
	// done. Zero means 10s.
	ShutdownTimeout time.Duration
	// EnableHTTP2 offers HTTP/2 as well as HTTP/1.1. False (the zero value)
	// serves HTTP/1.1 only: the API server then keeps a pool of keep-alive
	// connections to the webhook, and each request is read, handled and
	// answered on one goroutine, where HTTP/2 hands it between a frame
	// reader, the connection's loop, a handler goroutine and a frame writer
	// (measured: about 0.3 ms of the median over HTTPS on 2 shared cores).
	// It also keeps the HTTP/2 stream-reset attacks (CVE-2023-44487,
	// CVE-2023-39325) out of reach, which is why kubebuilder's scaffolding
	// and knative serve webhooks over HTTP/1.1 by default
	// (kubernetes/kubernetes#121197).
	EnableHTTP2 bool
}

// Server is the admission webhook: an http.Handler for POST /mutate and, via
// Start, an HTTPS server for it. It keeps no state between requests, so every
// replica serves without a leader.
type Server struct {
	cfg     Config
	metrics *metrics
	// inFlight and largeInFlight are counting semaphores of
	// MaxInFlight and MaxLargeInFlight slots.
	inFlight, largeInFlight chan struct{}
}

// New checks cfg, fills its defaults and registers the metrics.
func New(cfg Config) (*Server, error) {
	if cfg.Certificates == nil {
		return nil, errors.New("webhook: Config.Certificates is required")
	}
	if cfg.Addr == "" {
		cfg.Addr = ":9443"
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.MaxLargeInFlight <= 0 {
		cfg.MaxLargeInFlight = DefaultMaxLargeInFlight
	}
	setDefault(&cfg.ReadHeaderTimeout, 5*time.Second)
	setDefault(&cfg.ReadTimeout, 10*time.Second)
	setDefault(&cfg.WriteTimeout, 15*time.Second)
	setDefault(&cfg.IdleTimeout, 90*time.Second)
	setDefault(&cfg.ShutdownTimeout, 10*time.Second)
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	return &Server{
		cfg:           cfg,
		metrics:       m,
		inFlight:      make(chan struct{}, cfg.MaxInFlight),
		largeInFlight: make(chan struct{}, cfg.MaxLargeInFlight),
	}, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// TLSConfig is the server's TLS configuration: TLS 1.2 or newer, the
// certificate from Config.Certificates at every handshake, and ALPN offering
// HTTP/1.1 (and HTTP/2 first when Config.EnableHTTP2 is set).
func (s *Server) TLSConfig() *tls.Config {
	protos := []string{"http/1.1"}
	if s.cfg.EnableHTTP2 {
		protos = []string{"h2", "http/1.1"}
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: s.cfg.Certificates.GetCertificate,
		NextProtos:     protos,
	}
}

// protocols are the HTTP versions Start serves; http.Server would add
// HTTP/2 to the ALPN list by itself unless told otherwise.
func (s *Server) protocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetHTTP2(s.cfg.EnableHTTP2)
	return &p
}

// Start serves HTTPS until ctx is done, then shuts down gracefully and
// returns. It returns early with an error if it cannot listen or serve.
func (s *Server) Start(ctx context.Context) error {
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("webhook: listen on %s: %w", s.cfg.Addr, err)
		}
	}
	srv := &http.Server{
		Handler:           s,
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		Protocols:         s.protocols(),
		// TLS handshake failures (a scanner, a client without our CA)
		// are noise at the default level.
		ErrorLog: log.New(logWriter{s.cfg.Logger.V(1)}, "", 0),
	}
	log := s.cfg.Logger.WithValues("address", ln.Addr().String())
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, "", "") }()
	log.Info("webhook serving")
	select {
	case err := <-done:
		return fmt.Errorf("webhook: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("webhook: shutdown: %w", err)
	}
	log.Info("webhook stopped")
	return nil
}

// ServeHTTP answers POST /mutate with an AdmissionReview. Requests that are
// not AdmissionReviews get a 4xx with a plain-text reason.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	kind := "unknown"
	result := resultBadRequest
	defer func() {
		s.metrics.requests.WithLabelValues(kind, result).Inc()
		s.metrics.latency.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	}()
	fail := func(code int, format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		s.cfg.Logger.V(1).Info("bad admission request", "status", code, "reason", msg, "remote", r.RemoteAddr)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(code)
		fmt.Fprintln(w, msg)
	}
	if r.URL.Path != Path {
		fail(http.StatusNotFound, "no such path %q; the webhook serves POST %s", r.URL.Path, Path)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		fail(http.StatusMethodNotAllowed, "method %s not allowed; send POST", r.Method)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		fail(http.StatusUnsupportedMediaType, "content type %q not supported; send application/json", r.Header.Get("Content-Type"))
		return
	}
	release, ok := s.takeSlots(r.ContentLength)
	if !ok {
		result = resultBusy
		s.metrics.rejected.WithLabelValues(rejectBusy).Inc()
		w.Header().Set("Retry-After", "1")
		fail(http.StatusTooManyRequests, "too many admission requests in flight; retry")
		return
	}
	defer release()
	body, err := readBody(http.MaxBytesReader(w, r.Body, s.cfg.MaxRequestBytes), r.ContentLength)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			s.metrics.rejected.WithLabelValues(rejectTooLarge).Inc()
			fail(http.StatusRequestEntityTooLarge, "request body larger than %d bytes", s.cfg.MaxRequestBytes)
			return
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			s.metrics.rejected.WithLabelValues(rejectSlow).Inc()
			fail(http.StatusRequestTimeout, "request body not received within %s", s.cfg.ReadTimeout)
			return
		}
		fail(http.StatusBadRequest, "read request body: %v", err)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		fail(http.StatusBadRequest, "request body is not valid JSON: %v", err)
		return
	}
	if review.APIVersion != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview" {
		fail(http.StatusBadRequest, "request body is %q %q, not an %s AdmissionReview", review.APIVersion, review.Kind, admissionv1.SchemeGroupVersion)
		return
	}
	if review.Request == nil {
		fail(http.StatusBadRequest, "AdmissionReview has no request")
		return
	}
	kind = kindLabel(review.Request)
	resp, res := admit(review.Request)
	out, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp})
	if err != nil { // cannot happen for these types
		fail(http.StatusInternalServerError, "encode response: %v", err)
		return
	}
	result = res
	if !resp.Allowed {
		s.cfg.Logger.Info("admission denied", "kind", review.Request.Kind.Kind, "namespace", review.Request.Namespace, "name", review.Request.Name, "reason", resp.Result.Message)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// takeSlots takes an in-flight slot, and a large one when the body may be
// larger than LargeRequestBytes, without waiting. ok is false when either
// cap is reached; otherwise release gives the slots back.
func (s *Server) takeSlots(contentLength int64) (release func(), ok bool) {
	select {
	case s.inFlight <- struct{}{}:
	default:
		return nil, false
	}
	if contentLength >= 0 && contentLength <= LargeRequestBytes {
		return func() { <-s.inFlight }, true
	}
	select {
	case s.largeInFlight <- struct{}{}:
		return func() { <-s.largeInFlight; <-s.inFlight }, true
	default:
		<-s.inFlight
		return nil, false
	}
}

// readBody reads body to its end into a buffer that grows as bytes arrive.
// Content-Length sizes the first allocation only up to initialBodyBuffer:
// a client that announces megabytes and sends them slowly, or never,
// costs what it has sent. body is capped by http.MaxBytesReader, and
// net/http ends it after Content-Length bytes, so a buffer filled to
// exactly Content-Length holds the whole body.
func readBody(body io.Reader, contentLength int64) ([]byte, error) {
	size := int64(512)
	if contentLength > 0 {
		size = min(contentLength, initialBodyBuffer)
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) == contentLength {
				return buf, nil
			}
			next := 2 * cap(buf)
			if contentLength > 0 {
				next = int(min(int64(next), contentLength))
			}
			buf = slices.Grow(buf, next-len(buf))
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// logWriter turns http.Server's error log lines into logr messages.
type logWriter struct{ log logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Info(strings.TrimSpace(string(p)))
	return len(p), nil
}
