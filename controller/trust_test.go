package controller

import (
	"bytes"
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/meshca/meshca/authority"
	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/testpki"
	"github.com/meshca/meshca/rotator"
)

// TestTrustExtra: Extra roots follow the CA's in every bundle, once each,
// and a certificate of the extra issuer is not taken for a stranger's by
// the renewal checks; Extra alone never makes a bundle.
func TestTrustExtra(t *testing.T) {
	t.Parallel()
	meshca, other, later := testpki.New(t), testpki.New(t), testpki.New(t)
	tests := map[string]struct {
		extra []*x509.Certificate
		set   []byte
		want  []*x509.Certificate
	}{
		"none":           {set: meshca.RootPEM, want: []*x509.Certificate{meshca.Root}},
		"one extra":      {extra: []*x509.Certificate{other.Root}, set: meshca.RootPEM, want: []*x509.Certificate{meshca.Root, other.Root}},
		"extra already":  {extra: []*x509.Certificate{meshca.Root, other.Root}, set: meshca.RootPEM, want: []*x509.Certificate{meshca.Root, other.Root}},
		"two CA roots":   {extra: []*x509.Certificate{other.Root}, set: append(bytes.Clone(meshca.RootPEM), later.RootPEM...), want: []*x509.Certificate{meshca.Root, later.Root, other.Root}},
		"no trailing nl": {extra: []*x509.Certificate{other.Root}, set: bytes.TrimRight(meshca.RootPEM, "\n"), want: []*x509.Certificate{meshca.Root, other.Root}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tr := &authority.Trust{Extra: tc.extra}
			if err := tr.Set(tc.set); err != nil {
				t.Fatal(err)
			}
			got, err := ca.ParseCertificatesPEM(tr.PEM())
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("bundle has %d roots, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if !got[i].Equal(tc.want[i]) {
					t.Errorf("root %d is %s, want %s", i, got[i].Subject, tc.want[i].Subject)
				}
			}
			snap, err := tr.Snapshot(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []*testpki.PKI{meshca, other} {
				leaf := p.Leaf(t, testpki.LeafOptions{DNSNames: []string{"a.ns.svc"}})
				in := rotator.Input{
					Now:      time.Now(),
					Observed: rotator.Observe(true, leaf.CertPEM, leaf.KeyPEM),
					Wanted:   rotator.Wanted{DNSNames: []string{"a.ns.svc"}},
					Roots:    snap.Pool,
				}
				_, _, needed := rotator.IssuerNotTrusted(in)
				trusted := p == meshca || len(tc.extra) > 0
				if needed == trusted {
					t.Errorf("leaf of %s: IssuerNotTrusted fires = %v, want %v", p.Root.Subject, needed, !trusted)
				}
			}
		})
	}
	t.Run("extra alone is no bundle", func(t *testing.T) {
		t.Parallel()
		tr := &authority.Trust{Extra: []*x509.Certificate{other.Root}}
		if err := tr.Set(nil); err == nil {
			t.Fatal("Set(nil) with Extra succeeded")
		}
		if tr.PEM() != nil {
			t.Fatal("a bundle was published")
		}
	})
}
