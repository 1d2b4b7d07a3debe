package issuer_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/testpki"
	"github.com/meshca/meshca/issuer"
)

var _ interface {
	Issue(context.Context, issuer.Request) (*issuer.Bundle, error)
} = (*issuer.Local)(nil)

// TestIssueEveryProfileAndKeyAlgorithm issues a certificate of every profile
// with every leaf key algorithm, checks it in Go and with openssl verify.
func TestIssueEveryProfileAndKeyAlgorithm(t *testing.T) {
	t.Parallel()
	st := newCA(t, ca.ECDSAP256)
	pol := issuer.Policy{AllowIPSANs: true, AllowedDNSSuffixes: []string{"example.com", "localhost"}}
	l := newLocal(t, st, pol, nil)
	requests := map[issuer.Profile]issuer.Request{
		issuer.ProfileWorkload: workloadRequest("shop"),
		issuer.ProfileGateway: {Profile: issuer.ProfileGateway, Namespace: "edge",
			SPIFFEID: "spiffe://cluster.local/ns/edge/sa/ambassador", DNSNames: []string{"gw.example.com", "ambassador.edge.svc"}},
		issuer.ProfileServing: servingRequest(),
	}
	for _, profile := range issuer.Profiles {
		for _, alg := range ca.KeyAlgorithms {
			t.Run(string(profile)+"/"+string(alg), func(t *testing.T) {
				t.Parallel()
				req := requests[profile]
				req.KeyAlgorithm = alg
				b := issue(t, l, req)
				leaf := b.Leaf
				if got, _ := ca.KeyAlgorithmOf(leaf.PublicKey); got != alg {
					t.Errorf("leaf key algorithm %s, want %s", got, alg)
				}
				if !slices.Equal(leaf.ExtKeyUsage, profile.ExtKeyUsages()) || leaf.KeyUsage != x509.KeyUsageDigitalSignature || leaf.IsCA {
					t.Errorf("usages %v %v IsCA=%v", leaf.KeyUsage, leaf.ExtKeyUsage, leaf.IsCA)
				}
				if !slices.Equal(leaf.DNSNames, req.DNSNames) {
					t.Errorf("DNS names %v, want %v", leaf.DNSNames, req.DNSNames)
				}
				if req.SPIFFEID != "" && (len(leaf.URIs) != 1 || leaf.URIs[0].String() != req.SPIFFEID) {
					t.Errorf("URIs %v, want %s", leaf.URIs, req.SPIFFEID)
				}
				if b.IssuerFingerprint != st.Current.Fingerprint() {
					t.Errorf("issuer fingerprint %s, want %s", b.IssuerFingerprint, st.Current.Fingerprint())
				}
				if k, err := ca.ParsePrivateKeyPEM(b.PrivateKeyPEM); err != nil || !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey) {
					t.Errorf("private key does not match leaf: %v", err)
				}
				certs, err := ca.ParseCertificatesPEM(b.CertificatePEM)
				if err != nil || len(certs) != 2 || !certs[0].Equal(leaf) || !certs[1].Equal(st.Current.Intermediate) {
					t.Errorf("tls.crt is not leaf then intermediate: %v", err)
				}
				dir := files(t, st, b)
				purpose := "sslserver"
				testpki.Verify(t, path(dir, "ca.crt"), path(dir, "intermediate.crt"), path(dir, "leaf.crt"), "-purpose", purpose)
				if profile != issuer.ProfileServing {
					testpki.Verify(t, path(dir, "ca.crt"), path(dir, "intermediate.crt"), path(dir, "leaf.crt"), "-purpose", "sslclient")
				}
			})
		}
	}
}

// TestIssueEveryCAKeyAlgorithm signs with a CA of every key algorithm.
func TestIssueEveryCAKeyAlgorithm(t *testing.T) {
	t.Parallel()
	for _, alg := range ca.KeyAlgorithms {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			st := newCA(t, alg)
			b := issue(t, newLocal(t, st, issuer.Policy{}, nil), workloadRequest("shop"))
			dir := files(t, st, b)
			testpki.Verify(t, path(dir, "ca.crt"), path(dir, "intermediate.crt"), path(dir, "leaf.crt"))
		})
	}
}

func TestIssueValidity(t *testing.T) {
	t.Parallel()
	st := newCA(t, ca.ECDSAP256)
	caEnd := st.Current.Intermediate.NotAfter
	cases := map[string]struct {
		now          time.Time
		duration     time.Duration
		wantNotAfter time.Time
		wantErr      error
	}{
		"default 24h": {now: caEnd.Add(-72 * time.Hour), wantNotAfter: caEnd.Add(-48 * time.Hour)},
		"requested":   {now: caEnd.Add(-72 * time.Hour), duration: time.Hour, wantNotAfter: caEnd.Add(-71 * time.Hour)},
		"capped":      {now: caEnd.Add(-time.Hour), wantNotAfter: caEnd},
		"CA expired":  {now: caEnd.Add(time.Minute), wantErr: issuer.ErrCAExpired},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			l := newLocal(t, st, issuer.Policy{}, clocktesting.NewFakePassiveClock(tc.now))
			req := workloadRequest("shop")
			req.Duration = tc.duration
			b, err := l.Issue(context.Background(), req)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := tc.now.Add(-issuer.DefaultBackdate).Truncate(time.Second); !b.Leaf.NotBefore.Equal(want) {
				t.Errorf("NotBefore %v, want %v (backdated 1m)", b.Leaf.NotBefore, want)
			}
			if !b.Leaf.NotAfter.Equal(tc.wantNotAfter.Truncate(time.Second)) {
				t.Errorf("NotAfter %v, want %v", b.Leaf.NotAfter, tc.wantNotAfter)
			}
		})
	}
}

