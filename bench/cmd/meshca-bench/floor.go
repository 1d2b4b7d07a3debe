package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// The HTTPS floor: a trivial handler in its own process, served the way
// meshca serves its webhook (TLS 1.2+, an ECDSA P-256 certificate, HTTP/1.1
// with keep-alive), answering every POST with a fixed AdmissionReview of
// the size meshca's carries. The same client at the same rate against it
// shows what two processes, TLS and HTTP cost on this machine at that
// moment, with no work at all.

// floorResponse is an AdmissionReview response with a JSON patch of the
// size meshca returns for the bench Deployment.
var floorResponse = []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"floor","allowed":true,"patch":"` +
	base64.StdEncoding.EncodeToString([]byte(`[{"op":"add","path":"/spec/template/spec/volumes","value":[{"name":"meshca-trust","configMap":{"name":"meshca-trust-bundle","items":[{"key":"ca.crt","path":"ca.crt"}]}}]},{"op":"add","path":"/spec/template/spec/containers/0/volumeMounts","value":[{"name":"meshca-trust","readOnly":true,"mountPath":"/var/run/meshca/trust"}]},{"op":"add","path":"/spec/template/spec/containers/0/env","value":[{"name":"MESHCA_CA_FILE","value":"/var/run/meshca/trust/ca.crt"}]}]`)) +
	`","patchType":"JSONPatch"}}`)

// serveFloor is the floor process: it writes its certificate to caFile and
// serves on addr until killed.
func serveFloor(addr, caFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "meshca-bench floor"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(floorResponse)
		}),
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		Protocols:         &protos,
		ReadHeaderTimeout: 5 * time.Second,
	}
	return srv.ServeTLS(ln, "", "")
}

// floorServer is the running floor process.
type floorServer struct {
	*proc
	url   string
	roots *x509.CertPool
}

// startFloorServer runs this binary as the floor server and waits until it
// answers.
func startFloorServer(workDir string) (*floorServer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	caFile := filepath.Join(workDir, "floor-ca.pem")
	_ = os.Remove(caFile)
	p, err := startProc("floor", self, filepath.Join(workDir, "floor.log"), "-serve-floor", addr, "-floor-ca", caFile)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if err := p.exited(); err != nil {
			return nil, err
		}
		if pemBytes, err := os.ReadFile(caFile); err == nil {
			roots := x509.NewCertPool()
			if roots.AppendCertsFromPEM(pemBytes) {
				return &floorServer{proc: p, url: "https://" + addr + "/mutate", roots: roots}, nil
			}
		}
		select {
		case <-ctx.Done():
			p.stop()
			return nil, fmt.Errorf("floor server did not start: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
