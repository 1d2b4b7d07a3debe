package issuer

import (
	"context"
	"crypto"
	"crypto/x509"
	"sync/atomic"
	"time"
)

// Signer is a backend of the issuance pipeline: the local CA, a remote
// step-ca, whatever comes next (an HSM, a KMS). Its only job is to turn a
// template and a public key into a signed chain. Everything around it
// (normalizing, policy, validity, key generation, the post-sign check and
// the PEM bundle) is the Issuer's, so a new backend does not copy any of it.
//
// A Signer may implement the optional capabilities below (Bounded, Rooted,
// ChainChecker, CSRSigner); the Issuer looks for them once, when the signer
// is set. A signer must be Rooted or a ChainChecker: every certificate is
// checked before it is returned, and that needs something to check against.
type Signer interface {
	// Sign signs req.Template for req.PublicKey. It must not change the
	// template: the post-sign check compares the result with it.
	Sign(ctx context.Context, req SignRequest) (*SignResponse, error)
}

// SignRequest is what a Signer signs.
type SignRequest struct {
	// Template is the certificate asked for, complete: serial, validity
	// (already inside the signer's Window), usages, names, subject key ID.
	Template *x509.Certificate
	// PublicKey is the public half of the key the Issuer generated.
	PublicKey crypto.PublicKey
	// Profile the template was built for. Signers need not read it: the
	// template says everything the certificate must carry.
	Profile Profile
	// CSR is a PKCS#10 request for the template's subject and names, signed
	// with the new key: proof of possession for signers that ask for it
	// (CSRSigner). nil for every other signer, which never sees the key.
	CSR *x509.CertificateRequest
}

// SignResponse is a signed certificate and the chain it came with.
type SignResponse struct {
	// Leaf is the signed certificate.
	Leaf *x509.Certificate
	// Chain is what follows the leaf in tls.crt: its issuer first, then
	// further intermediates, never a root. Empty when a root signed Leaf.
	Chain []*x509.Certificate
	// Issuer is the certificate that signed Leaf (Bundle.IssuerFingerprint
	// is its fingerprint). nil means Chain[0].
	Issuer *x509.Certificate
}

// Bounded is a Signer whose certificates must fit inside a window, such as
// the validity of its chain. The Issuer clamps every template to it and
// refuses with ErrCAExpired when the window does not hold the current time.
type Bounded interface {
	// Window returns the earliest NotBefore and the latest NotAfter a
	// certificate may have. A zero notBefore means no lower bound.
	Window() (notBefore, notAfter time.Time)
}

// Rooted is a Signer that names the roots its chains lead to. They anchor
// the post-sign chain check (unless the signer is a ChainChecker), bound
// how long a leaf may live, and become Bundle.CAPEM.
type Rooted interface {
	// Roots returns the trust bundle; the Issuer reads it once.
	Roots() []*x509.Certificate
}

// ChainChecker is a Signer that proves a leaf it signed chains to its
// roots more cheaply than a full x509 Verify, by relying on what it has
// already proven (the local CA verifies its chain once, when it is loaded).
// The Issuer calls it instead of its own chain verification; it still
// compares the leaf's key, usages, validity and names itself.
type ChainChecker interface {
	// CheckChain returns why leaf is not a certificate this signer issued
	// under e, or nil.
	CheckChain(leaf *x509.Certificate, e Expected) error
}

// CSRSigner is a Signer that needs proof of possession of the new key (a
// CSR signed with it), such as step-ca. Only such signers get
// SignRequest.CSR; the others do not pay for one.
type CSRSigner interface {
	// NeedsCSR reports whether Sign wants SignRequest.CSR.
	NeedsCSR() bool
}

// signerSlot is a Signer with its capabilities looked up once.
// ProfileChecker is a Signer that knows before signing which profiles it
// cannot issue (a CA whose chain forbids the profile's usages): the
// Issuer asks it before it generates a key, so a refused profile costs no
// key and no signature.
type ProfileChecker interface {
	Signer
	CanIssue(p Profile) error
}

type signerSlot struct {
	signer   Signer
	bounded  Bounded        // nil when the signer has no window
	checker  ChainChecker   // nil: the Issuer verifies the chain against roots
	profiles ProfileChecker // nil: the signer finds out when it signs
	csr      bool
	// The trust bundle of a Rooted signer.
	roots     []*x509.Certificate
	rootPool  *x509.CertPool
	bundlePEM []byte
	// chain is what the pipeline derived from the chain the signer last
	// answered with; nil until it has.
	chain atomic.Pointer[chainFacts]
}
