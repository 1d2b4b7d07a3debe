package issuer

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca"
)

// Defaults of LocalConfig.
const (
	DefaultBackdate = time.Minute
	DefaultDuration = 24 * time.Hour
)

var (
	// ErrNoCA means the issuer has no CA to sign with yet.
	ErrNoCA = errors.New("no CA to sign with")
	// ErrCAExpired means the issuing CA is not valid now.
	ErrCAExpired = errors.New("issuing CA is not valid now")
	// ErrCheckFailed means a signed certificate failed the check that runs
	// before it is returned; it is never handed out.
	ErrCheckFailed = errors.New("signed certificate failed its check")
)

// LocalConfig configures the local backend. Zero fields mean the defaults
// documented on each.
type LocalConfig struct {
	// CA to sign with (its Current slot); nil means none until SetCA.
	CA *ca.State
	// Policy applied to every request. The zero value is the namespace
	// policy for cluster.local; the CLI passes OperatorPolicy().
	Policy Policy
	// Clock supplies the current time; nil means the real clock.
	Clock clock.PassiveClock
	// Backdate is subtracted from NotBefore; 0 means 1 minute.
	Backdate time.Duration
	// DefaultDuration is the lifetime of a request without one; 0 means 24h.
	DefaultDuration time.Duration
	// DefaultKeyAlgorithm for a request without one; "" means ecdsa-p256.
	DefaultKeyAlgorithm ca.KeyAlgorithm
}

// Local signs with meshca's own CA: one key generation and one
// x509.CreateCertificate per certificate (see docs/design.md, "Issuance
// without cfssl", for why not cfssl's CSR-based local signer). It is safe
// for concurrent use, and its CA can be swapped at run time with SetCA.
type Local struct {
	cfg     LocalConfig
	current atomic.Pointer[signingCA]
}

// signingCA is everything Issue needs from one CA state, prepared once so
// the hot path neither parses nor re-verifies the CA.
type signingCA struct {
	ca          *ca.CA
	constraints *nameConstraints
	profileErr  map[Profile]error // why the chain cannot issue a profile
	roots       *x509.CertPool    // the trust bundle
	anchor      *x509.CertPool    // the top of the chain, verified against roots once
	below       *x509.CertPool    // the chain under the anchor (empty for two levels)
	chainPEM    []byte
	bundlePEM   []byte
	fingerprint string
	notBefore   time.Time // latest NotBefore of the chain
	notAfter    time.Time // earliest NotAfter of the chain and its root
}

