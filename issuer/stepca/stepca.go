package stepca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"sync"
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
// documented on each. NewSigner reads the step-ca fields (URL to Timeout,
// and Clock); New passes the others to the issuer pipeline.
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
	// Timeout of one call to step-ca; 0 means 30s.
	Timeout time.Duration
	// Clock supplies the current time of certificates and tokens; nil means
	// the real clock. step-ca checks tokens against its own clock.
	Clock clock.PassiveClock

	// The pipeline's settings mean what the issuer.Config fields of the
	// same names mean. The provisioner's maxTLSCertDuration must allow
	// every lifetime asked for (DefaultDuration, 24h unless set), plus
	// step-ca's backdate.
	Policy              issuer.Policy
	Backdate            time.Duration
	DefaultDuration     time.Duration
	DefaultKeyAlgorithm ca.KeyAlgorithm
}

var (
	// ErrProvisionerKey means the JWK provisioner's key could not be had:
	// not found, or not decrypted with the configured password.
	ErrProvisionerKey = errors.New("stepca: no usable provisioner key")
	// ErrSign means step-ca did not sign the request.
	ErrSign = errors.New("step-ca did not sign")
)

// Signer has a remote step-ca sign certificates: it is an issuer.Signer
// that needs a CSR (step-ca wants proof of possession of the key) and signs
// a one-time token per request. It is safe for concurrent use.
type Signer struct {
	cfg      Config
	client   *stepclient.Client
	audience string
	roots    []*x509.Certificate
	// latest is the latest NotAfter of the roots: no leaf outlives it. The
	// issuer learns the issuing chain's own end from step-ca's answers.
	latest time.Time

	keyMu sync.Mutex
	key   *jose.JSONWebKey // the decrypted provisioner key once loaded
}

var (
	_ issuer.Signer    = (*Signer)(nil)
	_ issuer.Bounded   = (*Signer)(nil)
	_ issuer.Rooted    = (*Signer)(nil)
	_ issuer.CSRSigner = (*Signer)(nil)
)

// New returns the issuer pipeline signing through step-ca: NewSigner with
// the step-ca fields of cfg, issuer.New with the others. It does not
// contact step-ca: a step-ca that is down at start only fails the Issue
// calls made while it is.
func New(cfg Config) (*issuer.Issuer, error) {
	s, err := NewSigner(cfg)
	if err != nil {
		return nil, err
	}
	return issuer.New(issuer.Config{
		Signer: s, Policy: cfg.Policy, Clock: s.cfg.Clock, Backdate: cfg.Backdate,
		DefaultDuration: cfg.DefaultDuration, DefaultKeyAlgorithm: cfg.DefaultKeyAlgorithm,
	})
}

// NewSigner returns a step-ca signer configured by the step-ca fields of
// cfg. It does not contact step-ca.
func NewSigner(cfg Config) (*Signer, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Timeout < 0 {
		return nil, errors.New("new stepca issuer: timeout must be positive")
	}
	if cfg.Provisioner == "" {
		return nil, errors.New("new stepca issuer: no provisioner name")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("new stepca issuer: URL %q: want https://host[:port]", cfg.URL)
	}
	roots, err := ca.ParseCertificatesPEM(cfg.Root)
	if err != nil || len(roots) == 0 {
		return nil, fmt.Errorf("new stepca issuer: root: no certificate in the PEM (%v)", err)
	}
	s := &Signer{
		cfg:      cfg,
		audience: u.ResolveReference(&url.URL{Path: "/1.0/sign"}).String(),
		roots:    roots,
	}
	for _, r := range roots {
		if r.NotAfter.After(s.latest) {
			s.latest = r.NotAfter
		}
	}
	s.client, err = stepclient.NewClient(cfg.URL, stepclient.WithCABundle(ca.EncodeCertificatesPEM(roots...)), stepclient.WithTimeout(cfg.Timeout))
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

// Roots are step-ca's roots (Config.Root).
func (s *Signer) Roots() []*x509.Certificate { return s.roots }

// Window ends with the latest root: step-ca's issuing chain is unknown
// until it answers.
func (s *Signer) Window() (notBefore, notAfter time.Time) { return time.Time{}, s.latest }

// NeedsCSR is true: step-ca signs a CSR, matching its names against the
// token's.
func (s *Signer) NeedsCSR() bool { return true }

// Sign has step-ca sign req.CSR, authorized by a one-time token for the
// template's names and usages, for the template's validity.
func (s *Signer) Sign(ctx context.Context, req issuer.SignRequest) (*issuer.SignResponse, error) {
	if req.CSR == nil {
		return nil, errors.New("step-ca needs a certificate request")
	}
	jwk, err := s.provisionerKey(ctx)
	if err != nil {
		return nil, err
	}
	ott, err := s.token(jwk, req, s.cfg.Clock.Now())
	if err != nil {
		return nil, fmt.Errorf("one-time token: %w", err)
	}
	resp, err := s.client.SignWithContext(ctx, &api.SignRequest{
		CsrPEM:    api.CertificateRequest{CertificateRequest: req.CSR},
		OTT:       ott,
		NotBefore: api.NewTimeDuration(req.Template.NotBefore),
		NotAfter:  api.NewTimeDuration(req.Template.NotAfter),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSign, err)
	}
	leaf, chain := split(resp)
	if leaf == nil || len(chain) == 0 {
		return nil, fmt.Errorf("%w: step-ca returned no certificate chain", issuer.ErrCheckFailed)
	}
	return &issuer.SignResponse{Leaf: leaf, Chain: chain}, nil
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

// sans lists the template's names as step-ca's token carries them: the
// SPIFFE ID first, then DNS names, IP addresses and further URIs.
func sans(t *x509.Certificate) []string {
	out := make([]string, 0, len(t.URIs)+len(t.DNSNames)+len(t.IPAddresses))
	uris := t.URIs
	if len(uris) > 0 && uris[0].Scheme == "spiffe" {
		out = append(out, uris[0].String())
		uris = uris[1:]
	}
	out = append(out, t.DNSNames...)
	for _, ip := range t.IPAddresses {
		out = append(out, ip.String())
	}
	for _, u := range uris {
		out = append(out, u.String())
	}
	return out
}

// token is a one-time token for the template signed with the provisioner
// key: the SANs step-ca may sign, and in the "meshca" claim what
// X509Template needs.
func (s *Signer) token(jwk *jose.JSONWebKey, req issuer.SignRequest, now time.Time) (string, error) {
	id, err := randutil.Hex(32)
	if err != nil {
		return "", err
	}
	t := req.Template
	names := sans(t)
	if len(names) == 0 {
		return "", errors.New("the template has no names")
	}
	subject := t.Subject.CommonName
	if subject == "" {
		subject = names[0]
	}
	usages := make([]string, 0, 2)
	for _, u := range t.ExtKeyUsage {
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
		token.WithSANS(names),
		token.WithClaim("meshca", tokenClaim{Profile: string(req.Profile), CommonName: t.Subject.CommonName, ExtKeyUsage: usages}),
	)
	if err != nil {
		return "", err
	}
	return claims.Sign(jose.SignatureAlgorithm(jwk.Algorithm), jwk.Key)
}
