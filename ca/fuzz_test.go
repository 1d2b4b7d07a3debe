package ca

import (
	"strings"
	"testing"
	"time"
)

// FuzzStateFromSecretData: any CA Secret content is either refused with an
// error wrapping ErrInvalidCA or yields a state with a current CA; it never
// panics and errors never echo key material.
func FuzzStateFromSecretData(f *testing.F) {
	c, err := New(Config{TrustDomain: "cluster.local"})
	if err != nil {
		f.Fatal(err)
	}
	data, err := NewState(c, "fuzz", time.Unix(0, 0)).SecretData()
	if err != nil {
		f.Fatal(err)
	}
	rootCrt, rootKey, intCrt, intKey := SlotKeys(SlotCurrent)
	f.Add(data[rootCrt], data[rootKey], data[intCrt], data[intKey], data[KeyState])
	f.Add([]byte("x"), []byte(nil), []byte("y"), []byte("z"), []byte("{}"))
	f.Fuzz(func(t *testing.T, rc, rk, ic, ik, state []byte) {
		in := map[string][]byte{rootCrt: rc, intCrt: ic, intKey: ik, KeyState: state}
		if rk != nil {
			in[rootKey] = rk
		}
		st, err := StateFromSecretData(in)
		if err != nil {
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Fatalf("error echoes key material: %v", err)
			}
			return
		}
		if st.Get(SlotCurrent) == nil {
			t.Fatal("accepted a state without a current CA")
		}
	})
}

// FuzzParseCertificatesPEM never panics; what it returns is non-nil.
func FuzzParseCertificatesPEM(f *testing.F) {
	c, err := New(Config{TrustDomain: "cluster.local"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(EncodeCertificatesPEM(c.Root, c.Intermediate))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		certs, err := ParseCertificatesPEM(b)
		if err != nil {
			return
		}
		for _, c := range certs {
			if c == nil {
				t.Fatal("nil certificate")
			}
		}
		_, _ = ParsePrivateKeyPEM(b)
	})
}
