package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshca/meshca/internal/testpki"
)

// volume writes files the way the kubelet updates a Secret volume: into a
// fresh directory, then an atomic swap of the ..data symlink that the
// visible names point through.
type volume struct {
	dir string
	n   int
}

func (v *volume) write(t *testing.T, files map[string][]byte) {
	t.Helper()
	v.n++
	ts := fmt.Sprintf("..2026_12_02_%02d", v.n)
	if err := os.Mkdir(filepath.Join(v.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(v.dir, ts, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(v.dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

// TestReloadsRenewedFiles: the upstream serves the renewed certificate and
// trusts a new CA once the kubelet has swapped the files, keeps the last
// good set when the new one is broken, and stops trusting a CA that left
// the bundle. curl, not this package's TLS code, plays the client.
func TestReloadsRenewedFiles(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl is needed for this test: %v", err)
	}
	a, b := testpki.New(t), testpki.New(t)
	server := func(p *testpki.PKI) *testpki.Leaf {
		return p.Leaf(t, testpki.LeafOptions{CommonName: "upstream", IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	}
	clientA := a.Leaf(t, testpki.LeafOptions{CommonName: "gateway-a", Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	clientB := b.Leaf(t, testpki.LeafOptions{CommonName: "gateway-b", Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})

	tlsDir, trustDir := &volume{dir: t.TempDir()}, &volume{dir: t.TempDir()}
	put := func(leaf *testpki.Leaf, key []byte, bundle ...[]byte) {
		tlsDir.write(t, map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": key})
		trustDir.write(t, map[string][]byte{"ca.crt": joinPEM(bundle...)})
	}
	first := server(a)
	put(first, first.KeyPEM, a.RootPEM)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, ln, config{
			certFile: filepath.Join(tlsDir.dir, "tls.crt"), keyFile: filepath.Join(tlsDir.dir, "tls.key"),
			caFile: filepath.Join(trustDir.dir, "ca.crt"), check: 50 * time.Millisecond,
		}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	addr := ln.Addr().String()
	files := t.TempDir()
	both := testpki.WriteFile(t, files, "both.crt", joinPEM(a.RootPEM, b.RootPEM))

	// curl presents client and trusts the server against both roots; it
	// prints the body, or fails.
	curl := func(client *testpki.Leaf) (string, error) {
		crt := testpki.WriteFile(t, files, client.Cert.Subject.CommonName+".crt", client.CertPEM)
		key := testpki.WriteFile(t, files, client.Cert.Subject.CommonName+".key", client.KeyPEM)
		out, err := exec.Command("curl", "-sS", "--max-time", "10", "--cacert", both, "--cert", crt, "--key", key, "https://"+addr+"/").CombinedOutput()
		return string(out), err
	}
	// served is the serial of the certificate the server presents now.
	served := func() string {
		pool := x509.NewCertPool()
		pool.AddCert(a.Root)
		pool.AddCert(b.Root)
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{mustPair(t, clientA)}})
		if err != nil {
			return "dial: " + err.Error()
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	waitServed := func(want *testpki.Leaf) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for served() != want.Cert.SerialNumber.String() {
			if time.Now().After(deadline) {
				t.Fatalf("still serving %s, want %s", served(), want.Cert.SerialNumber)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	if out, err := curl(clientA); err != nil || !strings.Contains(out, "gateway-a") {
		t.Fatalf("the gateway's first certificate: %v %s", err, out)
	}
	if out, err := curl(clientB); err == nil {
		t.Fatalf("a client of a CA not yet trusted was accepted: %s", out)
	}

	// A renewal: a new certificate of the same CA.
	renewed := server(a)
	put(renewed, renewed.KeyPEM, a.RootPEM)
	waitServed(renewed)

	// A broken set (a key that is not the certificate's): the last good
	// one stays.
	broken := server(a)
	put(broken, renewed.KeyPEM, a.RootPEM)
	time.Sleep(300 * time.Millisecond) // six checks
	if got := served(); got != renewed.Cert.SerialNumber.String() {
		t.Fatalf("after a broken update the server presents %s, want the last good %s", got, renewed.Cert.SerialNumber)
	}

	// A CA rotation, as meshca does it: the bundle gains the new root, then
	// certificates of the new CA come; clients of either CA are accepted.
	rotated := server(b)
	put(rotated, rotated.KeyPEM, a.RootPEM, b.RootPEM)
	waitServed(rotated)
	for _, c := range []*testpki.Leaf{clientA, clientB} {
		if out, err := curl(c); err != nil {
			t.Errorf("during the overlap, %s refused: %v %s", c.Cert.Subject.CommonName, err, out)
		}
	}
	// The prune: the old root leaves the bundle, its clients are refused.
	pruned := server(b)
	put(pruned, pruned.KeyPEM, b.RootPEM)
	waitServed(pruned)
	if out, err := curl(clientA); err == nil {
		t.Errorf("a client of the pruned CA was accepted: %s", out)
	}
	if out, err := curl(clientB); err != nil {
		t.Errorf("a client of the new CA was refused: %v %s", err, out)
	}
}

func joinPEM(pems ...[]byte) []byte {
	var out []byte
	for _, p := range pems {
		out = append(out, p...)
	}
	return out
}

func mustPair(t *testing.T, l *testpki.Leaf) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(l.CertPEM, l.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
