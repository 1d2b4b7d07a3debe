package rotator

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/meshca/meshca/ca"
)

// Reasons to (re)issue a certificate, recorded on Secrets and in Events.
const (
	ReasonMissing             = "Missing"
	ReasonUnparsable          = "Unparsable"
	ReasonKeyMismatch         = "KeyMismatch"
	ReasonIssuerNotTrusted    = "IssuerNotTrusted"
	ReasonNamesChanged        = "NamesChanged"
	ReasonKeyAlgorithmChanged = "KeyAlgorithmChanged"
	ReasonManual              = "Manual"
	ReasonNearExpiry          = "NearExpiry"
)

// Observed is what a Secret holds, parsed once for all checks.
type Observed struct {
	// Present is false when the Secret does not exist.
	Present bool
	// Leaf is the first certificate of tls.crt; Chain the ones after it.
	Leaf  *x509.Certificate
	Chain []*x509.Certificate
	// Key is the parsed tls.key.
	Key crypto.Signer
	// Err says why tls.crt or tls.key could not be parsed; nil when both did.
	Err error
}

// Observe parses a Secret's tls.crt and tls.key. present is false for a
// Secret that does not exist.
func Observe(present bool, certPEM, keyPEM []byte) *Observed {
	o := &Observed{Present: present}
	if !present {
		return o
	}
	certs, err := ca.ParseCertificatesPEM(certPEM)
	if err != nil {
		o.Err = fmt.Errorf("tls.crt: %w", err)
		return o
	}
	o.Leaf, o.Chain = certs[0], certs[1:]
	if o.Key, err = ca.ParsePrivateKeyPEM(keyPEM); err != nil {
		o.Err = fmt.Errorf("tls.key: %w", err)
	}
	return o
}

// Wanted is the certificate a source object asks for.
type Wanted struct {
	DNSNames     []string
	URIs         []string
	IPAddresses  []string
	KeyAlgorithm string // as ca.KeyAlgorithm spells it, e.g. ecdsa-p256
}

// Input is everything a check may look at. Checks are pure functions of it.
type Input struct {
	Now      time.Time
	Observed *Observed
	Wanted   Wanted
	// Roots is the current trust bundle.
	Roots *x509.CertPool
	// Policy decides the renewal time.
	Policy Policy
	// RenewRequested is the serial number, in hex as meshca.io/serial
	// spells it, of a certificate an operator asked to replace now
	// (meshca.io/renew-requested, set by meshca renew); empty: none. A
	// request naming any other serial has been served already.
	RenewRequested string
}

// Check is one named reason to reissue: it returns the reason, a message for
// humans and whether reissuing is needed.
type Check func(in Input) (reason, message string, needed bool)

// DefaultChecks are evaluated in this order; the first that fires is the
// recorded reason.
var DefaultChecks = []Check{
	SecretMissing,
	SecretUnparsable,
	KeyMismatch,
	IssuerNotTrusted,
	NamesChanged,
	KeyAlgorithmChanged,
	ManualRenewal,
	NearExpiry,
}

// Decision is the outcome of the checks.
type Decision struct {
	Needed  bool
	Reason  string
	Message string
	// RenewAt is when the current certificate is due; zero when there is none.
	RenewAt time.Time
}

// Evaluate runs checks in order and returns the first that fires, or a
// decision that nothing is needed with the time of the next renewal.
func Evaluate(in Input, checks []Check) Decision {
	d := Decision{}
	if in.Observed != nil && in.Observed.Leaf != nil {
		d.RenewAt = RenewalTime(in.Observed.Leaf.NotBefore, in.Observed.Leaf.NotAfter, in.Policy, in.Observed.Leaf.SerialNumber.Bytes())
	}
	for _, c := range checks {
		if reason, msg, needed := c(in); needed {
			d.Needed, d.Reason, d.Message = true, reason, msg
			return d
		}
	}
	return d
}

// SecretMissing fires when the Secret does not exist.
func SecretMissing(in Input) (string, string, bool) {
	if in.Observed == nil || !in.Observed.Present {
		return ReasonMissing, "the Secret does not exist", true
	}
	return "", "", false
}

