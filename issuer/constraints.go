package issuer

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// nameConstraints are the DNS and URI name constraints of a signing chain,
// gathered once when the CA is set so that the post-sign check can apply
// them without building and verifying a chain for every leaf.
//
// Only the constraint shapes meshca's own CA writes (permitted and excluded
// DNS and URI domains) are evaluated here. A chain carrying anything else
// (IP ranges, email constraints, or a constraint string this matcher does
// not read the way crypto/x509 does) is marked unsupported, and the check
// then falls back to a full x509 Verify, so a brought-your-own CA is never
// judged by a weaker rule than the relying parties apply.
// errUnsupported means the fast name-constraint check cannot judge a chain
// or a name; the caller verifies the leaf fully instead.
var errUnsupported = errors.New("name constraints need a full verification")

type nameConstraints struct {
	// levels holds one entry per certificate of the chain that carries
	// constraints; a name must satisfy every level.
	levels []constraintLevel
	// unsupported is why the fast path cannot judge this chain, or "".
	unsupported string
}

type constraintLevel struct {
	subject                           string
	permittedDNS, excludedDNS         []string
	permittedURIHost, excludedURIHost []string
}

// gatherConstraints reads the name constraints of every certificate in
// chain (the signing certificate and those above it, root included).
func gatherConstraints(chain []*x509.Certificate) *nameConstraints {
	nc := &nameConstraints{}
	for _, c := range chain {
		if len(c.PermittedIPRanges)+len(c.ExcludedIPRanges)+len(c.PermittedEmailAddresses)+len(c.ExcludedEmailAddresses) > 0 {
			nc.unsupported = fmt.Sprintf("%s has IP or email name constraints", c.Subject)
			return nc
		}
		if len(c.PermittedDNSDomains)+len(c.ExcludedDNSDomains)+len(c.PermittedURIDomains)+len(c.ExcludedURIDomains) == 0 {
			continue
		}
		lvl := constraintLevel{subject: c.Subject.String()}
		for _, set := range []struct {
			in  []string
			out *[]string
		}{
			{c.PermittedDNSDomains, &lvl.permittedDNS}, {c.ExcludedDNSDomains, &lvl.excludedDNS},
			{c.PermittedURIDomains, &lvl.permittedURIHost}, {c.ExcludedURIDomains, &lvl.excludedURIHost},
		} {
			for _, d := range set.in {
				if !plainDomain(strings.TrimPrefix(d, ".")) {
					nc.unsupported = fmt.Sprintf("%s has name constraint %q this check does not read", c.Subject, d)
					return nc
				}
				*set.out = append(*set.out, strings.ToLower(d))
			}
		}
		nc.levels = append(nc.levels, lvl)
	}
	return nc
}

// plainDomain reports whether d is a non-empty run of non-empty labels of
// letters, digits and hyphens: the only constraint syntax read here.
func plainDomain(d string) bool {
	if d == "" {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// check applies the constraints to leaf's DNS names and URIs. It returns
// errUnsupported when the chain or a name is outside what it reads; the
// caller then runs a full Verify.
func (nc *nameConstraints) check(leaf *x509.Certificate) error {
	if nc.unsupported != "" {
		return errUnsupported
	}
	if len(nc.levels) == 0 {
		return nil
	}
	for _, lvl := range nc.levels {
		for _, name := range leaf.DNSNames {
			wildcard := strings.HasPrefix(name, "*.")
			if !plainDomain(strings.TrimPrefix(name, "*.")) || wildcard && len(lvl.excludedDNS) > 0 {
				// Unusual syntax, or whether a wildcard reaches into an
				// excluded subtree: subtle cases are left to Verify.
				return errUnsupported
			}
			if err := lvl.allow("DNS name", name, lvl.permittedDNS, lvl.excludedDNS, withinDomain); err != nil {
				return err
			}
		}
		for _, u := range leaf.URIs {
			host, err := uriHost(u)
			if err != nil {
				if len(lvl.permittedURIHost)+len(lvl.excludedURIHost) > 0 {
					return fmt.Errorf("URI %q: %w", u, err)
				}
				continue
			}
			if err := lvl.allow("URI", host, lvl.permittedURIHost, lvl.excludedURIHost, withinHost); err != nil {
				return err
			}
		}
	}
	return nil
}

// allow applies one level's permitted and excluded subtrees of one kind.
// An empty permitted list permits everything of that kind (RFC 5280
// 4.2.1.10: constraints of one name form do not restrict the others).
func (lvl constraintLevel) allow(kind, name string, permitted, excluded []string, within func(name, c string) bool) error {
	name = strings.ToLower(name)
	for _, c := range excluded {
		if within(name, c) {
			return fmt.Errorf("%s %q is excluded by %q of %s", kind, name, c, lvl.subject)
		}
	}
	if len(permitted) == 0 {
		return nil
	}
	for _, c := range permitted {
		if within(name, c) {
			return nil
		}
	}
	return fmt.Errorf("%s %q is outside the permitted names %v of %s", kind, name, permitted, lvl.subject)
}

// withinDomain reports whether a DNS name falls under constraint c the way
// RFC 5280 (4.2.1.10) reads DNS constraints: c itself or any name below it,
// label-wise; with a leading dot, only names strictly below it.
func withinDomain(name, c string) bool {
	if strings.HasPrefix(c, ".") {
		return strings.HasSuffix(name, c) && len(name) > len(c)
	}
	return name == c || strings.HasSuffix(name, "."+c)
}

// withinHost reports whether a URI's host falls under constraint c the way
// RFC 5280 reads URI constraints: without a leading dot c names exactly one
// host; with one, any host strictly below it. crypto/x509 also lets c match
// hosts below it; the narrower reading is taken on purpose, so this check
// may refuse what a relying party accepts, never the reverse.
func withinHost(host, c string) bool {
	if strings.HasPrefix(c, ".") {
		return strings.HasSuffix(host, c) && len(host) > len(c)
	}
	return host == c
}

// uriHost is the host of a URI SAN as name constraints see it.
func uriHost(u *url.URL) (string, error) {
	host := u.Hostname()
	if host == "" || !plainDomain(host) {
		return "", fmt.Errorf("no domain host for name constraints")
	}
	return host, nil
}
