package issuer

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca"
)

// Defaults of Config.
const (
	DefaultBackdate = time.Minute
	DefaultDuration = 24 * time.Hour
)

var (
	// ErrNoCA means the issuer has no CA (no Signer) to sign with yet.
	ErrNoCA = errors.New("no CA to sign with")
	// ErrCAExpired means the issuing CA is not valid now.
	ErrCAExpired = errors.New("issuing CA is not valid now")
	// ErrCheckFailed means a signed certificate failed the check that runs
	// before it is returned; it is never handed out.
	ErrCheckFailed = errors.New("signed certificate failed its check")
)

// Config configures an Issuer. Zero fields mean the defaults documented on
// each.
type Config struct {
	// Signer signs; nil means none until SetSigner (Issue fails with
	// ErrNoCA).
	Signer Signer
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

// Issuer is the one issuance pipeline: normalize the request, apply the
// policy, clamp the validity to the signer's window, generate the key,
// build the template, have the Signer sign it, check the result and return
// it as PEM. It is safe for concurrent use; SetSigner swaps the signer
// atomically, so each Issue sees one signer from start to end.
type Issuer struct {
	cfg    Config
	signer atomic.Pointer[signerSlot]
}

// New returns an issuer.
func New(cfg Config) (*Issuer, error) {
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
		return nil, errors.New("new issuer: backdate and default duration must be positive")
	}
	alg, err := ca.ParseKeyAlgorithm(string(cfg.DefaultKeyAlgorithm))
	if err != nil {
		return nil, fmt.Errorf("new issuer: %w", err)
	}
	cfg.DefaultKeyAlgorithm = alg
	i := &Issuer{cfg: cfg}
	if cfg.Signer != nil {
		if err := i.SetSigner(cfg.Signer); err != nil {
			return nil, err
		}
	}
	i.cfg.Signer = nil // the slot holds it
	return i, nil
}

// SetSigner makes s the signer of later Issue calls, atomically; nil
// removes it. A signer that is neither Rooted nor a ChainChecker is
// refused: its certificates could not be checked.
func (i *Issuer) SetSigner(s Signer) error {
	if s == nil {
		i.signer.Store(nil)
		return nil
	}
	slot := &signerSlot{signer: s}
	slot.bounded, _ = s.(Bounded)
	slot.checker, _ = s.(ChainChecker)
	slot.profiles, _ = s.(ProfileChecker)
	if c, ok := s.(CSRSigner); ok {
		slot.csr = c.NeedsCSR()
	}
	if r, ok := s.(Rooted); ok {
		slot.roots = r.Roots()
		slot.rootPool = x509.NewCertPool()
		for _, c := range slot.roots {
			slot.rootPool.AddCert(c)
		}
		slot.bundlePEM = ca.EncodeCertificatesPEM(slot.roots...)
	}
	if len(slot.roots) == 0 && slot.checker == nil {
		return fmt.Errorf("set signer %T: it names no roots and checks no chain, so its certificates cannot be checked", s)
	}
	i.signer.Store(slot)
	return nil
}

