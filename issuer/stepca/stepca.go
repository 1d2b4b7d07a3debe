package stepca

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smallstep/certificates/api"
	stepclient "github.com/smallstep/certificates/ca"
	"github.com/smallstep/cli-utils/token"
	"go.step.sm/crypto/jose"
	"go.step.sm/crypto/randutil"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/issuer"
)

// Defaults of Config.
const (
	DefaultTimeout = 30 * time.Second
	// TokenLifetime is how long a one-time token is valid; step-ca refuses
	// a token used twice, so it only bounds a token lost in flight.
	TokenLifetime = 5 * time.Minute
)

// Config configures the stepca backend. Zero fields mean the defaults
// documented on each.
type Config struct {
	// URL of step-ca, such as https://step-ca.example:9000. Required.
	URL string
	// Root is the PEM of step-ca's root certificate(s). The client trusts
	// step-ca's TLS through it alone, it anchors the post-sign check, and it
	// is the trust bundle returned as Bundle.CAPEM. Required.
	Root []byte
	// Provisioner is the name of step-ca's JWK provisioner. It must carry
	// X509Template. Required.
	Provisioner string
	// ProvisionerKey is the provisioner's private JWK, plain or encrypted
	// (a JWE, as `step crypto jwk create` writes it, decrypted with
	// ProvisionerPassword). nil means the encrypted key is fetched from
	// step-ca, as `step ca token` does, on the first Issue that needs it.
	ProvisionerKey []byte
	// ProvisionerPassword decrypts the provisioner key.
	ProvisionerPassword []byte
	// Policy applied to every request before step-ca is asked. The zero
	// value is the namespace policy for cluster.local.
	Policy issuer.Policy
	// Clock supplies the current time of certificates and tokens; nil means
	// the real clock. step-ca checks tokens against its own clock.
	Clock clock.PassiveClock
	// Backdate is subtracted from NotBefore; 0 means 1 minute.
	Backdate time.Duration
	// DefaultDuration is the lifetime of a request without one; 0 means
	// 24h. The provisioner's maxTLSCertDuration must allow every lifetime
	// asked for, plus step-ca's backdate.
	DefaultDuration time.Duration
	// DefaultKeyAlgorithm for a request without one; "" means ecdsa-p256.
	DefaultKeyAlgorithm ca.KeyAlgorithm
	// Timeout of one call to step-ca; 0 means 30s.
	Timeout time.Duration
}

var (
	// ErrProvisionerKey means the JWK provisioner's key could not be had:
	// not found, or not decrypted with the configured password.
	ErrProvisionerKey = errors.New("stepca: no usable provisioner key")
	// ErrSign means step-ca did not sign the request.
	ErrSign = errors.New("step-ca did not sign")
)

// StepCA issues certificates through a remote step-ca. It is safe for
// concurrent use.
type StepCA struct {
	cfg      Config
	client   *stepclient.Client
	audience string
	roots    *x509.CertPool
	rootPEM  []byte
	rootsBy  map[string][]*x509.Certificate // by raw subject
	// notAfter caps the NotAfter asked for: the latest root's at first, the
	// issuing chain's once step-ca has answered (Unix seconds).
	notAfter atomic.Int64

	keyMu sync.Mutex
	key   *jose.JSONWebKey // the decrypted provisioner key once loaded
}

var _ interface {
	Issue(context.Context, issuer.Request) (*issuer.Bundle, error)
} = (*StepCA)(nil)

