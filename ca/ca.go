package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"time"

	"k8s.io/utils/clock"
)

// Defaults used when a Config field is zero.
const (
	DefaultTrustDomain          = "cluster.local"
	DefaultRootLifetime         = 10 * 365 * 24 * time.Hour
	DefaultIntermediateLifetime = 365 * 24 * time.Hour
	DefaultCommonName           = "meshca"
	DefaultOrganization         = "meshca"

	// caBackdate keeps a new CA valid on nodes whose clocks lag a little.
	caBackdate = time.Hour
)

// ErrInvalidCA marks a CA that was found but cannot be used: it does not
// parse, a key does not match its certificate, or the chain does not verify.
// meshca never replaces such a CA; callers stop and report it.
var ErrInvalidCA = errors.New("invalid CA")

// Config describes a CA to create. Every zero field means the documented
// default, so Config{} is a valid ECDSA P-256 CA for cluster.local.
type Config struct {
	// KeyAlgorithm of the root and intermediate keys; "" means ecdsa-p256.
	KeyAlgorithm KeyAlgorithm
	// TrustDomain is the SPIFFE trust domain; "" means cluster.local. It is
	// recorded in the subject and, with name constraints, constrains URIs.
	TrustDomain string
	// RootLifetime is the root's validity; 0 means 10 years.
	RootLifetime time.Duration
	// IntermediateLifetime is the intermediate's validity; 0 means 1 year.
	// It never extends past the root's NotAfter.
	IntermediateLifetime time.Duration
	// Subject is the template of both subjects. An empty CommonName means
	// "meshca"; the root's becomes "<CommonName> root CA" and the
	// intermediate's "<CommonName> intermediate CA". No Organization means
	// "meshca". OrganizationalUnit defaults to the trust domain.
	Subject pkix.Name
	// PermittedDNSDomains, when not empty, puts critical name constraints on
	// the intermediate: DNS names must fall under one of these suffixes and
	// URIs under the trust domain. Empty means no name constraints.
	PermittedDNSDomains []string
	// Backdate is subtracted from NotBefore of both certificates so a new CA
	// is valid on nodes whose clocks lag; 0 means 1 hour, negative means none.
	// Tests with CA lifetimes of seconds use a small value.
	Backdate time.Duration
	// Clock supplies the current time; nil means the real clock.
	Clock clock.PassiveClock
}

