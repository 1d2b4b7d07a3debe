package issuer_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"testing"
	"time"

	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/issuer"
)

// BenchmarkIssue compares, per key algorithm, a full issuance (policy, key,
// signing, post-sign check, PEM) with the floor: key generation and
// x509.CreateCertificate with no framework around it. Compare them with
//
//	go test -run '^$' -bench . -benchtime 2s ./issuer
func BenchmarkIssue(b *testing.B) {
	st := newCA(b, ca.ECDSAP256)
	l, err := issuer.NewLocal(issuer.LocalConfig{CA: st, Clock: clock.RealClock{}})
	if err != nil {
		b.Fatal(err)
	}
	c := st.Current
	spiffe, _ := url.Parse("spiffe://cluster.local/ns/shop/sa/api")
	for _, alg := range ca.KeyAlgorithms {
		b.Run(string(alg)+"/floor", func(b *testing.B) {
			for b.Loop() {
				key, err := ca.GenerateKey(alg)
				if err != nil {
					b.Fatal(err)
				}
				serial, _ := ca.NewSerial()
				now := time.Now()
				tmpl := &x509.Certificate{
					SerialNumber: serial,
					Subject:      pkix.Name{CommonName: "api.shop.svc"},
					NotBefore:    now.Add(-time.Minute),
					NotAfter:     now.Add(24 * time.Hour),
					KeyUsage:     x509.KeyUsageDigitalSignature,
					ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
					DNSNames:     []string{"api.shop.svc", "api.shop.svc.cluster.local"},
					URIs:         []*url.URL{spiffe},
				}
				if _, err := x509.CreateCertificate(rand.Reader, tmpl, c.Intermediate, key.Public(), c.IntermediateKey); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(alg)+"/issue", func(b *testing.B) {
			req := workloadRequest("shop")
			req.KeyAlgorithm = alg
			ctx := context.Background()
			for b.Loop() {
				if _, err := l.Issue(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