// New returns a stepca issuer. It does not contact step-ca: a step-ca that
// is down at start only fails the Issue calls made while it is.
func New(cfg Config) (*StepCA, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Backdate == 0 {
		cfg.Backdate = issuer.DefaultBackdate
	}
	if cfg.DefaultDuration == 0 {
		cfg.DefaultDuration = issuer.DefaultDuration
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Backdate < 0 || cfg.DefaultDuration < 0 || cfg.Timeout < 0 {
		return nil, errors.New("new stepca issuer: backdate, default duration and timeout must be positive")
	}
	if cfg.Provisioner == "" {
		return nil, errors.New("new stepca issuer: no provisioner name")
	}
	alg, err := ca.ParseKeyAlgorithm(string(cfg.DefaultKeyAlgorithm))
	if err != nil {
		return nil, fmt.Errorf("new stepca issuer: %w", err)
	}
	cfg.DefaultKeyAlgorithm = alg
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("new stepca issuer: URL %q: want https://host[:port]", cfg.URL)
	}
	roots, err := ca.ParseCertificatesPEM(cfg.Root)
	if err != nil || len(roots) == 0 {
		return nil, fmt.Errorf("new stepca issuer: root: no certificate in the PEM (%v)", err)
	}
	s := &StepCA{
		cfg:      cfg,
		audience: u.ResolveReference(&url.URL{Path: "/1.0/sign"}).String(),
		roots:    x509.NewCertPool(),
		rootPEM:  ca.EncodeCertificatesPEM(roots...),
		rootsBy:  map[string][]*x509.Certificate{},
	}
	var latest time.Time
	for _, r := range roots {
		s.roots.AddCert(r)
		s.rootsBy[string(r.RawSubject)] = append(s.rootsBy[string(r.RawSubject)], r)
		if r.NotAfter.After(latest) {
			latest = r.NotAfter
		}
	}
	s.notAfter.Store(latest.Unix())
	s.client, err = stepclient.NewClient(cfg.URL, stepclient.WithCABundle(s.rootPEM), stepclient.WithTimeout(cfg.Timeout))
	if err != nil {
		return nil, fmt.Errorf("new stepca issuer: client: %w", err)
	}
	if cfg.ProvisionerKey != nil {
		if s.key, err = parseKey(cfg.ProvisionerKey, cfg.ProvisionerPassword); err != nil {
			return nil, fmt.Errorf("new stepca issuer: provisioner %q: %w", cfg.Provisioner, err)
		}
	}
	return s, nil
}

// Issue checks req against the policy, generates a key, has step-ca sign a
// certificate for it, checks the certificate and returns it. A policy
// refusal is an *issuer.PolicyError, returned before step-ca is contacted.
func (s *StepCA) Issue(ctx context.Context, req issuer.Request) (*issuer.Bundle, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req, err := req.Normalize(s.cfg.DefaultDuration, s.cfg.DefaultKeyAlgorithm)
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Policy.Check(req); err != nil {
		return nil, err
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("issue %s certificate through step-ca: "+format, append([]any{req.Profile}, args...)...)
	}
	now := s.cfg.Clock.Now()
	notBefore := now.Add(-s.cfg.Backdate).Truncate(time.Second)
	notAfter := now.Add(req.Duration).Truncate(time.Second)
	if limit := time.Unix(s.notAfter.Load(), 0); notAfter.After(limit) {
		notAfter = limit
	}
	if !notAfter.After(now) {
		return nil, fail("%w (the chain is valid until %s)", issuer.ErrCAExpired, notAfter)
	}

	key, err := ca.GenerateKey(req.KeyAlgorithm)
	if err != nil {
		return nil, fail("%w", err)
	}
	csr, err := certificateRequest(req, key)
	if err != nil {
		return nil, fail("certificate request: %w", err)
	}
	jwk, err := s.provisionerKey(ctx)
	if err != nil {
		return nil, fail("%w", err)
	}
	ott, err := s.token(jwk, req, now)
	if err != nil {
		return nil, fail("one-time token: %w", err)
	}
	resp, err := s.client.SignWithContext(ctx, &api.SignRequest{
		CsrPEM:    api.CertificateRequest{CertificateRequest: csr},
		OTT:       ott,
		NotBefore: api.NewTimeDuration(notBefore),
		NotAfter:  api.NewTimeDuration(notAfter),
	})
	if err != nil {
		return nil, fail("%w: %w", ErrSign, err)
	}
	leaf, chain := split(resp)
	if leaf == nil || len(chain) == 0 {
		return nil, fail("%w: step-ca returned no certificate chain", issuer.ErrCheckFailed)
	}
	maxNotAfter := s.chainNotAfter(chain)
	intermediates := x509.NewCertPool()
	for _, c := range chain {
		intermediates.AddCert(c)
	}
	if err := issuer.CheckCertificate(leaf, issuer.Expected{
		Request: req, PublicKey: key.Public(), Roots: s.roots, Intermediates: intermediates,
		Now: now, NotBefore: notBefore, NotAfter: notAfter, MaxNotAfter: maxNotAfter,
	}); err != nil {
		return nil, fail("%w: %w", issuer.ErrCheckFailed, err)
	}
	keyPEM, err := ca.MarshalPrivateKeyPEM(key)
	if err != nil {
		return nil, fail("%w", err)
	}
	return &issuer.Bundle{
		CertificatePEM:    ca.EncodeCertificatesPEM(append([]*x509.Certificate{leaf}, chain...)...),
		PrivateKeyPEM:     keyPEM,
		CAPEM:             s.rootPEM,
		Leaf:              leaf,
		IssuerFingerprint: ca.Fingerprint(chain[0]),
	}, nil
}

