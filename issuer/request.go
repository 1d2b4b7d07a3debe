package issuer

import (
	"fmt"
	"strings"
	"time"

	"github.com/meshca/meshca/ca"
)

// Normalize fills a request's defaults (defaultDuration, defaultKeyAlgorithm
// when the request names none) and rejects a malformed one with an error
// wrapping ErrInvalidRequest. DNS names come back lowercase, without a
// trailing dot and without duplicates. Every backend normalizes before it
// applies the policy, so all of them read a request the same way.
func (req Request) Normalize(defaultDuration time.Duration, defaultKeyAlgorithm ca.KeyAlgorithm) (Request, error) {
	if _, err := ParseProfile(string(req.Profile)); err != nil {
		return req, err
	}
	if req.Duration < 0 {
		return req, fmt.Errorf("%w: negative duration %s", ErrInvalidRequest, req.Duration)
	}
	if req.Duration == 0 {
		req.Duration = defaultDuration
	}
	if req.KeyAlgorithm == "" {
		req.KeyAlgorithm = defaultKeyAlgorithm
	} else if _, err := ca.ParseKeyAlgorithm(string(req.KeyAlgorithm)); err != nil {
		return req, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if req.Profile.needsSPIFFEID() && req.SPIFFEID == "" {
		return req, fmt.Errorf("%w: profile %s needs a SPIFFE ID", ErrInvalidRequest, req.Profile)
	}
	if req.SPIFFEID == "" && len(req.DNSNames) == 0 && len(req.IPAddresses) == 0 && len(req.URIs) == 0 {
		return req, fmt.Errorf("%w: no names", ErrInvalidRequest)
	}
	if len(req.DNSNames) > 0 {
		dns := make([]string, 0, len(req.DNSNames))
		seen := make(map[string]bool, len(req.DNSNames))
		for _, n := range req.DNSNames {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			if !seen[n] {
				seen[n] = true
				dns = append(dns, n)
			}
		}
		req.DNSNames = dns
	}
	return req, nil
}

// CommonName is the request's first DNS name when it fits the 64 characters
// of a CommonName, else empty (the subject is then empty and the SAN
// extension critical, as RFC 5280 asks).
func (req Request) CommonName() string {
	if len(req.DNSNames) > 0 && len(req.DNSNames[0]) <= 64 {
		return req.DNSNames[0]
	}
	return ""
}
