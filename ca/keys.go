package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// KeyAlgorithm names a key type and size for a CA or a leaf key.
type KeyAlgorithm string

// The supported key algorithms. The zero value of KeyAlgorithm means
// DefaultKeyAlgorithm wherever a Config or request carries one.
const (
	ECDSAP256 KeyAlgorithm = "ecdsa-p256"
	ECDSAP384 KeyAlgorithm = "ecdsa-p384"
	RSA2048   KeyAlgorithm = "rsa-2048"
	RSA3072   KeyAlgorithm = "rsa-3072"
	RSA4096   KeyAlgorithm = "rsa-4096"
	Ed25519   KeyAlgorithm = "ed25519"

	DefaultKeyAlgorithm = ECDSAP256
)

// KeyAlgorithms lists every supported algorithm, default first.
var KeyAlgorithms = []KeyAlgorithm{ECDSAP256, ECDSAP384, RSA2048, RSA3072, RSA4096, Ed25519}

// ErrUnknownKeyAlgorithm is returned for a key algorithm name or a key type
// meshca does not support.
var ErrUnknownKeyAlgorithm = errors.New("unknown key algorithm")

// ParseKeyAlgorithm parses a name such as "ecdsa-p256" (case-insensitive).
// The empty string means DefaultKeyAlgorithm.
func ParseKeyAlgorithm(s string) (KeyAlgorithm, error) {
	if s == "" {
		return DefaultKeyAlgorithm, nil
	}
	a := KeyAlgorithm(strings.ToLower(strings.TrimSpace(s)))
	for _, k := range KeyAlgorithms {
		if a == k {
			return a, nil
		}
	}
	return "", fmt.Errorf("%w %q (want one of %s)", ErrUnknownKeyAlgorithm, s, joinAlgorithms())
}

func joinAlgorithms() string {
	names := make([]string, len(KeyAlgorithms))
	for i, k := range KeyAlgorithms {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

// GenerateKey creates a private key of the given algorithm; "" means
// DefaultKeyAlgorithm.
func GenerateKey(a KeyAlgorithm) (crypto.Signer, error) {
	switch a {
	case ECDSAP256, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("generate key: %w %q", ErrUnknownKeyAlgorithm, a)
}

// KeyAlgorithmOf names the algorithm of a public key.
func KeyAlgorithmOf(pub crypto.PublicKey) (KeyAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return ECDSAP256, nil
		case elliptic.P384():
			return ECDSAP384, nil
		}
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048:
			return RSA2048, nil
		case 3072:
			return RSA3072, nil
		case 4096:
			return RSA4096, nil
		}
	case ed25519.PublicKey:
		return Ed25519, nil
	}
	return "", fmt.Errorf("%w: public key %T", ErrUnknownKeyAlgorithm, pub)
}

// MarshalPrivateKeyPEM encodes a key as a PKCS#8 "PRIVATE KEY" PEM block.
func MarshalPrivateKeyPEM(k crypto.Signer) ([]byte, error) {
	var der []byte
	if ek, ok := k.(*ecdsa.PrivateKey); ok {
		der = marshalECPKCS8(ek)
	}
	if der == nil {
		var err error
		if der, err = x509.MarshalPKCS8PrivateKey(k); err != nil {
			return nil, fmt.Errorf("marshal private key: %w", err)
		}
	}
	out := AppendPEM(nil, "PRIVATE KEY", der)
	clear(der)
	return out, nil
}

// ParsePrivateKeyPEM reads the first private key PEM block: PKCS#8, PKCS#1
// ("RSA PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY"), the shapes cert-manager and
// Istio write.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no private key PEM block")
		}
		var (
			k   any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", strings.ToLower(block.Type), err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("private key of type %T cannot sign", k)
		}
		return s, nil
	}
}

// ParseCertificatesPEM reads every CERTIFICATE block, in order, and fails if
// there is none.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return certs, nil
}

// EncodeCertificatesPEM encodes certificates as consecutive PEM blocks.
func EncodeCertificatesPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = AppendPEM(out, "CERTIFICATE", c.Raw)
	}
	return out
}

// publicKeysEqual reports whether a key pair matches.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}