// Issue checks req against the policy, generates a key, has the signer sign
// a certificate for it, checks the certificate and returns it. A policy
// refusal is a *PolicyError, returned before the signer is asked.
func (i *Issuer) Issue(ctx context.Context, req Request) (*Bundle, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req, err := req.Normalize(i.cfg.DefaultDuration, i.cfg.DefaultKeyAlgorithm)
	if err != nil {
		return nil, err
	}
	if err := i.cfg.Policy.Check(req); err != nil {
		return nil, err
	}
	profile := req.Profile
	fail := func(format string, args ...any) error {
		return fmt.Errorf("issue %s certificate: "+format, append([]any{profile}, args...)...)
	}
	s := i.signer.Load()
	if s == nil {
		return nil, fail("%w", ErrNoCA)
	}
	if s.profiles != nil {
		if err := s.profiles.CanIssue(req.Profile); err != nil {
			return nil, fail("%w", err)
		}
	}
	now := i.cfg.Clock.Now()
	notBefore, notAfter, maxNotAfter, err := s.validity(now, i.cfg.Backdate, req.Duration)
	if err != nil {
		return nil, fail("%w", err)
	}
	tmpl, err := template(req, notBefore, notAfter)
	if err != nil {
		return nil, fail("%w", err)
	}
	key, err := ca.GenerateKey(req.KeyAlgorithm)
	if err != nil {
		return nil, fail("%w", err)
	}
	if tmpl.SubjectKeyId, err = subjectKeyID(key.Public()); err != nil {
		return nil, fail("%w", err)
	}
	sr := SignRequest{Template: tmpl, PublicKey: key.Public(), Profile: req.Profile}
	if s.csr {
		if sr.CSR, err = certificateRequest(tmpl, key); err != nil {
			return nil, fail("certificate request: %w", err)
		}
	}
	resp, err := s.signer.Sign(ctx, sr)
	if err != nil {
		return nil, fail("%w", err)
	}
	if resp == nil || resp.Leaf == nil {
		return nil, fail("%w: the signer returned no certificate", ErrCheckFailed)
	}
	leaf := resp.Leaf
	chain, err := s.chainFacts(resp)
	if err != nil {
		return nil, fail("%w: %w", ErrCheckFailed, err)
	}
	if !chain.end.IsZero() && (maxNotAfter.IsZero() || chain.end.Before(maxNotAfter)) {
		maxNotAfter = chain.end
	}
	if err := s.check(leaf, resp.Chain, Expected{
		Request: req, PublicKey: key.Public(), Now: now,
		NotBefore: notBefore, NotAfter: notAfter, MaxNotAfter: maxNotAfter,
	}); err != nil {
		return nil, fail("%w: %w", ErrCheckFailed, err)
	}
	keyPEM, err := ca.MarshalPrivateKeyPEM(key)
	if err != nil {
		return nil, fail("%w", err)
	}
	// The leaf's PEM is written into a buffer with room for the chain.
	certPEM := make([]byte, 0, ca.PEMLen("CERTIFICATE", len(leaf.Raw))+len(chain.pem))
	certPEM = append(ca.AppendPEM(certPEM, "CERTIFICATE", leaf.Raw), chain.pem...)
	return &Bundle{
		CertificatePEM:    certPEM,
		PrivateKeyPEM:     keyPEM,
		CAPEM:             s.bundlePEM,
		Leaf:              leaf,
		IssuerFingerprint: chain.fingerprint,
	}, nil
}

// validity is the NotBefore and NotAfter of a certificate issued now for
// duration: backdated, clamped to the signer's window and to the end of the
// chain it last answered with. maxNotAfter is that bound (zero when there
// is none).
func (s *signerSlot) validity(now time.Time, backdate, duration time.Duration) (notBefore, notAfter, maxNotAfter time.Time, err error) {
	notBefore = now.Add(-backdate).Truncate(time.Second)
	notAfter = now.Add(duration).Truncate(time.Second)
	var earliest time.Time
	if s.bounded != nil {
		earliest, maxNotAfter = s.bounded.Window()
	}
	// The end of the chain the signer last answered with, unless it has
	// passed: then the signer is asked again, and the check refuses what
	// an expired chain signs.
	if last := s.chain.Load(); last != nil && last.end.After(now) && (maxNotAfter.IsZero() || last.end.Before(maxNotAfter)) {
		maxNotAfter = last.end
	}
	if !earliest.IsZero() && notBefore.Before(earliest) {
		notBefore = earliest
	}
	if !maxNotAfter.IsZero() && notAfter.After(maxNotAfter) {
		notAfter = maxNotAfter
	}
	if now.Before(earliest) || !notAfter.After(now) {
		if earliest.IsZero() {
			err = fmt.Errorf("%w (the chain is valid until %s)", ErrCAExpired, notAfter)
		} else {
			err = fmt.Errorf("%w (valid %s to %s)", ErrCAExpired, earliest, maxNotAfter)
		}
	}
	return notBefore, notAfter, maxNotAfter, err
}

// check is the post-sign gate: the chain (the signer's own check when it
// has one, else a full Verify up to its roots), then the leaf's contents.
func (s *signerSlot) check(leaf *x509.Certificate, chain []*x509.Certificate, e Expected) error {
	if s.checker != nil {
		if err := s.checker.CheckChain(leaf, e); err != nil {
			return err
		}
		return checkContents(leaf, e)
	}
	e.Roots = s.rootPool
	e.Intermediates = x509.NewCertPool()
	for _, c := range chain {
		e.Intermediates.AddCert(c)
	}
	return CheckCertificate(leaf, e)
}

// certificateRequest is a PKCS#10 request for the template's subject and
// names, signed with key: the proof of possession a CSRSigner asks for.
func certificateRequest(tmpl *x509.Certificate, key crypto.Signer) (*x509.CertificateRequest, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     tmpl.Subject,
		DNSNames:    tmpl.DNSNames,
		IPAddresses: tmpl.IPAddresses,
		URIs:        tmpl.URIs,
	}, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificateRequest(der)
}
