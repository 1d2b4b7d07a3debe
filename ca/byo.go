package ca

import (
	"fmt"
)

// Keys of a cert-manager CA Secret (type kubernetes.io/tls).
const (
	CertManagerCert = "tls.crt" // the signing certificate, then its chain
	CertManagerKey  = "tls.key" // the signing certificate's key
	CertManagerCA   = "ca.crt"  // the root (or roots)
)

// Keys of an Istio cacerts Secret.
const (
	IstioCert      = "ca-cert.pem"    // the signing certificate
	IstioKey       = "ca-key.pem"     // its key
	IstioRoot      = "root-cert.pem"  // the root
	IstioCertChain = "cert-chain.pem" // the signing certificate and its chain
)

// FromCertManagerSecret reads a bring-your-own CA from a Secret's data in
// cert-manager's shape: tls.crt (signing certificate and chain), tls.key and
// ca.crt. The root's key is never part of it. Errors wrap ErrInvalidCA.
func FromCertManagerSecret(data map[string][]byte) (*CA, error) {
	c, err := fromParts(data, CertManagerCert, CertManagerKey, CertManagerCA)
	if err != nil {
		return nil, fmt.Errorf("cert-manager CA secret: %w", err)
	}
	return c, nil
}

// FromIstioSecret reads a bring-your-own CA from a Secret's data in Istio's
// cacerts shape: ca-cert.pem, ca-key.pem, root-cert.pem and cert-chain.pem
// (optional when ca-cert.pem is signed by the root directly). Errors wrap
// ErrInvalidCA.
func FromIstioSecret(data map[string][]byte) (*CA, error) {
	chainKey := IstioCertChain
	if len(data[IstioCertChain]) == 0 {
		chainKey = IstioCert
	}
	c, err := fromParts(data, chainKey, IstioKey, IstioRoot)
	if err != nil {
		return nil, fmt.Errorf("istio cacerts secret: %w", err)
	}
	if len(data[IstioCert]) > 0 {
		certs, err := ParseCertificatesPEM(data[IstioCert])
		if err != nil {
			return nil, fmt.Errorf("istio cacerts secret: %w: %s: %w", ErrInvalidCA, IstioCert, err)
		}
		if !sameCert(certs[0], c.Intermediate) {
			return nil, fmt.Errorf("istio cacerts secret: %w: %s does not start with %s", ErrInvalidCA, IstioCertChain, IstioCert)
		}
	}
	return c, nil
}

func fromParts(data map[string][]byte, chainKey, keyKey, rootKey string) (*CA, error) {
	for _, k := range []string{chainKey, keyKey, rootKey} {
		if len(data[k]) == 0 {
			return nil, fmt.Errorf("%w: %s missing or empty", ErrInvalidCA, k)
		}
	}
	chain, err := ParseCertificatesPEM(data[chainKey])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidCA, chainKey, err)
	}
	roots, err := ParseCertificatesPEM(data[rootKey])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidCA, rootKey, err)
	}
	key, err := ParsePrivateKeyPEM(data[keyKey])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidCA, keyKey, err)
	}
	if !publicKeysEqual(key.Public(), chain[0].PublicKey) {
		return nil, fmt.Errorf("%w: %s does not match the first certificate of %s", ErrInvalidCA, keyKey, chainKey)
	}
	var rk = key
	if !isSelfSigned(chain[0]) {
		rk = nil
	}
	return newFromParts(roots, chain, key, rk)
}
