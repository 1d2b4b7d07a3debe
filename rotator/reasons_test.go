package rotator

import (
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	"github.com/meshca/meshca/internal/testpki"
)

func TestEvaluate(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t)
	other := testpki.New(t)
	now := time.Now()
	wantNames := Wanted{
		DNSNames:     []string{"a.demo.svc", "b.demo.svc"},
		URIs:         []string{"spiffe://cluster.local/ns/demo/sa/default"},
		KeyAlgorithm: "ecdsa-p256",
	}
	fresh := pki.Leaf(t, testpki.LeafOptions{DNSNames: []string{"b.demo.svc", "a.demo.svc"}, URIs: wantNames.URIs,
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)})
	old := pki.Leaf(t, testpki.LeafOptions{DNSNames: wantNames.DNSNames, URIs: wantNames.URIs,
		NotBefore: now.Add(-50 * time.Minute), NotAfter: now.Add(10 * time.Minute)})
	foreign := other.Leaf(t, testpki.LeafOptions{DNSNames: wantNames.DNSNames, URIs: wantNames.URIs})
	roots := x509.NewCertPool()
	roots.AddCert(pki.Root)

	cases := map[string]struct {
		observed *Observed
		wanted   Wanted
		reason   string
		// renew is Input.RenewRequested.
		renew string
	}{
		"missing":              {Observe(false, nil, nil), wantNames, ReasonMissing, ""},
		"garbage certificate":  {Observe(true, []byte("not pem"), fresh.KeyPEM), wantNames, ReasonUnparsable, ""},
		"garbage key":          {Observe(true, fresh.CertPEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")), wantNames, ReasonUnparsable, ""},
		"empty key":            {Observe(true, fresh.CertPEM, nil), wantNames, ReasonUnparsable, ""},
		"key of another cert":  {Observe(true, fresh.CertPEM, old.KeyPEM), wantNames, ReasonKeyMismatch, ""},
		"other CA":             {Observe(true, foreign.CertPEM, foreign.KeyPEM), wantNames, ReasonIssuerNotTrusted, ""},
		"name added":           {Observe(true, fresh.CertPEM, fresh.KeyPEM), Wanted{DNSNames: append([]string{"c.demo.svc"}, wantNames.DNSNames...), URIs: wantNames.URIs}, ReasonNamesChanged, ""},
		"identity changed":     {Observe(true, fresh.CertPEM, fresh.KeyPEM), Wanted{DNSNames: wantNames.DNSNames, URIs: []string{"spiffe://cluster.local/ns/demo/sa/other"}}, ReasonNamesChanged, ""},
		"key algorithm":        {Observe(true, fresh.CertPEM, fresh.KeyPEM), Wanted{DNSNames: wantNames.DNSNames, URIs: wantNames.URIs, KeyAlgorithm: "rsa-2048"}, ReasonKeyAlgorithmChanged, ""},
		"near expiry":          {Observe(true, old.CertPEM, old.KeyPEM), wantNames, ReasonNearExpiry, ""},
		"fresh and as wanted":  {Observe(true, fresh.CertPEM, fresh.KeyPEM), wantNames, "", ""},
		"any key algorithm ok": {Observe(true, fresh.CertPEM, fresh.KeyPEM), Wanted{DNSNames: wantNames.DNSNames, URIs: wantNames.URIs}, "", ""},
		"renew requested":      {Observe(true, fresh.CertPEM, fresh.KeyPEM), wantNames, ReasonManual, fmt.Sprintf("%X", fresh.Cert.SerialNumber)},
		"renew, lower case":    {Observe(true, fresh.CertPEM, fresh.KeyPEM), wantNames, ReasonManual, fmt.Sprintf(" %x\n", fresh.Cert.SerialNumber)},
		"renew of a replaced":  {Observe(true, fresh.CertPEM, fresh.KeyPEM), wantNames, "", fmt.Sprintf("%X", old.Cert.SerialNumber)},
		"renew, not a serial":  {Observe(true, fresh.CertPEM, fresh.KeyPEM), wantNames, "", time.Now().Format(time.RFC3339)},
		"names before renew":   {Observe(true, fresh.CertPEM, fresh.KeyPEM), Wanted{DNSNames: []string{"c.demo.svc"}, URIs: wantNames.URIs}, ReasonNamesChanged, fmt.Sprintf("%X", fresh.Cert.SerialNumber)},
		"renew before expiry":  {Observe(true, old.CertPEM, old.KeyPEM), wantNames, ReasonManual, fmt.Sprintf("%X", old.Cert.SerialNumber)},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			d := Evaluate(Input{Now: now, Observed: tc.observed, Wanted: tc.wanted, Roots: roots, Policy: Policy{Jitter: -1}, RenewRequested: tc.renew}, DefaultChecks)
			if d.Reason != tc.reason || d.Needed != (tc.reason != "") {
				t.Fatalf("Evaluate = %+v, want reason %q", d, tc.reason)
			}
			if d.Needed && d.Message == "" {
				t.Errorf("reason %s without a message", d.Reason)
			}
		})
	}
}

func TestEvaluateRenewAt(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t)
	nb := time.Now().Add(-time.Minute)
	leaf := pki.Leaf(t, testpki.LeafOptions{DNSNames: []string{"a"}, NotBefore: nb, NotAfter: nb.Add(90 * time.Minute)})
	roots := x509.NewCertPool()
	roots.AddCert(pki.Root)
	d := Evaluate(Input{Now: nb, Observed: Observe(true, leaf.CertPEM, leaf.KeyPEM), Wanted: Wanted{DNSNames: []string{"a"}}, Roots: roots, Policy: Policy{Jitter: -1}}, DefaultChecks)
	if d.Needed {
		t.Fatalf("unexpected reissue: %+v", d)
	}
	if want := nb.Add(60 * time.Minute).Truncate(time.Second); !d.RenewAt.Equal(want) {
		t.Errorf("RenewAt = %s, want %s", d.RenewAt, want)
	}
}
