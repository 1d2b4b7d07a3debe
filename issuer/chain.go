package issuer

import (
	"bytes"
	"crypto/x509"
	"errors"
	"slices"
	"time"

	"github.com/meshca/meshca/ca"
)

// chainFacts is what the pipeline derives from the chain a signer answers
// with. It is kept while the signer answers with the same chain (the local
// CA always does), so the hot path neither re-encodes nor re-hashes it.
type chainFacts struct {
	issuer *x509.Certificate   // signed the leaf
	chain  []*x509.Certificate // as the signer returned it
	// pem is the chain as it follows the leaf in tls.crt.
	pem []byte
	// fingerprint names the issuer (Bundle.IssuerFingerprint).
	fingerprint string
	// end is the earliest NotAfter of the chain and of the roots that may
	// have issued its top: no leaf may outlive it. Zero when there is no
	// chain and the signer names no roots.
	end time.Time
}

// chainFacts returns the facts of resp's chain, from the last answer when
// the chain is the same. Their end also caps the validity of later
// requests (validity), so that a chain shorter-lived than the lifetime
// asked for, which a remote CA's Window cannot know before it answers,
// costs one refused certificate, not every one.
func (s *signerSlot) chainFacts(resp *SignResponse) (*chainFacts, error) {
	issuer := resp.Issuer
	if issuer == nil && len(resp.Chain) > 0 {
		issuer = resp.Chain[0]
	}
	if issuer == nil {
		return nil, errors.New("the signer named no issuer of the certificate")
	}
	if last := s.chain.Load(); last != nil && last.issuer == issuer && slices.Equal(last.chain, resp.Chain) {
		return last, nil
	}
	f := &chainFacts{
		issuer:      issuer,
		chain:       resp.Chain,
		pem:         ca.EncodeCertificatesPEM(resp.Chain...),
		fingerprint: ca.Fingerprint(issuer),
	}
	for _, c := range resp.Chain {
		if f.end.IsZero() || c.NotAfter.Before(f.end) {
			f.end = c.NotAfter
		}
	}
	// The root that issued the top of the chain; with no chain, the issuer
	// is a root itself.
	topIssuer := issuer.RawSubject
	if len(resp.Chain) > 0 {
		topIssuer = resp.Chain[len(resp.Chain)-1].RawIssuer
	}
	var root time.Time
	for _, r := range s.roots {
		if bytes.Equal(r.RawSubject, topIssuer) && r.NotAfter.After(root) {
			root = r.NotAfter
		}
	}
	if !root.IsZero() && (f.end.IsZero() || root.Before(f.end)) {
		f.end = root
	}
	s.chain.Store(f)
	return f, nil
}
