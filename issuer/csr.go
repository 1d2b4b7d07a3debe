package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
)

// Signature algorithm identifiers of RFC 5758, RFC 4055 and RFC 8410.
var (
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidEd25519         = asn1.ObjectIdentifier{1, 3, 101, 112}
)

type tbsCertificateRequest struct {
	Version       int
	Subject       asn1.RawValue
	PublicKey     asn1.RawValue
	RawAttributes []asn1.RawValue `asn1:"tag:0"`
}

type certificateRequest struct {
	TBS                asn1.RawValue
	SignatureAlgorithm pkix.AlgorithmIdentifier
	SignatureValue     asn1.BitString
}

// emptyName is the DER of an empty RDNSequence.
var emptyName = asn1.RawValue{FullBytes: []byte{0x30, 0x00}}

// newCertificateRequest returns a PKCS#10 request (DER) for key with an
// empty subject and no attributes: cfssl's local signer takes only the
// public key from it. It exists because x509.CreateCertificateRequest
// verifies the signature it has just made, and cfssl verifies it again at
// once; on the issuance hot path that first verification is pure cost.
func newCertificateRequest(key crypto.Signer) ([]byte, error) {
	var (
		alg  pkix.AlgorithmIdentifier
		hash crypto.Hash
	)
	switch pub := key.Public().(type) {
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			alg, hash = pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA256}, crypto.SHA256
		case elliptic.P384():
			alg, hash = pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA384}, crypto.SHA384
		default:
			return nil, fmt.Errorf("certificate request: unsupported curve %s", pub.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		alg, hash = pkix.AlgorithmIdentifier{Algorithm: oidSHA256WithRSA, Parameters: asn1.NullRawValue}, crypto.SHA256
	case ed25519.PublicKey:
		alg = pkix.AlgorithmIdentifier{Algorithm: oidEd25519}
	default:
		return nil, fmt.Errorf("certificate request: unsupported key %T", pub)
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	tbs, err := asn1.Marshal(tbsCertificateRequest{Subject: emptyName, PublicKey: asn1.RawValue{FullBytes: spki}, RawAttributes: []asn1.RawValue{}})
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	signed := tbs
	if hash != 0 {
		h := hash.New()
		h.Write(tbs)
		signed = h.Sum(nil)
	}
	sig, err := key.Sign(rand.Reader, signed, hash)
	if err != nil {
		return nil, fmt.Errorf("certificate request: sign: %w", err)
	}
	der, err := asn1.Marshal(certificateRequest{
		TBS:                asn1.RawValue{FullBytes: tbs},
		SignatureAlgorithm: alg,
		SignatureValue:     asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
	})
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	return der, nil
}
