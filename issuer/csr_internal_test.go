package issuer

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"testing"

	"github.com/meshca/meshca/ca"
)

// TestNewCertificateRequest proves the hand-built request is what
// x509.CreateCertificateRequest would make: it parses and its signature
// verifies, for every key algorithm.
func TestNewCertificateRequest(t *testing.T) {
	t.Parallel()
	for _, alg := range ca.KeyAlgorithms {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			key, err := ca.GenerateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			der, err := newCertificateRequest(key)
			if err != nil {
				t.Fatal(err)
			}
			csr, err := x509.ParseCertificateRequest(der)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if err := csr.CheckSignature(); err != nil {
				t.Fatalf("signature: %v", err)
			}
			if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(csr.PublicKey) {
				t.Fatal("public key differs")
			}
			ref, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
			if err != nil {
				t.Fatal(err)
			}
			// Same TBS and algorithm as the standard library's request.
			want, err := x509.ParseCertificateRequest(ref)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(csr.RawTBSCertificateRequest, want.RawTBSCertificateRequest) || csr.SignatureAlgorithm != want.SignatureAlgorithm {
				t.Errorf("request differs from crypto/x509's: %v vs %v", csr.SignatureAlgorithm, want.SignatureAlgorithm)
			}
		})
	}
}
