package controller

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/internal/testenv"
)

// TestUpstreamAuthorizesGatewayBySPIFFEID: what docs/upstream-mtls.md tells
// an upstream to verify, done by the SPIFFE project's own verifier
// (go-spiffe's tlsconfig): the upstream presents its workload certificate,
// trusts the bundle in its Secret's ca.crt, and authorizes exactly the
// gateway's SPIFFE ID, the one a TLSContext with meshca.io/service-account
// (Emissary's ServiceAccount) gets. The gateway's certificate passes; a
// certificate of the same CA for another identity (a neighbour workload)
// completes the chain but is refused by the authorizer.
func TestUpstreamAuthorizesGatewayBySPIFFEID(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	h := startHarness(t, harnessOptions{namespaces: []string{ns}, workloads: true})
	h.create(t,
		tlsContext(ns, "upstream-context", map[string]string{meta.AnnotationIssue: "true", meta.AnnotationServiceAccount: "emissary-ingress"},
			map[string]any{"hosts": []any{}, "secret": "upstream-certs"}),
		workload("Deployment", ns, "upstream", "upstream", certAnn()),
		workload("Deployment", ns, "neighbour", "neighbour", certAnn()),
	)
	gw := h.waitSecret(t, ns, "upstream-certs", nil)
	up := h.waitSecret(t, ns, "upstream-meshca-tls", nil)
	other := h.waitSecret(t, ns, "neighbour-meshca-tls", nil)

	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	gatewayID := spiffeid.RequireFromPath(td, "/ns/"+ns+"/sa/emissary-ingress")
	svid := func(s *corev1.Secret) *x509svid.SVID {
		t.Helper()
		v, err := x509svid.Parse(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
		if err != nil {
			t.Fatalf("Secret %s is not an X509-SVID go-spiffe accepts: %v", s.Name, err)
		}
		return v
	}
	bundle := func(s *corev1.Secret) *x509bundle.Bundle {
		t.Helper()
		b, err := x509bundle.Parse(td, s.Data[corev1.ServiceAccountRootCAKey])
		if err != nil {
			t.Fatalf("ca.crt of %s: %v", s.Name, err)
		}
		return b
	}
	if got := svid(gw).ID; got != gatewayID {
		t.Fatalf("gateway SPIFFE ID %s, want %s", got, gatewayID)
	}

	// The upstream: its own SVID and bundle, authorizing the gateway only.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The server's log says why a handshake failed.
	refusals := &testenv.LockedBuffer{}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "upstream") }),
		TLSConfig:         tlsconfig.MTLSServerConfig(svid(up), bundle(up), tlsconfig.AuthorizeID(gatewayID)),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(refusals, "", 0),
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })

	// A client presents a Secret's SVID and authorizes the upstream's ID.
	upstreamID := svid(up).ID
	get := func(s *corev1.Secret) error {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: tlsconfig.MTLSClientConfig(svid(s), bundle(s), tlsconfig.AuthorizeID(upstreamID)),
		}}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+ln.Addr().String()+"/", nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	}
	if err := get(gw); err != nil {
		t.Fatalf("the gateway's certificate was refused: %v", err)
	}
	if err := get(other); err == nil {
		t.Fatalf("a neighbour's certificate (%s) was authorized as the gateway", svid(other).ID)
	}
	// Refused by the authorizer, after the chain verified: not for a
	// certificate go-spiffe could not read.
	why := ""
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && !strings.Contains(why, "unexpected ID"); time.Sleep(50 * time.Millisecond) {
		why = refusals.String()
	}
	if !strings.Contains(why, `unexpected ID "`+svid(other).ID.String()+`"`) {
		t.Errorf("the neighbour was refused, but not by the ID authorizer: %q", why)
	}
	t.Logf("gateway %s: accepted; neighbour %s: refused (%s)", gatewayID, svid(other).ID, strings.TrimSpace(why))
}