// split returns the leaf and the intermediates of a sign response.
func split(resp *api.SignResponse) (*x509.Certificate, []*x509.Certificate) {
	var certs []*x509.Certificate
	for _, c := range resp.CertChainPEM {
		if c.Certificate != nil {
			certs = append(certs, c.Certificate)
		}
	}
	if len(certs) == 0 { // step-ca before certChain
		for _, c := range []api.Certificate{resp.ServerPEM, resp.CaPEM} {
			if c.Certificate != nil {
				certs = append(certs, c.Certificate)
			}
		}
	}
	if len(certs) == 0 {
		return nil, nil
	}
	return certs[0], certs[1:]
}

// chainNotAfter is the earliest NotAfter of the issuing chain and the roots
// that may have issued its top, which the leaf must not outlive. It becomes
// the cap of later requests, so that a chain shorter-lived than the lifetime
// asked for costs one refused certificate, not every one.
func (s *StepCA) chainNotAfter(chain []*x509.Certificate) time.Time {
	earliest := chain[0].NotAfter
	for _, c := range chain[1:] {
		if c.NotAfter.Before(earliest) {
			earliest = c.NotAfter
		}
	}
	top := chain[len(chain)-1]
	var root time.Time
	for _, r := range s.rootsBy[string(top.RawIssuer)] {
		if r.NotAfter.After(root) {
			root = r.NotAfter
		}
	}
	if !root.IsZero() && root.Before(earliest) {
		earliest = root
	}
	s.notAfter.Store(earliest.Unix())
	return earliest
}

// certificateRequest is a PKCS#10 request carrying the request's names:
// step-ca matches them against the token's SANs.
func certificateRequest(req issuer.Request, key any) (*x509.CertificateRequest, error) {
	tmpl := &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: req.CommonName()},
		DNSNames:    req.DNSNames,
		IPAddresses: req.IPAddresses,
	}
	uris := req.URIs
	if req.SPIFFEID != "" {
		uris = append([]string{req.SPIFFEID}, uris...)
	}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			return nil, err
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificateRequest(der)
}

// token is a one-time token for req signed with the provisioner key: the
// SANs step-ca may sign, and in the "meshca" claim what X509Template needs.
func (s *StepCA) token(jwk *jose.JSONWebKey, req issuer.Request, now time.Time) (string, error) {
	id, err := randutil.Hex(32)
	if err != nil {
		return "", err
	}
	sans := req.SANs()
	subject := req.CommonName()
	if subject == "" {
		subject = sans[0]
	}
	usages := make([]string, 0, 2)
	for _, u := range req.Profile.ExtKeyUsages() {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			usages = append(usages, "serverAuth")
		case x509.ExtKeyUsageClientAuth:
			usages = append(usages, "clientAuth")
		default:
			return "", fmt.Errorf("extended key usage %v has no step-ca name", u)
		}
	}
	claims, err := token.NewClaims(
		token.WithSubject(subject),
		token.WithIssuer(s.cfg.Provisioner),
		token.WithAudience(s.audience),
		token.WithKid(jwk.KeyID),
		token.WithJWTID(id),
		token.WithIssuedAt(now),
		token.WithValidity(now, now.Add(TokenLifetime)),
		token.WithSANS(sans),
		token.WithClaim("meshca", tokenClaim{Profile: string(req.Profile), CommonName: req.CommonName(), ExtKeyUsage: usages}),
	)
	if err != nil {
		return "", err
	}
	return claims.Sign(jose.SignatureAlgorithm(jwk.Algorithm), jwk.Key)
}
