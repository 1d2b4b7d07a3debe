package issuer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"
)

// TestNameConstraintsAgreeWithVerify is a differential test of the fast
// name-constraint check against crypto/x509's Verify: for every pair of
// constraint set and names, the fast check must never accept what Verify
// refuses. It may refuse more only where it reads URI constraints more
// narrowly (RFC 5280's exact-host rule), and those cases are listed.
func TestNameConstraintsAgreeWithVerify(t *testing.T) {
	t.Parallel()
	type constraints struct{ permDNS, exclDNS, permURI, exclURI []string }
	sets := map[string]constraints{
		"meshca":        {permDNS: []string{"svc", "svc.cluster.local"}, permURI: []string{"cluster.local"}},
		"dot-dns":       {permDNS: []string{".example.com"}},
		"excluded-dns":  {permDNS: []string{"example.com"}, exclDNS: []string{"bad.example.com"}},
		"dot-uri":       {permURI: []string{".cluster.local"}},
		"excluded-uri":  {exclURI: []string{"evil.test"}},
		"only-excluded": {exclDNS: []string{"internal"}},
	}
	type names struct {
		dns  []string
		uris []string
	}
	leaves := map[string]names{
		"svc":            {dns: []string{"api.shop.svc"}},
		"svc-fqdn":       {dns: []string{"api.shop.svc.cluster.local"}},
		"svc-itself":     {dns: []string{"svc"}},
		"suffix-trick":   {dns: []string{"api.shopsvc"}},
		"outside":        {dns: []string{"evil.example.org"}},
		"example":        {dns: []string{"example.com"}},
		"below-example":  {dns: []string{"a.example.com"}},
		"bad":            {dns: []string{"bad.example.com"}},
		"below-bad":      {dns: []string{"x.bad.example.com"}},
		"upper":          {dns: []string{"API.Shop.SVC"}},
		"wildcard":       {dns: []string{"*.shop.svc"}},
		"wildcard-ex":    {dns: []string{"*.example.com"}},
		"internal":       {dns: []string{"db.internal"}},
		"spiffe":         {uris: []string{"spiffe://cluster.local/ns/shop/sa/api"}},
		"spiffe-sub":     {uris: []string{"spiffe://x.cluster.local/ns/shop/sa/api"}},
		"spiffe-other":   {uris: []string{"spiffe://other.local/ns/shop/sa/api"}},
		"spiffe-evil":    {uris: []string{"spiffe://evil.test/ns/a/sa/b"}},
		"spiffe-and-dns": {dns: []string{"api.shop.svc"}, uris: []string{"spiffe://cluster.local/ns/shop/sa/api"}},
	}
	// Verify accepts these, the fast check refuses them on purpose.
	narrower := map[string]bool{"meshca/spiffe-sub": true}

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for setName, cs := range sets {
		root := mustCert(t, &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "constrained " + setName},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
			PermittedDNSDomainsCritical: true,
			PermittedDNSDomains:         cs.permDNS, ExcludedDNSDomains: cs.exclDNS,
			PermittedURIDomains: cs.permURI, ExcludedURIDomains: cs.exclURI,
		}, nil, &caKey.PublicKey, caKey)
		roots := x509.NewCertPool()
		roots.AddCert(root)
		nc := gatherConstraints([]*x509.Certificate{root})
		if nc.unsupported != "" {
			t.Fatalf("%s: unsupported: %s", setName, nc.unsupported)
		}
		for leafName, n := range leaves {
			tmpl := &x509.Certificate{
				SerialNumber: big.NewInt(2), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Minute),
				KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
				DNSNames: n.dns,
			}
			for _, s := range n.uris {
				u, err := url.Parse(s)
				if err != nil {
					t.Fatal(err)
				}
				tmpl.URIs = append(tmpl.URIs, u)
			}
			leaf := mustCert(t, tmpl, root, &leafKey.PublicKey, caKey)
			_, verr := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now})
			ferr := nc.check(leaf)
			key := setName + "/" + leafName
			switch {
			case errors.Is(ferr, errUnsupported):
				// Falls back to Verify: agreement by construction.
			case ferr == nil && verr != nil:
				t.Errorf("%s: fast check accepts what Verify refuses (%v)", key, verr)
			case ferr != nil && verr == nil && !narrower[key]:
				t.Errorf("%s: fast check refuses what Verify accepts: %v", key, ferr)
			case ferr == nil && narrower[key]:
				t.Errorf("%s: listed as refused by the narrower URI rule, but accepted", key)
			}
		}
	}
}

// TestNameConstraintsUnsupportedFallBack checks that constraint forms the
// fast check does not read send the leaf to a full Verify.
func TestNameConstraintsUnsupportedFallBack(t *testing.T) {
	t.Parallel()
	_, ipNet, _ := net.ParseCIDR("10.0.0.0/8")
	for name, c := range map[string]*x509.Certificate{
		"ip":    {PermittedIPRanges: []*net.IPNet{ipNet}},
		"email": {PermittedEmailAddresses: []string{"example.com"}},
		"odd":   {PermittedDNSDomains: []string{"exa_mple.com"}},
	} {
		if nc := gatherConstraints([]*x509.Certificate{c}); !errors.Is(nc.check(&x509.Certificate{}), errUnsupported) {
			t.Errorf("%s: check = %v, want errUnsupported", name, nc.check(&x509.Certificate{}))
		}
	}
	nc := gatherConstraints([]*x509.Certificate{{PermittedDNSDomains: []string{"svc"}}})
	if err := nc.check(&x509.Certificate{DNSNames: []string{"a_b.svc"}}); !errors.Is(err, errUnsupported) {
		t.Errorf("odd DNS name: check = %v, want errUnsupported", err)
	}
}

func mustCert(t *testing.T, tmpl, parent *x509.Certificate, pub any, priv any) *x509.Certificate {
	t.Helper()
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