// SecretUnparsable fires when tls.crt or tls.key cannot be parsed.
func SecretUnparsable(in Input) (string, string, bool) {
	if in.Observed.Err != nil {
		return ReasonUnparsable, in.Observed.Err.Error(), true
	}
	return "", "", false
}

// KeyMismatch fires when tls.key is not the key of tls.crt.
func KeyMismatch(in Input) (string, string, bool) {
	pub, ok := in.Observed.Key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(in.Observed.Leaf.PublicKey) {
		return ReasonKeyMismatch, "tls.key does not match the certificate in tls.crt", true
	}
	return "", "", false
}

// IssuerNotTrusted fires when the certificate does not chain to the trust
// bundle (the CA changed, or its root left the bundle).
func IssuerNotTrusted(in Input) (string, string, bool) {
	inter := x509.NewCertPool()
	for _, c := range in.Observed.Chain {
		inter.AddCert(c)
	}
	_, err := in.Observed.Leaf.Verify(x509.VerifyOptions{
		Roots:         in.Roots,
		Intermediates: inter,
		CurrentTime:   in.Observed.Leaf.NotBefore.Add(in.Observed.Leaf.NotAfter.Sub(in.Observed.Leaf.NotBefore) / 2),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return ReasonIssuerNotTrusted, fmt.Sprintf("the certificate does not chain to the trust bundle: %v", err), true
	}
	return "", "", false
}

// NamesChanged fires when the DNS names, URIs or IP addresses differ from
// what the source asks for (order does not matter).
func NamesChanged(in Input) (string, string, bool) {
	leaf := in.Observed.Leaf
	var uris, ips []string
	for _, u := range leaf.URIs {
		uris = append(uris, u.String())
	}
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	var diffs []string
	for _, d := range []struct {
		what       string
		have, want []string
	}{{"DNS names", leaf.DNSNames, in.Wanted.DNSNames}, {"URIs", uris, in.Wanted.URIs}, {"IP addresses", ips, in.Wanted.IPAddresses}} {
		if !sameSet(d.have, d.want) {
			diffs = append(diffs, fmt.Sprintf("%s [%s] wanted [%s]", d.what, strings.Join(d.have, ","), strings.Join(d.want, ",")))
		}
	}
	if len(diffs) > 0 {
		return ReasonNamesChanged, "names differ: " + strings.Join(diffs, "; "), true
	}
	return "", "", false
}

// KeyAlgorithmChanged fires when the certificate's key is not of the wanted
// algorithm. An empty wanted algorithm accepts any.
func KeyAlgorithmChanged(in Input) (string, string, bool) {
	if in.Wanted.KeyAlgorithm == "" {
		return "", "", false
	}
	have, err := ca.KeyAlgorithmOf(in.Observed.Leaf.PublicKey)
	if err != nil || string(have) != in.Wanted.KeyAlgorithm {
		return ReasonKeyAlgorithmChanged, fmt.Sprintf("key algorithm is %s, wanted %s", have, in.Wanted.KeyAlgorithm), true
	}
	return "", "", false
}

// ManualRenewal fires when an operator asked to replace the certificate in
// the Secret: the request names its serial. The request is keyed on the
// serial, not on a time, so it fires exactly once whatever the clocks of the
// operator's machine and the cluster say, and a request left in place after
// the certificate was replaced (for this or any other reason) is spent.
func ManualRenewal(in Input) (string, string, bool) {
	if in.RenewRequested == "" {
		return "", "", false
	}
	want, ok := new(big.Int).SetString(strings.TrimSpace(in.RenewRequested), 16)
	if !ok || want.Cmp(in.Observed.Leaf.SerialNumber) != 0 {
		return "", "", false
	}
	return ReasonManual, fmt.Sprintf("renewal of serial %X was requested", in.Observed.Leaf.SerialNumber), true
}

// NearExpiry fires once the renewal time of the certificate has come.
func NearExpiry(in Input) (string, string, bool) {
	leaf := in.Observed.Leaf
	at := RenewalTime(leaf.NotBefore, leaf.NotAfter, in.Policy, leaf.SerialNumber.Bytes())
	if !in.Now.Before(at) {
		return ReasonNearExpiry, fmt.Sprintf("renewal was due at %s; the certificate expires at %s",
			at.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339)), true
	}
	return "", "", false
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
