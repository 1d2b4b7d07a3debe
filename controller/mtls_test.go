package controller

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/internal/testpki"
	"github.com/meshca/meshca/issuer"
)

// TestUpstreamMTLS is the story of Emissary's upstream TLS docs with real TLS
// peers: the gateway's certificate from TLSContext upstream-context (Secret
// upstream-certs) and a workload certificate for upstream-service. openssl
// s_server plays the upstream, requiring client certificates that verify
// against the trust bundle; curl plays the gateway.
func TestUpstreamMTLS(t *testing.T) {
	for _, tool := range []string{"openssl", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed for this test: %v", tool, err)
		}
	}
	env := testenv.Get(t)
	ns := env.Namespace(t)
	h := startHarness(t, harnessOptions{namespaces: []string{ns}})
	h.create(t, tlsContext(ns, "upstream-context", issue, map[string]any{"hosts": []any{}, "secret": "upstream-certs"}))
	gw := h.waitSecret(t, ns, "upstream-certs", nil)

	host := "upstream-service." + ns + ".svc"
	up, err := h.issuer.Issue(context.Background(), issuer.Request{
		Profile: issuer.ProfileWorkload, Namespace: ns,
		SPIFFEID: "spiffe://cluster.local/ns/" + ns + "/sa/upstream-service",
		DNSNames: []string{host},
	})
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	upCert := write("up.crt", up.CertificatePEM)
	upKey := write("up.key", up.PrivateKeyPEM)
	bundle := write("ca.crt", gw.Data[corev1.ServiceAccountRootCAKey])
	gwCert := write("gw.crt", gw.Data[corev1.TLSCertKey])
	gwKey := write("gw.key", gw.Data[corev1.TLSPrivateKeyKey])

	srv := testpki.StartHTTPSServer(t, upCert, upKey, bundle)
	_, port, _ := strings.Cut(srv.Addr, ":")

	curl := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		all := append([]string{"-sS", "--max-time", "10", "--cacert", bundle,
			"--resolve", fmt.Sprintf("%s:%s:127.0.0.1", host, port)}, args...)
		all = append(all, fmt.Sprintf("https://%s:%s/", host, port))
		out, err := exec.CommandContext(ctx, "curl", all...).CombinedOutput()
		return string(out), err
	}
	out, err := curl("--cert", gwCert, "--key", gwKey)
	if err != nil {
		t.Fatalf("curl with the gateway certificate failed: %v\n%s", err, out)
	}
	if !strings.Contains(out, "s_server") {
		t.Errorf("unexpected response: %s", out)
	}
	t.Logf("with the gateway certificate from upstream-certs: mutual TLS succeeded")

	out, err = curl()
	if err == nil {
		t.Fatalf("curl without a client certificate succeeded; the upstream must refuse it:\n%s", out)
	}
	t.Logf("without a client certificate: refused (%v)", strings.TrimSpace(firstLine(out)))
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
