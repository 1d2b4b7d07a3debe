package issuer

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Expected is what a signed certificate must be; CheckCertificate compares
// a certificate with it.
type Expected struct {
	// Request is the normalized request the certificate answers.
	Request Request
	// PublicKey is the public half of the key generated for the request.
	PublicKey crypto.PublicKey
	// Roots are the anchors the certificate must chain to; Intermediates
	// the certificates between them and the leaf (may be empty).
	Roots, Intermediates *x509.CertPool
	// Now is when the chain must be valid.
	Now time.Time
	// NotBefore and NotAfter are the exact validity the issuer asked for.
	NotBefore, NotAfter time.Time
	// MaxNotAfter is the earliest NotAfter of the issuing chain: the leaf
	// must not outlive it. Zero means no such bound beyond Verify's.
	MaxNotAfter time.Time
}

// CheckCertificate is the gate every signed certificate passes before an
// issuer returns it, whichever backend signed it: the certificate chains to
// the roots for its profile's usages, carries the generated key, exactly the
// requested names and usages and the expected validity, and is no CA. The
// error says what differs; callers wrap it with ErrCheckFailed.
func CheckCertificate(leaf *x509.Certificate, e Expected) error {
	if err := verifyChain(leaf, e); err != nil {
		return err
	}
	return checkContents(leaf, e)
}

// verifyChain checks the leaf's signature, the CA's name constraints,
// validity and usages up to e.Roots.
func verifyChain(leaf *x509.Certificate, e Expected) error {
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: e.Roots, Intermediates: e.Intermediates, CurrentTime: e.Now, KeyUsages: e.Request.Profile.ExtKeyUsages()}); err != nil {
		return fmt.Errorf("does not chain to the trust bundle: %w", err)
	}
	return nil
}

// checkContents compares everything but the chain: key, usages, validity
// and names.
func checkContents(leaf *x509.Certificate, e Expected) error {
	req := e.Request
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if k, ok := e.PublicKey.(equaler); !ok || !k.Equal(leaf.PublicKey) {
		return errors.New("public key is not the generated key")
	}
	if leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		return fmt.Errorf("wrong basic constraints or key usage (IsCA=%v, KeyUsage=%d)", leaf.IsCA, leaf.KeyUsage)
	}
	if !slices.Equal(leaf.ExtKeyUsage, req.Profile.ExtKeyUsages()) || len(leaf.UnknownExtKeyUsage) > 0 {
		return fmt.Errorf("extended key usages %v, want %v", leaf.ExtKeyUsage, req.Profile.ExtKeyUsages())
	}
	if !leaf.NotBefore.Equal(e.NotBefore) || !leaf.NotAfter.Equal(e.NotAfter) || (!e.MaxNotAfter.IsZero() && leaf.NotAfter.After(e.MaxNotAfter)) {
		return fmt.Errorf("validity %s to %s, want %s to %s", leaf.NotBefore, leaf.NotAfter, e.NotBefore, e.NotAfter)
	}
	if !slices.Equal(leaf.DNSNames, req.DNSNames) {
		return fmt.Errorf("DNS names %v, want %v", leaf.DNSNames, req.DNSNames)
	}
	if len(leaf.IPAddresses) != len(req.IPAddresses) || len(leaf.EmailAddresses) != 0 {
		return fmt.Errorf("IP addresses %v, want %v", leaf.IPAddresses, req.IPAddresses)
	}
	for i, ip := range leaf.IPAddresses {
		if !ip.Equal(req.IPAddresses[i]) {
			return fmt.Errorf("IP addresses %v, want %v", leaf.IPAddresses, req.IPAddresses)
		}
	}
	uris := make([]string, len(leaf.URIs))
	for i, u := range leaf.URIs {
		uris[i] = u.String()
	}
	want := req.URIs
	if req.SPIFFEID != "" {
		want = append([]string{req.SPIFFEID}, req.URIs...)
	}
	if !slices.Equal(uris, want) {
		return fmt.Errorf("URIs %v, want %v", uris, want)
	}
	return nil
}
