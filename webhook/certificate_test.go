package webhook

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/internal/testpki"
)

func TestFileCertificate(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	write := func(leaf *testpki.Leaf, key []byte) {
		t.Helper()
		if err := os.WriteFile(certFile, leaf.CertPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := NewFileCertificate(FileCertificateConfig{CertFile: certFile, KeyFile: keyFile}); err == nil {
		t.Error("missing files: no error")
	}
	first := pki.Leaf(t, testpki.LeafOptions{CommonName: "first"})
	write(first, first.KeyPEM)
	clock := clocktesting.NewFakeClock(time.Now())
	certs, err := NewFileCertificate(FileCertificateConfig{CertFile: certFile, KeyFile: keyFile, Interval: time.Minute, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	serving := func() string {
		c, err := certs.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.Subject.CommonName
	}
	if got := serving(); got != "first" {
		t.Fatalf("serving %q, want first", got)
	}
	run(t, "FileCertificate", certs.Start)
	tick := func() {
		t.Helper()
		eventually(t, 10*time.Second, "the ticker", func() (bool, error) { return clock.HasWaiters(), nil })
		clock.Step(time.Minute)
	}

	// Half-written (new certificate, old key): the old pair stays.
	second := pki.Leaf(t, testpki.LeafOptions{CommonName: "second"})
	write(second, first.KeyPEM)
	tick()
	if got := serving(); got != "first" {
		t.Errorf("with a mismatched key serving %q, want first", got)
	}
	write(second, second.KeyPEM)
	tick()
	eventually(t, 10*time.Second, "the rewritten files", func() (bool, error) { return serving() == "second", nil })
}

func TestKeyPair(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t)
	leaf := pki.Leaf(t, testpki.LeafOptions{})
	cases := map[string]struct {
		cert, key   []byte
		wantChanged bool
		wantErr     bool
	}{
		"first load":     {leaf.CertPEM, leaf.KeyPEM, true, false},
		"same again":     {leaf.CertPEM, leaf.KeyPEM, false, false},
		"garbage":        {[]byte("not pem"), leaf.KeyPEM, false, true},
		"empty":          {nil, nil, false, true},
		"mismatched key": {leaf.CertPEM, pki.IntermediateKeyPEM, false, true},
	}
	k := newKeyPair()
	if _, err := k.GetCertificate(nil); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("empty: %v, want ErrNoCertificate", err)
	}
	// Ordered: each step builds on the state the previous one left.
	for _, name := range []string{"first load", "same again", "garbage", "empty", "mismatched key"} {
		tc := cases[name]
		changed, err := k.load(tc.cert, tc.key)
		if changed != tc.wantChanged || (err != nil) != tc.wantErr {
			t.Errorf("%s: changed=%v err=%v, want changed=%v error=%v", name, changed, err, tc.wantChanged, tc.wantErr)
		}
		if c, err := k.GetCertificate(nil); err != nil || c.Leaf.SerialNumber.Cmp(leaf.Cert.SerialNumber) != 0 {
			t.Errorf("%s: serving %v, %v; want the first leaf", name, c, err)
		}
	}
}
