package rotator

import (
	"testing"
)

// FuzzParsePEM: the PEM parsers the renewal checks use on Secret contents
// (which anyone with write access to a Secret controls) never panic.
func FuzzParsePEM(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\n\n-----END EC PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if certs, err := ParseCertificates(b); err == nil {
			for _, c := range certs {
				if c == nil {
					t.Fatal("nil certificate")
				}
			}
		}
		if k, err := ParsePrivateKey(b); err == nil && k == nil {
			t.Fatal("nil key without error")
		}
	})
}
