package issuer

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Rule names the policy rule a name broke.
type Rule string

// The policy rules.
const (
	RuleSPIFFEIDSyntax    Rule = "spiffe-id-syntax"    // not spiffe://<trust-domain>/<path>
	RuleSPIFFETrustDomain Rule = "spiffe-trust-domain" // another trust domain
	RuleSPIFFENamespace   Rule = "spiffe-namespace"    // not /ns/<own namespace>/...
	RuleDNSSyntax         Rule = "dns-syntax"          // not a DNS name
	RuleDNSSuffix         Rule = "dns-suffix"          // under no suffix the namespace may claim
	RuleWildcard          Rule = "wildcard"            // wildcards not allowed
	RuleIPSAN             Rule = "ip-san"              // IP SANs not allowed
	RuleURISAN            Rule = "uri-san"             // non-SPIFFE URIs not allowed
)

// ErrPolicy matches every *PolicyError with errors.Is.
var ErrPolicy = errors.New("refused by policy")

// PolicyError says which name of a request broke which rule. A request with
// one such name is refused whole.
type PolicyError struct {
	Namespace string
	Name      string
	Rule      Rule
	Detail    string
}

func (e *PolicyError) Error() string {
	return fmt.Sprintf("policy refuses %q for namespace %q: rule %s: %s", e.Name, e.Namespace, e.Rule, e.Detail)
}

// Is makes errors.Is(err, ErrPolicy) true.
func (e *PolicyError) Is(target error) bool { return target == ErrPolicy }

// Policy says which names a namespace may put in a certificate. The zero
// value is the strictest useful policy for trust domain and cluster domain
// cluster.local: own SPIFFE IDs, own Service DNS names, nothing else.
type Policy struct {
	// TrustDomain of SPIFFE IDs; "" means cluster.local.
	TrustDomain string
	// ClusterDomain of Service names; "" means cluster.local.
	ClusterDomain string
	// AllowedDNSSuffixes any namespace may claim names under, besides its
	// own <ns>.svc and <ns>.svc.<cluster-domain> and the request's
	// NamespaceSuffixes.
	AllowedDNSSuffixes []string
	// AllowWildcards permits a leftmost "*" label under an allowed suffix.
	AllowWildcards bool
	// AllowIPSANs permits IP address SANs.
	AllowIPSANs bool
	// AllowURIs permits URI SANs other than the SPIFFE ID.
	AllowURIs bool
	// Unrestricted is the operator's authority (the CLI holds the CA key):
	// names are checked for syntax only. Build it with OperatorPolicy, never
	// in-cluster.
	Unrestricted bool
}

// OperatorPolicy is the policy of someone who holds the CA key, such as the
// meshca CLI: any well-formed name in any namespace, wildcards, IPs and URIs
// included.
func OperatorPolicy() Policy {
	return Policy{Unrestricted: true, AllowWildcards: true, AllowIPSANs: true, AllowURIs: true}
}

func (p Policy) trustDomain() string {
	if p.TrustDomain == "" {
		return "cluster.local"
	}
	return p.TrustDomain
}

// Suffixes returns the DNS suffixes req may claim names under: its
// namespace's own, the cluster-wide ones and req.NamespaceSuffixes.
func (p Policy) Suffixes(req Request) []string {
	cd := p.ClusterDomain
	if cd == "" {
		cd = "cluster.local"
	}
	ns := req.Namespace
	out := make([]string, 0, 2+len(p.AllowedDNSSuffixes)+len(req.NamespaceSuffixes))
	out = append(out, ns+".svc", ns+".svc."+cd)
	out = append(out, p.AllowedDNSSuffixes...)
	out = append(out, req.NamespaceSuffixes...)
	for i, s := range out {
		out[i] = strings.ToLower(strings.Trim(s, "."))
	}
	return slices.Compact(out)
}

// Check returns nil if every name of req is allowed, else a *PolicyError
// for the first one that is not, or an error wrapping ErrInvalidRequest.
// It is a pure function of p and req: what a namespace's administrator
// allows it comes in req.NamespaceSuffixes.
func (p Policy) Check(req Request) error {
	if !p.Unrestricted && req.Namespace == "" {
		return fmt.Errorf("%w: no namespace", ErrInvalidRequest)
	}
	refuse := func(name string, rule Rule, format string, args ...any) error {
		return &PolicyError{Namespace: req.Namespace, Name: name, Rule: rule, Detail: fmt.Sprintf(format, args...)}
	}
	if req.SPIFFEID != "" {
		if err := p.checkSPIFFEID(req.SPIFFEID, req.Namespace, refuse); err != nil {
			return err
		}
	}
	var suffixes []string
	if !p.Unrestricted {
		suffixes = p.Suffixes(req)
	}
	for _, name := range req.DNSNames {
		base, wildcard := strings.CutPrefix(name, "*.")
		if wildcard && !p.AllowWildcards {
			return refuse(name, RuleWildcard, "wildcard names are not allowed (--allow-wildcards)")
		}
		if err := dnsSyntax(base); err != nil {
			return refuse(name, RuleDNSSyntax, "%v", err)
		}
		if p.Unrestricted {
			continue
		}
		if !slices.ContainsFunc(suffixes, func(s string) bool { return base == s || strings.HasSuffix(base, "."+s) }) {
			return refuse(name, RuleDNSSuffix, "not under any suffix the namespace may claim (%s)", strings.Join(suffixes, ", "))
		}
	}
	for _, ip := range req.IPAddresses {
		if !p.AllowIPSANs {
			return refuse(ip.String(), RuleIPSAN, "IP address SANs are not allowed (--allow-ip-sans)")
		}
		if ip.To16() == nil {
			return refuse(ip.String(), RuleIPSAN, "not an IP address")
		}
	}
	for _, u := range req.URIs {
		if !p.AllowURIs {
			return refuse(u, RuleURISAN, "URI SANs other than the SPIFFE ID are not allowed")
		}
		if parsed, err := url.Parse(u); err != nil || parsed.Scheme == "" {
			return refuse(u, RuleURISAN, "not an absolute URI")
		}
	}
	return nil
}

func (p Policy) checkSPIFFEID(id, ns string, refuse func(string, Rule, string, ...any) error) error {
	u, err := url.Parse(id)
	if err != nil || u.Scheme != "spiffe" || u.Host == "" || u.User != nil || u.Port() != "" ||
		u.RawQuery != "" || u.Fragment != "" || u.Path == "" || u.Path == "/" || strings.Contains(u.Path, "//") || id != u.String() {
		return refuse(id, RuleSPIFFEIDSyntax, "want spiffe://<trust-domain>/<path> without port, query or fragment")
	}
	if p.Unrestricted {
		return nil
	}
	if u.Host != p.trustDomain() {
		return refuse(id, RuleSPIFFETrustDomain, "trust domain must be %s", p.trustDomain())
	}
	if segs := strings.Split(strings.TrimPrefix(u.Path, "/"), "/"); len(segs) < 2 || segs[0] != "ns" || segs[1] != ns {
		return refuse(id, RuleSPIFFENamespace, "must start with spiffe://%s/ns/%s/", p.trustDomain(), ns)
	}
	return nil
}

// dnsSyntax accepts lowercase RFC 1123 host names (no wildcard).
func dnsSyntax(name string) error {
	if name == "" || len(name) > 253 {
		return errors.New("empty or longer than 253 characters")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("empty label or label longer than 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("label starts or ends with '-'")
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("character %q not allowed (lowercase letters, digits, '-')", r)
			}
		}
	}
	return nil
}