func TestIssueRefusals(t *testing.T) {
	t.Parallel()
	l := newLocal(t, newCA(t, ca.ECDSAP256), issuer.Policy{}, nil)
	cases := map[string]struct {
		req      issuer.Request
		wantRule issuer.Rule
		wantName string
		wantErr  error
	}{
		"foreign namespace SPIFFE ID": {
			req:      issuer.Request{Profile: issuer.ProfileWorkload, Namespace: "shop", SPIFFEID: "spiffe://cluster.local/ns/bank/sa/api"},
			wantRule: issuer.RuleSPIFFENamespace, wantName: "spiffe://cluster.local/ns/bank/sa/api"},
		"DNS name of another namespace": {
			req:      issuer.Request{Profile: issuer.ProfileWorkload, Namespace: "shop", SPIFFEID: "spiffe://cluster.local/ns/shop/sa/api", DNSNames: []string{"api.shop.svc", "api.bank.svc"}},
			wantRule: issuer.RuleDNSSuffix, wantName: "api.bank.svc"},
		"IP SAN": {
			req:      issuer.Request{Profile: issuer.ProfileServing, Namespace: "shop", IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}},
			wantRule: issuer.RuleIPSAN, wantName: "10.0.0.1"},
		"no SPIFFE ID for workload": {
			req:     issuer.Request{Profile: issuer.ProfileWorkload, Namespace: "shop", DNSNames: []string{"api.shop.svc"}},
			wantErr: issuer.ErrInvalidRequest},
		"unknown profile": {
			req:     issuer.Request{Profile: "client", Namespace: "shop", DNSNames: []string{"api.shop.svc"}},
			wantErr: issuer.ErrInvalidRequest},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, err := l.Issue(context.Background(), tc.req)
			if b != nil {
				t.Fatal("a bundle was returned with the refusal")
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			var pe *issuer.PolicyError
			if !errors.As(err, &pe) || pe.Rule != tc.wantRule || pe.Name != tc.wantName || !errors.Is(err, issuer.ErrPolicy) {
				t.Fatalf("err = %v, want PolicyError{%s, %s}", err, tc.wantName, tc.wantRule)
			}
		})
	}
}

// TestSetCA swaps the CA at run time: later certificates chain to the new
// one and carry the new bundle.
func TestSetCA(t *testing.T) {
	t.Parallel()
	first, second := newCA(t, ca.ECDSAP256), newCA(t, ca.Ed25519)
	l := newLocal(t, first, issuer.Policy{}, nil)
	if b := issue(t, l, workloadRequest("shop")); b.IssuerFingerprint != first.Current.Fingerprint() {
		t.Fatal("first CA did not sign")
	}
	both := *second
	both.Previous = first.Current
	if err := l.SetCA(&both); err != nil {
		t.Fatal(err)
	}
	b := issue(t, l, workloadRequest("shop"))
	if b.IssuerFingerprint != second.Current.Fingerprint() {
		t.Fatal("second CA did not sign")
	}
	if roots, _ := ca.ParseCertificatesPEM(b.CAPEM); len(roots) != 2 {
		t.Fatalf("bundle has %d roots, want current and previous", len(roots))
	}
	if err := l.SetCA(&ca.State{}); !errors.Is(err, issuer.ErrNoCA) {
		t.Fatalf("SetCA(empty) = %v, want ErrNoCA", err)
	}
	empty := newLocal(t, nil, issuer.Policy{}, nil)
	if _, err := empty.Issue(context.Background(), workloadRequest("shop")); !errors.Is(err, issuer.ErrNoCA) {
		t.Fatalf("Issue without CA = %v, want ErrNoCA", err)
	}
}

// TestNameConstraintsEnforcedByCheck proves the post-sign check catches a
// certificate the CA's own name constraints forbid, even under the
// operator's policy.
func TestNameConstraintsEnforcedByCheck(t *testing.T) {
	t.Parallel()
	c, err := ca.New(ca.Config{PermittedDNSDomains: []string{"svc.cluster.local"}})
	if err != nil {
		t.Fatal(err)
	}
	l := newLocal(t, ca.NewState(c, "generated", c.Root.NotBefore), issuer.OperatorPolicy(), nil)
	ok := issuer.Request{Profile: issuer.ProfileWorkload, SPIFFEID: "spiffe://cluster.local/ns/a/sa/b", DNSNames: []string{"a.shop.svc.cluster.local"}}
	issue(t, l, ok)
	bad := ok
	bad.DNSNames = []string{"evil.example.com"}
	if _, err := l.Issue(context.Background(), bad); !errors.Is(err, issuer.ErrCheckFailed) {
		t.Fatalf("err = %v, want ErrCheckFailed", err)
	}
}
