package issuer_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/testpki"
	"github.com/meshca/meshca/issuer"
)

const td = "cluster.local"

func newCA(t testing.TB, alg ca.KeyAlgorithm) *ca.State {
	t.Helper()
	c, err := ca.New(ca.Config{KeyAlgorithm: alg})
	if err != nil {
		t.Fatalf("new CA: %v", err)
	}
	return ca.NewState(c, "generated", c.Root.NotBefore)
}

func newLocal(t testing.TB, st *ca.State, pol issuer.Policy, clk clock.PassiveClock) *issuer.Local {
	t.Helper()
	if clk == nil {
		clk = clocktesting.NewFakePassiveClock(time.Now())
	}
	l, err := issuer.NewLocal(issuer.LocalConfig{CA: st, Policy: pol, Clock: clk})
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}
	return l
}

func issue(t testing.TB, l *issuer.Local, req issuer.Request) *issuer.Bundle {
	t.Helper()
	b, err := l.Issue(context.Background(), req)
	if err != nil {
		t.Fatalf("Issue(%+v): %v", req, err)
	}
	return b
}

// files writes a bundle as tls.crt, tls.key, ca.crt, leaf.crt and
// intermediate.crt into a fresh folder and returns it.
func files(t testing.TB, st *ca.State, b *issuer.Bundle) string {
	t.Helper()
	dir := t.TempDir()
	testpki.WriteFile(t, dir, "tls.crt", b.CertificatePEM)
	testpki.WriteFile(t, dir, "tls.key", b.PrivateKeyPEM)
	testpki.WriteFile(t, dir, "ca.crt", b.CAPEM)
	testpki.WriteFile(t, dir, "leaf.crt", testpki.CertPEM(b.Leaf))
	testpki.WriteFile(t, dir, "intermediate.crt", ca.EncodeCertificatesPEM(st.Current.Chain...))
	return dir
}

func workloadRequest(ns string) issuer.Request {
	return issuer.Request{
		Profile:   issuer.ProfileWorkload,
		Namespace: ns,
		SPIFFEID:  "spiffe://" + td + "/ns/" + ns + "/sa/api",
		DNSNames:  []string{"api." + ns + ".svc", "api." + ns + ".svc.cluster.local"},
	}
}

func servingRequest() issuer.Request {
	return issuer.Request{
		Profile:     issuer.ProfileServing,
		Namespace:   "meshca-system",
		DNSNames:    []string{"localhost", "meshca.meshca-system.svc"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
}

func path(dir, name string) string { return filepath.Join(dir, name) }
