package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"net/url"
	"time"

	"github.com/meshca/meshca/ca"
)

// template is the certificate a normalized, policy-checked request asks
// for: the profile fixes the usages, the request the names and validity.
// The serial is 127 random bits; the subject is the first DNS name when it
// fits a CommonName, else empty (crypto/x509 then marks the SAN extension
// critical, as RFC 5280 asks).
func template(req Request, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	serial, err := ca.NewSerial()
	if err != nil {
		return nil, err
	}
	t := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           req.Profile.ExtKeyUsages(),
		BasicConstraintsValid: true,
		DNSNames:              req.DNSNames,
		IPAddresses:           req.IPAddresses,
	}
	if cn := req.CommonName(); cn != "" {
		t.Subject = pkix.Name{CommonName: cn}
	}
	uris := req.URIs
	if req.SPIFFEID != "" {
		uris = append([]string{req.SPIFFEID}, req.URIs...)
	}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("%w: URI %q: %w", ErrInvalidRequest, s, err)
		}
		t.URIs = append(t.URIs, u)
	}
	return t, nil
}

// subjectKeyID is the leftmost 160 bits of the SHA-256 of the
// subjectPublicKey bits (RFC 7093 section 2, method 1), the method
// crypto/x509 uses for the CA certificates it creates. The bits are taken
// from the key directly for the algorithms meshca generates; anything else
// goes through the PKIX encoding.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	var bits []byte
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		var err error
		if bits, err = k.Bytes(); err != nil {
			return nil, fmt.Errorf("subject key identifier: %w", err)
		}
	case ed25519.PublicKey:
		bits = k
	case *rsa.PublicKey:
		bits = x509.MarshalPKCS1PublicKey(k)
	default:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("subject key identifier: %w", err)
		}
		var spki struct {
			Algorithm pkix.AlgorithmIdentifier
			PublicKey asn1.BitString
		}
		if _, err := asn1.Unmarshal(der, &spki); err != nil {
			return nil, fmt.Errorf("subject key identifier: %w", err)
		}
		bits = spki.PublicKey.Bytes
	}
	sum := sha256.Sum256(bits)
	return sum[:20], nil
}