// NewLocal returns a local issuer.
func NewLocal(cfg LocalConfig) (*Local, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Backdate == 0 {
		cfg.Backdate = DefaultBackdate
	}
	if cfg.DefaultDuration == 0 {
		cfg.DefaultDuration = DefaultDuration
	}
	if cfg.Backdate < 0 || cfg.DefaultDuration < 0 {
		return nil, errors.New("new local issuer: backdate and default duration must be positive")
	}
	alg, err := ca.ParseKeyAlgorithm(string(cfg.DefaultKeyAlgorithm))
	if err != nil {
		return nil, fmt.Errorf("new local issuer: %w", err)
	}
	cfg.DefaultKeyAlgorithm = alg
	l := &Local{cfg: cfg}
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
	if st == nil || st.Current == nil || !st.Current.CanSign() {
		return fmt.Errorf("set CA: %w", ErrNoCA)
	}
	c := st.Current
	if err := c.Validate(); err != nil {
		return fmt.Errorf("set CA: %w", err)
	}
	sc := &signingCA{
		ca:          c,
		constraints: gatherConstraints(append([]*x509.Certificate{c.Root}, c.Chain...)),
		profileErr:  map[Profile]error{},
		roots:       x509.NewCertPool(),
		anchor:      x509.NewCertPool(),
		below:       x509.NewCertPool(),
		chainPEM:    ca.EncodeCertificatesPEM(c.Chain...),
		bundlePEM:   st.Bundle(),
		fingerprint: c.Fingerprint(),
		notBefore:   c.Root.NotBefore,
		notAfter:    c.Root.NotAfter,
	}
	for _, r := range st.Roots() {
		sc.roots.AddCert(r)
	}
	chain := x509.NewCertPool()
	for i, cert := range c.Chain {
		chain.AddCert(cert)
		if i < len(c.Chain)-1 {
			sc.below.AddCert(cert)
		}
		if cert.NotBefore.After(sc.notBefore) {
			sc.notBefore = cert.NotBefore
		}
		if cert.NotAfter.Before(sc.notAfter) {
			sc.notAfter = cert.NotAfter
		}
	}
	// The chain is verified against the bundle once, here. Issue verifies
	// each leaf up to the top of this verified chain (the root itself when
	// it signs), so it pays one signature check per leaf, not one per level.
	top := c.Root
	if len(c.Chain) > 0 {
		top = c.Chain[len(c.Chain)-1]
	}
	sc.anchor.AddCert(top)
	if _, err := c.Intermediate.Verify(x509.VerifyOptions{Roots: sc.roots, Intermediates: chain, CurrentTime: sc.notBefore,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("set CA: %w: signing certificate does not chain to the trust bundle: %w", ca.ErrInvalidCA, err)
	}
	// Extended key usages nest down a chain: a signing certificate limited
	// to serverAuth cannot vouch for clientAuth. Which profiles this chain
	// can issue is decided here, once.
	for _, p := range Profiles {
		if _, err := c.Intermediate.Verify(x509.VerifyOptions{Roots: sc.roots, Intermediates: chain, CurrentTime: sc.notBefore,
			KeyUsages: p.ExtKeyUsages()}); err != nil {
			sc.profileErr[p] = fmt.Errorf("the signing chain does not allow the usages of profile %s: %w", p, err)
		}
	}
	l.current.Store(sc)
	return nil
}

// Issue checks req against the policy, generates a key, signs a certificate
// for it, checks the certificate and returns it. A policy refusal is a
// *PolicyError.
func (l *Local) Issue(ctx context.Context, req Request) (*Bundle, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req, err := l.normalize(req)
	if err != nil {
		return nil, err
	}
	if err := l.cfg.Policy.Check(req); err != nil {
		return nil, err
	}
	sc := l.current.Load()
	if sc == nil {
		return nil, fmt.Errorf("issue %s certificate: %w", req.Profile, ErrNoCA)
	}
	now := l.cfg.Clock.Now()
	notBefore := now.Add(-l.cfg.Backdate).Truncate(time.Second)
	notAfter := now.Add(req.Duration).Truncate(time.Second)
	if notBefore.Before(sc.notBefore) {
		notBefore = sc.notBefore
	}
	if notAfter.After(sc.notAfter) {
		notAfter = sc.notAfter
	}
	if !notAfter.After(now) || now.Before(sc.notBefore) {
		return nil, fmt.Errorf("issue %s certificate: %w (valid %s to %s)", req.Profile, ErrCAExpired, sc.notBefore, sc.notAfter)
	}

	if err := sc.profileErr[req.Profile]; err != nil {
		return nil, fmt.Errorf("issue %s certificate: %w", req.Profile, err)
	}
	tmpl, err := template(req, notBefore, notAfter)
	if err != nil {
		return nil, fmt.Errorf("issue %s certificate: %w", req.Profile, err)
	}
	key, err := ca.GenerateKey(req.KeyAlgorithm)
	if err != nil {
		return nil, fmt.Errorf("issue %s certificate: %w", req.Profile, err)
	}
	if tmpl.SubjectKeyId, err = subjectKeyID(key.Public()); err != nil {
		return nil, fmt.Errorf("issue %s certificate: %w", req.Profile, err)
	}
	// CreateCertificate refuses a signing key that does not match the
	// intermediate's public key, and verifies the signature it made with
	// that key before returning: with the intermediate verified against the
	// bundle in SetCA, the new leaf chains to the bundle by construction.
	der, err := x509.CreateCertificate(rand.Reader, tmpl, sc.ca.Intermediate, key.Public(), sc.ca.IntermediateKey)
	if err != nil {
		return nil, fmt.Errorf("issue %s certificate: sign: %w", req.Profile, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issue %s certificate: %w: %w", req.Profile, ErrCheckFailed, err)
	}
	if err := sc.check(leaf, Expected{
		Request: req, PublicKey: key.Public(), Roots: sc.anchor, Intermediates: sc.below,
		Now: now, NotBefore: notBefore, NotAfter: notAfter, MaxNotAfter: sc.notAfter,
	}); err != nil {
		return nil, fmt.Errorf("issue %s certificate: %w: %w", req.Profile, ErrCheckFailed, err)
	}
	keyPEM, err := ca.MarshalPrivateKeyPEM(key)
	if err != nil {
		return nil, fmt.Errorf("issue %s certificate: %w", req.Profile, err)
	}
	// The leaf's PEM is written into a buffer with room for the chain.
	certPEM := make([]byte, 0, ca.PEMLen("CERTIFICATE", len(der))+len(sc.chainPEM))
	certPEM = append(ca.AppendPEM(certPEM, "CERTIFICATE", der), sc.chainPEM...)
	return &Bundle{
		CertificatePEM:    certPEM,
		PrivateKeyPEM:     keyPEM,
		CAPEM:             sc.bundlePEM,
		Leaf:              leaf,
		IssuerFingerprint: sc.fingerprint,
	}, nil
}

// normalize fills defaults and rejects malformed requests.
func (l *Local) normalize(req Request) (Request, error) {
	return req.Normalize(l.cfg.DefaultDuration, l.cfg.DefaultKeyAlgorithm)
}
