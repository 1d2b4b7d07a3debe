package issuer

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca"
)

// LocalConfig configures the local backend: the CA to sign with (its
// Current slot; nil means none until SetCA), and the pipeline's settings,
// which mean what the issuer.Config fields of the same names mean (zero
// values are their defaults).
type LocalConfig struct {
	CA                  *ca.State
	Policy              Policy
	Clock               clock.PassiveClock
	Backdate            time.Duration
	DefaultDuration     time.Duration
	DefaultKeyAlgorithm ca.KeyAlgorithm
}

// Local is the Issuer pipeline signing with meshca's own CA (a LocalSigner),
// whose CA can be swapped at run time with SetCA. It is safe for concurrent
// use.
type Local struct {
	*Issuer
}

// NewLocal returns an issuer that signs with cfg.CA.
func NewLocal(cfg LocalConfig) (*Local, error) {
	iss, err := New(Config{
		Policy: cfg.Policy, Clock: cfg.Clock, Backdate: cfg.Backdate,
		DefaultDuration: cfg.DefaultDuration, DefaultKeyAlgorithm: cfg.DefaultKeyAlgorithm,
	})
	if err != nil {
		return nil, err
	}
	l := &Local{Issuer: iss}
	if cfg.CA != nil {
		if err := l.SetCA(cfg.CA); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// SetCA makes st's Current CA the one that signs, and st's bundle the one
// returned, atomically for concurrent Issue calls.
func (l *Local) SetCA(st *ca.State) error {
	s, err := NewLocalSigner(st)
	if err != nil {
		return err
	}
	return l.SetSigner(s)
}

// LocalSigner signs with meshca's own CA: one x509.CreateCertificate per
// certificate (see docs/design.md, "Issuance without cfssl", for why not
// cfssl's CSR-based local signer). It is everything signing needs from one
// CA state, prepared once so the hot path neither parses nor re-verifies
// the CA, and it never changes: a new CA is a new LocalSigner.
type LocalSigner struct {
	ca          *ca.CA
	constraints *nameConstraints
	profileErr  map[Profile]error // why the chain cannot issue a profile
	roots       []*x509.Certificate
	anchor      *x509.CertPool // the top of the chain, verified against roots once
	below       *x509.CertPool // the chain under the anchor (empty for two levels)
	notBefore   time.Time      // latest NotBefore of the chain
	notAfter    time.Time      // earliest NotAfter of the chain and its root
}

var (
	_ Signer       = (*LocalSigner)(nil)
	_ Bounded      = (*LocalSigner)(nil)
	_ Rooted       = (*LocalSigner)(nil)
	_ ChainChecker = (*LocalSigner)(nil)
)

// NewLocalSigner prepares st's Current CA for signing and st's roots as
// the trust bundle. It verifies the signing chain against the bundle, once.
func NewLocalSigner(st *ca.State) (*LocalSigner, error) {
	if st == nil || st.Current == nil || !st.Current.CanSign() {
		return nil, fmt.Errorf("set CA: %w", ErrNoCA)
	}
	c := st.Current
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("set CA: %w", err)
	}
	s := &LocalSigner{
		ca:          c,
		constraints: gatherConstraints(append([]*x509.Certificate{c.Root}, c.Chain...)),
		profileErr:  map[Profile]error{},
		roots:       st.Roots(),
		anchor:      x509.NewCertPool(),
		below:       x509.NewCertPool(),
		notBefore:   c.Root.NotBefore,
		notAfter:    c.Root.NotAfter,
	}
	roots := x509.NewCertPool()
	for _, r := range s.roots {
		roots.AddCert(r)
	}
	chain := x509.NewCertPool()
	for i, cert := range c.Chain {
		chain.AddCert(cert)
		if i < len(c.Chain)-1 {
			s.below.AddCert(cert)
		}
		if cert.NotBefore.After(s.notBefore) {
			s.notBefore = cert.NotBefore
		}
		if cert.NotAfter.Before(s.notAfter) {
			s.notAfter = cert.NotAfter
		}
	}
	// The chain is verified against the bundle once, here. CheckChain
	// verifies each leaf up to the top of this verified chain (the root
	// itself when it signs), so it pays one signature check per leaf, not
	// one per level.
	top := c.Root
	if len(c.Chain) > 0 {
		top = c.Chain[len(c.Chain)-1]
	}
	s.anchor.AddCert(top)
	if _, err := c.Intermediate.Verify(x509.VerifyOptions{Roots: roots, Intermediates: chain, CurrentTime: s.notBefore,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("set CA: %w: signing certificate does not chain to the trust bundle: %w", ca.ErrInvalidCA, err)
	}
	// Extended key usages nest down a chain: a signing certificate limited
	// to serverAuth cannot vouch for clientAuth. Which profiles this chain
	// can issue is decided here, once.
	for _, p := range Profiles {
		if _, err := c.Intermediate.Verify(x509.VerifyOptions{Roots: roots, Intermediates: chain, CurrentTime: s.notBefore,
			KeyUsages: p.ExtKeyUsages()}); err != nil {
			s.profileErr[p] = fmt.Errorf("the signing chain does not allow the usages of profile %s: %w", p, err)
		}
	}
	return s, nil
}

// Window is the validity of the signing chain and its root.
func (s *LocalSigner) Window() (notBefore, notAfter time.Time) { return s.notBefore, s.notAfter }

// Roots is the trust bundle of the CA state the signer was made from.
func (s *LocalSigner) Roots() []*x509.Certificate { return s.roots }

// CanIssue reports why the signing chain cannot issue profile p (its
// usages are outside what the chain allows), nil when it can.
func (s *LocalSigner) CanIssue(p Profile) error { return s.profileErr[p] }

// Sign signs the template with the CA's signing key.
func (s *LocalSigner) Sign(_ context.Context, req SignRequest) (*SignResponse, error) {
	if err := s.CanIssue(req.Profile); err != nil {
		return nil, err
	}
	// CreateCertificate refuses a signing key that does not match the
	// intermediate's public key, and verifies the signature it made with
	// that key before returning: with the intermediate verified against the
	// bundle in NewLocalSigner, the new leaf chains to the bundle by
	// construction.
	der, err := x509.CreateCertificate(rand.Reader, req.Template, s.ca.Intermediate, req.PublicKey, s.ca.IntermediateKey)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCheckFailed, err)
	}
	return &SignResponse{Leaf: leaf, Chain: s.ca.Chain, Issuer: s.ca.Intermediate}, nil
}

