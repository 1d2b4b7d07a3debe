// Command reload is an upstream that serves mutual TLS from the files
// meshca's webhook mounts, and picks up a renewed certificate or a new trust
// bundle without a restart: the pattern docs/upstream-mtls.md recommends to
// a server that holds long-lived connections or cannot afford a rollout.
//
// The kubelet updates a Secret or ConfigMap volume by writing the new files
// into a fresh directory and swapping the ..data symlink to it, so the three
// files change together. reload reads them every -check interval, compares
// their contents, and when they changed and parse (the key matches the
// certificate, the bundle holds at least one certificate) swaps them in for
// the next handshake. Connections already open keep the certificate they
// started with. A set that does not parse is logged and the last good one
// stays in use.
//
//	reload -listen :8443 \
//	  -cert /var/run/meshca/tls/tls.crt -key /var/run/meshca/tls/tls.key \
//	  -ca /var/run/meshca/trust/ca.crt
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.listen, "listen", ":8443", "address to serve HTTPS on")
	flag.StringVar(&cfg.certFile, "cert", "/var/run/meshca/tls/tls.crt", "certificate chain (PEM), as meshca's webhook mounts it")
	flag.StringVar(&cfg.keyFile, "key", "/var/run/meshca/tls/tls.key", "private key (PEM, PKCS#8)")
	flag.StringVar(&cfg.caFile, "ca", "/var/run/meshca/trust/ca.crt", "trust bundle that client certificates must chain to")
	flag.DurationVar(&cfg.check, "check", 10*time.Second, "how often to look for new files")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		log.Error("listen", "err", err)
		os.Exit(1)
	}
	if err := serve(ctx, ln, cfg, log); err != nil {
		log.Error("serve", "err", err)
		os.Exit(1)
	}
}

type config struct {
	listen, certFile, keyFile, caFile string
	check                             time.Duration
}

// material is one consistent set of files, parsed.
type material struct {
	raw  []byte // the three files' contents, to notice a change
	cert *tls.Certificate
	pool *x509.CertPool
	// serial of the leaf, for the log.
	serial string
}

// files holds the material in use.
type files struct {
	cfg     config
	current atomic.Pointer[material]
}

// load reads the files and swaps them in when they changed; it reports
// whether it did. On any error the material in use stays.
func (f *files) load() (bool, error) {
	var all [][]byte
	for _, p := range []string{f.cfg.certFile, f.cfg.keyFile, f.cfg.caFile} {
		b, err := os.ReadFile(p)
		if err != nil {
			return false, err
		}
		all = append(all, b)
	}
	raw := bytes.Join(all, []byte{0})
	if cur := f.current.Load(); cur != nil && bytes.Equal(cur.raw, raw) {
		return false, nil
	}
	cert, err := tls.X509KeyPair(all[0], all[1])
	if err != nil {
		// Mid-update on a filesystem without the kubelet's atomic swap,
		// or a broken Secret: try again at the next check.
		return false, fmt.Errorf("certificate and key: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(all[2]) {
		return false, errors.New("trust bundle: no certificate in " + f.cfg.caFile)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return false, err
	}
	f.current.Store(&material{raw: raw, cert: &cert, pool: pool, serial: fmt.Sprintf("%X", leaf.SerialNumber)})
	return true, nil
}

// tlsConfig serves each handshake with the material current at that moment.
func (f *files) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := f.current.Load()
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*m.cert},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    m.pool,
			}, nil
		},
	}
}

// serve loads the files (they must be there at start), serves HTTPS on ln
// and reloads the files every cfg.check until ctx ends.
func serve(ctx context.Context, ln net.Listener, cfg config, log *slog.Logger) error {
	f := &files{cfg: cfg}
	if _, err := f.load(); err != nil {
		return err
	}
	log.Info("serving", "addr", ln.Addr().String(), "serial", f.current.Load().serial)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = fmt.Fprintf(w, "hello %s\n", r.TLS.PeerCertificates[0].Subject)
		}),
		TLSConfig:         f.tlsConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		// Refused handshakes (a client the bundle does not trust) go to
		// the same log.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		t := time.NewTicker(cfg.check)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = srv.Shutdown(shut)
				cancel()
				return
			case <-t.C:
			}
			switch changed, err := f.load(); {
			case err != nil:
				log.Warn("new files not used; the previous ones stay", "err", err)
			case changed:
				log.Info("reloaded", "serial", f.current.Load().serial)
			}
		}
	}()
	if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