func (c Config) withDefaults() (Config, error) {
	var err error
	if c.KeyAlgorithm, err = ParseKeyAlgorithm(string(c.KeyAlgorithm)); err != nil {
		return c, err
	}
	if c.TrustDomain == "" {
		c.TrustDomain = DefaultTrustDomain
	}
	if c.RootLifetime == 0 {
		c.RootLifetime = DefaultRootLifetime
	}
	if c.IntermediateLifetime == 0 {
		c.IntermediateLifetime = DefaultIntermediateLifetime
	}
	if c.RootLifetime < 0 || c.IntermediateLifetime < 0 {
		return c, errors.New("CA lifetimes must be positive")
	}
	if c.Subject.CommonName == "" {
		c.Subject.CommonName = DefaultCommonName
	}
	if len(c.Subject.Organization) == 0 {
		c.Subject.Organization = []string{DefaultOrganization}
	}
	if len(c.Subject.OrganizationalUnit) == 0 {
		c.Subject.OrganizationalUnit = []string{c.TrustDomain}
	}
	switch {
	case c.Backdate == 0:
		c.Backdate = caBackdate
	case c.Backdate < 0:
		c.Backdate = 0
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	return c, nil
}

// CA is one root and the certificate that signs leaves, with their keys.
type CA struct {
	// Root is the self-signed trust anchor.
	Root *x509.Certificate
	// RootKey is nil when the root's key is not held (bring-your-own CA).
	RootKey crypto.Signer
	// Intermediate is the certificate that signs leaves. It is Root itself
	// when a bring-your-own CA is a single self-signed certificate.
	Intermediate *x509.Certificate
	// IntermediateKey is the private key of Intermediate.
	IntermediateKey crypto.Signer
	// Chain is what follows a leaf in tls.crt: Intermediate, then any
	// further intermediates, never the root. Empty when Intermediate is Root.
	Chain []*x509.Certificate
}

// New creates a self-signed root and an intermediate signed by it.
func New(cfg Config) (*CA, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	now := cfg.Clock.Now()
	rootKey, err := GenerateKey(cfg.KeyAlgorithm)
	if err != nil {
		return nil, fmt.Errorf("create CA root key: %w", err)
	}
	rootSubject := cfg.Subject
	rootSubject.CommonName = cfg.Subject.CommonName + " root CA"
	rootTmpl := &x509.Certificate{
		Subject:               rootSubject,
		NotBefore:             now.Add(-cfg.Backdate),
		NotAfter:              now.Add(cfg.RootLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	root, err := createCertificate(rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("create CA root: %w", err)
	}
	intKey, err := GenerateKey(cfg.KeyAlgorithm)
	if err != nil {
		return nil, fmt.Errorf("create CA intermediate key: %w", err)
	}
	intSubject := cfg.Subject
	intSubject.CommonName = cfg.Subject.CommonName + " intermediate CA"
	notAfter := now.Add(cfg.IntermediateLifetime)
	if notAfter.After(root.NotAfter) {
		notAfter = root.NotAfter
	}
	intTmpl := &x509.Certificate{
		Subject:               intSubject,
		NotBefore:             now.Add(-cfg.Backdate),
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if len(cfg.PermittedDNSDomains) > 0 {
		intTmpl.PermittedDNSDomainsCritical = true
		intTmpl.PermittedDNSDomains = cfg.PermittedDNSDomains
		intTmpl.PermittedURIDomains = []string{cfg.TrustDomain}
	}
	inter, err := createCertificate(intTmpl, root, intKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("create CA intermediate: %w", err)
	}
	c := &CA{Root: root, RootKey: rootKey, Intermediate: inter, IntermediateKey: intKey, Chain: []*x509.Certificate{inter}}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	return c, nil
}

func createCertificate(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, error) {
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// NewSerial returns a random positive serial number of at most 128 bits.
func NewSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 127)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// Fingerprint is the lowercase hex SHA-256 of the signing certificate; it
// names the issuing CA in annotation meshca.io/issuer.
func (c *CA) Fingerprint() string { return Fingerprint(c.Intermediate) }

// Fingerprint is the lowercase hex SHA-256 of a certificate's DER.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// CanSign reports whether the CA holds the key of its signing certificate.
func (c *CA) CanSign() bool { return c.IntermediateKey != nil }

// Validate checks that the keys match their certificates, that every
// certificate of the chain is a CA signed by the next one, and that the
// root is self-signed. It does not look at validity periods. Errors wrap
// ErrInvalidCA.
func (c *CA) Validate() error {
	if c.Root == nil || c.Intermediate == nil {
		return fmt.Errorf("%w: root or signing certificate missing", ErrInvalidCA)
	}
	if c.IntermediateKey == nil {
		return fmt.Errorf("%w: signing key missing", ErrInvalidCA)
	}
	if !publicKeysEqual(c.IntermediateKey.Public(), c.Intermediate.PublicKey) {
		return fmt.Errorf("%w: signing key does not match certificate %q", ErrInvalidCA, c.Intermediate.Subject)
	}
	if c.RootKey != nil && !publicKeysEqual(c.RootKey.Public(), c.Root.PublicKey) {
		return fmt.Errorf("%w: root key does not match root certificate %q", ErrInvalidCA, c.Root.Subject)
	}
	if !c.Intermediate.IsCA || c.Intermediate.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%w: signing certificate %q is not a CA with the certSign key usage", ErrInvalidCA, c.Intermediate.Subject)
	}
	if err := c.Root.CheckSignatureFrom(c.Root); err != nil {
		return fmt.Errorf("%w: root %q is not self-signed: %w", ErrInvalidCA, c.Root.Subject, err)
	}
	if bytes.Equal(c.Intermediate.Raw, c.Root.Raw) {
		if len(c.Chain) != 0 {
			return fmt.Errorf("%w: chain must be empty when the root signs", ErrInvalidCA)
		}
		return nil
	}
	if len(c.Chain) == 0 || !bytes.Equal(c.Chain[0].Raw, c.Intermediate.Raw) {
		return fmt.Errorf("%w: chain must start with the signing certificate", ErrInvalidCA)
	}
	for i, cert := range c.Chain {
		parent := c.Root
		if i+1 < len(c.Chain) {
			parent = c.Chain[i+1]
		}
		if bytes.Equal(cert.Raw, c.Root.Raw) {
			return fmt.Errorf("%w: chain must not contain the root", ErrInvalidCA)
		}
		if err := cert.CheckSignatureFrom(parent); err != nil {
			return fmt.Errorf("%w: %q is not signed by %q: %w", ErrInvalidCA, cert.Subject, parent.Subject, err)
		}
	}
	return nil
}

// newFromParts assembles and validates a CA from parsed material; chain is
// the signing certificate and any intermediates, possibly ending with the root.
func newFromParts(roots, chain []*x509.Certificate, key, rootKey crypto.Signer) (*CA, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: no signing certificate", ErrInvalidCA)
	}
	signing := chain[0]
	// Drop a trailing self-signed certificate from the chain: it is the root.
	var root *x509.Certificate
	if last := chain[len(chain)-1]; isSelfSigned(last) {
		root = last
		chain = chain[:len(chain)-1]
	}
	if root == nil {
		top := chain[len(chain)-1]
		for _, r := range roots {
			if top.CheckSignatureFrom(r) == nil {
				root = r
				break
			}
		}
	}
	if root == nil {
		return nil, fmt.Errorf("%w: no root certificate signs %q", ErrInvalidCA, chain[len(chain)-1].Subject)
	}
	c := &CA{Root: root, RootKey: rootKey, Intermediate: signing, IntermediateKey: key, Chain: chain}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

func sameCert(a, b *x509.Certificate) bool { return bytes.Equal(a.Raw, b.Raw) }
