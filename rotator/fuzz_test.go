package rotator

import (
	"testing"
)

// FuzzObserve: reading a Secret's tls.crt and tls.key (which anyone with
// write access to the Secret controls) never panics, and a Secret that
// parses always yields a leaf and a key.
func FuzzObserve(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), []byte(nil))
	f.Add([]byte(nil), []byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("junk"), []byte("-----BEGIN EC PRIVATE KEY-----\n\n-----END EC PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		o := Observe(true, certPEM, keyPEM)
		if o.Err == nil && (o.Leaf == nil || o.Key == nil) {
			t.Fatal("parsed without error but without a leaf or a key")
		}
	})
}
