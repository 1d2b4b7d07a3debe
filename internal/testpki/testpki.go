// Package testpki is the one test PKI helper of meshca's tests: a throwaway
// root and intermediate and leaves signed by them, built with crypto/x509
// alone so tests of the CA code do not depend on the code under test.
// It is for tests only.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"sync/atomic"
	"testing"
	"time"
)

// PKI is a root and an intermediate CA, both ECDSA P-256.
type PKI struct {
	Root               *x509.Certificate
	RootKey            crypto.Signer
	Intermediate       *x509.Certificate
	IntermediateKey    crypto.Signer
	RootPEM            []byte
	IntermediatePEM    []byte
	RootKeyPEM         []byte
	IntermediateKeyPEM []byte
}

// Leaf is a certificate signed by the intermediate, with its key.
type Leaf struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte // the leaf followed by the intermediate
	KeyPEM  []byte // PKCS#8
}

// LeafOptions describe a leaf. Zero values mean: 1h lifetime starting a
// minute ago, serverAuth and clientAuth, no names.
type LeafOptions struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	URIs       []string
	NotBefore  time.Time
	NotAfter   time.Time
	Usages     []x509.ExtKeyUsage
}

var serial atomic.Int64

// nextSerial is safe for parallel tests; the random high bits keep serials of
// separate test binaries apart.
func nextSerial() *big.Int {
	n := new(big.Int).Lsh(big.NewInt(time.Now().UnixNano()), 32)
	return n.Add(n, big.NewInt(serial.Add(1)))
}

// New creates a root and an intermediate valid from an hour ago for a day.
func New(t testing.TB) *PKI {
	t.Helper()
	now := time.Now()
	rootKey := newKey(t)
	rootTmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: "testpki root", Organization: []string{"meshca tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	root := sign(t, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	intKey := newKey(t)
	intTmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: "testpki intermediate", Organization: []string{"meshca tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	inter := sign(t, intTmpl, root, intKey.Public(), rootKey)
	return &PKI{
		Root: root, RootKey: rootKey, Intermediate: inter, IntermediateKey: intKey,
		RootPEM: CertPEM(root), IntermediatePEM: CertPEM(inter),
		RootKeyPEM: KeyPEM(t, rootKey), IntermediateKeyPEM: KeyPEM(t, intKey),
	}
}

// Leaf signs a leaf with the intermediate.
func (p *PKI) Leaf(t testing.TB, o LeafOptions) *Leaf {
	t.Helper()
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Minute)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.Add(time.Hour)
	}
	if o.Usages == nil {
		o.Usages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: o.CommonName},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  o.Usages,
		DNSNames:     o.DNSNames,
		IPAddresses:  o.IPs,
	}
	for _, u := range o.URIs {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatalf("testpki: parse URI %q: %v", u, err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	key := newKey(t)
	cert := sign(t, tmpl, p.Intermediate, key.Public(), p.IntermediateKey)
	return &Leaf{
		Cert:    cert,
		Key:     key,
		CertPEM: append(CertPEM(cert), p.IntermediatePEM...),
		KeyPEM:  KeyPEM(t, key),
	}
}

// CertPEM encodes a certificate as PEM.
func CertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// KeyPEM encodes a private key as PKCS#8 PEM.
func KeyPEM(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatalf("testpki: marshal key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func newKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testpki: generate key: %v", err)
	}
	return k
}

func sign(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatalf("testpki: create certificate: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testpki: parse certificate: %v", err)
	}
	return c
}
