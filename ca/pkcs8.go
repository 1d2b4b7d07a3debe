package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/asn1"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ecAlgorithm is the DER of the PKCS#8 AlgorithmIdentifier of an EC key
// per curve meshca generates: id-ecPublicKey with the named curve as its
// parameter (RFC 5480).
var ecAlgorithm = map[elliptic.Curve][]byte{
	elliptic.P256(): ecAlgorithmIdentifier(asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}), // prime256v1
	elliptic.P384(): ecAlgorithmIdentifier(asn1.ObjectIdentifier{1, 3, 132, 0, 34}),          // secp384r1
}

func ecAlgorithmIdentifier(curve asn1.ObjectIdentifier) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}) // id-ecPublicKey
		b.AddASN1ObjectIdentifier(curve)
	})
	return b.BytesOrPanic()
}

// marshalECPKCS8 encodes an EC key of a curve meshca generates exactly as
// x509.MarshalPKCS8PrivateKey does: PrivateKeyInfo{0, algorithm,
// OCTET STRING(ECPrivateKey{1, d, [1] public point})} (RFC 5208, RFC 5915;
// the curve is named once, in the algorithm). Built with cryptobyte, it
// costs a fraction of the reflection-driven encoding/asn1 path, which
// showed up in every issuance. It returns nil for other curves; the caller
// then uses crypto/x509.
func marshalECPKCS8(k *ecdsa.PrivateKey) []byte {
	alg, ok := ecAlgorithm[k.Curve]
	if !ok {
		return nil
	}
	d, err := k.Bytes()
	if err != nil {
		return nil
	}
	defer clear(d)
	pub, err := k.PublicKey.Bytes()
	if err != nil {
		return nil
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, 192))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		b.AddBytes(alg)
		b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(1)
				b.AddASN1OctetString(d)
				b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1BitString(pub)
				})
			})
		})
	})
	der, err := b.Bytes()
	if err != nil {
		return nil
	}
	return der
}