// CheckChain is the local backend's faster chain check. For the chain it
// relies on what is already proven instead of a second signature
// verification: NewLocalSigner verified the signing chain against the
// bundle and the chain's usages per profile, and CreateCertificate verified
// the leaf's signature under the intermediate's key. What is left to check
// structurally is that the leaf names the intermediate as its issuer (name
// and key identifier), falls inside the chain's validity, and satisfies its
// name constraints. Chains with constraints the fast check does not read
// get a full Verify. The Issuer compares the leaf's contents afterwards.
func (s *LocalSigner) CheckChain(leaf *x509.Certificate, e Expected) error {
	in := s.ca.Intermediate
	if !bytes.Equal(leaf.RawIssuer, in.RawSubject) {
		return errors.New("issuer name is not the signing certificate's subject")
	}
	if len(in.SubjectKeyId) > 0 && !bytes.Equal(leaf.AuthorityKeyId, in.SubjectKeyId) {
		return errors.New("authority key identifier is not the signing certificate's key identifier")
	}
	if leaf.NotBefore.Before(s.notBefore) || e.Now.Before(s.notBefore) {
		return fmt.Errorf("valid from %s, before the signing chain (%s)", leaf.NotBefore, s.notBefore)
	}
	switch err := s.constraints.check(leaf); {
	case errors.Is(err, errUnsupported):
		e.Roots, e.Intermediates = s.anchor, s.below
		return verifyChain(leaf, e)
	case err != nil:
		return fmt.Errorf("violates the CA's name constraints: %w", err)
	}
	return nil
}
