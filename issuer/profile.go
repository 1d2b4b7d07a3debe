package issuer

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/meshca/meshca/ca"
)

// Profile names what a certificate is for; it fixes the key usages and the
// names a request must carry.
type Profile string

// The profiles.
const (
	// ProfileWorkload is a workload's certificate: serverAuth and clientAuth,
	// a SPIFFE ID and the workload's DNS names.
	ProfileWorkload Profile = "workload"
	// ProfileGateway is a gateway's certificate (a TLSContext's spec.secret):
	// serverAuth and clientAuth, DNS names and a SPIFFE ID.
	ProfileGateway Profile = "gateway"
	// ProfileServing is a server-only certificate such as the admission
	// webhook's own: serverAuth, DNS names or IP addresses.
	ProfileServing Profile = "serving"
)

// Profiles lists every profile.
var Profiles = []Profile{ProfileWorkload, ProfileGateway, ProfileServing}

// ErrInvalidRequest marks a request that is malformed whatever the policy:
// unknown profile, no names, a missing SPIFFE ID where the profile needs one.
var ErrInvalidRequest = errors.New("invalid certificate request")

// ParseProfile parses a profile name.
func ParseProfile(s string) (Profile, error) {
	for _, p := range Profiles {
		if Profile(s) == p {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: unknown profile %q (want workload, gateway or serving)", ErrInvalidRequest, s)
}

// ExtKeyUsages returns the extended key usages of certificates of the profile.
func (p Profile) ExtKeyUsages() []x509.ExtKeyUsage {
	if p == ProfileServing {
		return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
}

func (p Profile) needsSPIFFEID() bool { return p == ProfileWorkload || p == ProfileGateway }

// Request asks for one certificate.
type Request struct {
	// Profile is required.
	Profile Profile
	// Namespace the certificate is issued for; the policy limits names to
	// what this namespace may claim. Required unless the policy is
	// unrestricted (the operator's).
	Namespace string
	// SPIFFEID is the URI SAN spiffe://<trust-domain>/ns/<ns>/sa/<sa>.
	// Required for workload and gateway, optional for serving.
	SPIFFEID string
	// DNSNames are DNS SANs; they are compared lowercase.
	DNSNames []string
	// IPAddresses are IP SANs, refused unless the policy allows them.
	IPAddresses []net.IP
	// URIs are further, non-SPIFFE URI SANs, refused unless allowed.
	URIs []string
	// Duration is the lifetime; 0 means the issuer's default (24h). The
	// certificate never outlives the issuing CA.
	Duration time.Duration
	// KeyAlgorithm of the new key; "" means the issuer's default.
	KeyAlgorithm ca.KeyAlgorithm
	// NamespaceSuffixes are further DNS suffixes Namespace may claim names
	// under, as its administrator allows (the Namespace's
	// meshca.io/allowed-dns-suffixes annotation), resolved by the caller.
	// nil means none beyond the policy's.
	NamespaceSuffixes []string
}

// Bundle is an issued certificate with its key and the trust bundle.
type Bundle struct {
	// CertificatePEM is the leaf followed by the intermediate chain (tls.crt).
	CertificatePEM []byte
	// PrivateKeyPEM is the leaf's key as PKCS#8 (tls.key).
	PrivateKeyPEM []byte
	// CAPEM is the trust bundle: the roots consumers trust (ca.crt).
	CAPEM []byte
	// Leaf is the parsed leaf certificate.
	Leaf *x509.Certificate
	// IssuerFingerprint names the CA that signed it (annotation meshca.io/issuer).
	IssuerFingerprint string
}
