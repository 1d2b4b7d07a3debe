package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"
)

// TestMarshalECPKCS8MatchesX509 compares the fixed-shape encoder with
// crypto/x509 byte for byte, and checks that it parses back to the same
// key, for the curves it handles; other curves must fall back (nil).
func TestMarshalECPKCS8MatchesX509(t *testing.T) {
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		for range 50 {
			k, err := ecdsa.GenerateKey(curve, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			want, err := x509.MarshalPKCS8PrivateKey(k)
			if err != nil {
				t.Fatal(err)
			}
			got := marshalECPKCS8(k)
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: got %x\nwant %x", curve.Params().Name, got, want)
			}
			back, err := x509.ParsePKCS8PrivateKey(got)
			if err != nil || !k.Equal(back) {
				t.Fatalf("%s: does not parse back to the key: %v", curve.Params().Name, err)
			}
		}
	}
	k, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if der := marshalECPKCS8(k); der != nil {
		t.Fatalf("P-521 is not a curve meshca generates; want the x509 fallback, got %x", der)
	}
}

func BenchmarkMarshalECPKCS8(b *testing.B) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("x509", func(b *testing.B) {
		for b.Loop() {
			_, _ = x509.MarshalPKCS8PrivateKey(k)
		}
	})
	b.Run("meshca", func(b *testing.B) {
		for b.Loop() {
			marshalECPKCS8(k)
		}
	})
}
