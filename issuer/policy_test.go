package issuer_test

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/meshca/meshca/issuer"
)

func TestPolicyCheck(t *testing.T) {
	t.Parallel()
	// What the controller resolves from each Namespace's annotation and
	// puts in the request.
	perNS := func(ns string) []string {
		if ns == "shop" {
			return []string{"shop.example.com"}
		}
		return nil
	}
	strict := issuer.Policy{TrustDomain: "prod.example", ClusterDomain: "k8s.local"}
	wide := strict
	wide.AllowedDNSSuffixes = []string{".corp.example"}
	wide.AllowWildcards, wide.AllowIPSANs, wide.AllowURIs = true, true, true
	id := func(ns string) string { return "spiffe://prod.example/ns/" + ns + "/sa/api" }
	type want struct {
		rule issuer.Rule
		name string
	}
	cases := map[string]struct {
		policy issuer.Policy
		req    issuer.Request
		want   *want
	}{
		"own SPIFFE ID and service names": {policy: strict, req: issuer.Request{Namespace: "shop", SPIFFEID: id("shop"),
			DNSNames: []string{"api.shop.svc", "api.shop.svc.k8s.local", "shop.svc"}}},
		"namespace-allowed suffix":       {policy: strict, req: issuer.Request{Namespace: "shop", DNSNames: []string{"www.shop.example.com"}}},
		"suffix allowed to another ns":   {policy: strict, req: issuer.Request{Namespace: "bank", DNSNames: []string{"www.shop.example.com"}}, want: &want{issuer.RuleDNSSuffix, "www.shop.example.com"}},
		"cluster-wide suffix":            {policy: wide, req: issuer.Request{Namespace: "bank", DNSNames: []string{"x.corp.example"}}},
		"label boundary":                 {policy: strict, req: issuer.Request{Namespace: "shop", DNSNames: []string{"api.evilshop.svc"}}, want: &want{issuer.RuleDNSSuffix, "api.evilshop.svc"}},
		"default cluster domain refused": {policy: strict, req: issuer.Request{Namespace: "shop", DNSNames: []string{"api.shop.svc.cluster.local"}}, want: &want{issuer.RuleDNSSuffix, "api.shop.svc.cluster.local"}},
		"other namespace SPIFFE ID":      {policy: strict, req: issuer.Request{Namespace: "shop", SPIFFEID: id("bank")}, want: &want{issuer.RuleSPIFFENamespace, id("bank")}},
		"namespace prefix in SPIFFE ID":  {policy: strict, req: issuer.Request{Namespace: "shop", SPIFFEID: "spiffe://prod.example/ns/shopping/sa/x"}, want: &want{issuer.RuleSPIFFENamespace, "spiffe://prod.example/ns/shopping/sa/x"}},
		"SPIFFE ID without ns":           {policy: strict, req: issuer.Request{Namespace: "shop", SPIFFEID: "spiffe://prod.example/sa/x"}, want: &want{issuer.RuleSPIFFENamespace, "spiffe://prod.example/sa/x"}},
		"other trust domain":             {policy: strict, req: issuer.Request{Namespace: "shop", SPIFFEID: "spiffe://other/ns/shop/sa/x"}, want: &want{issuer.RuleSPIFFETrustDomain, "spiffe://other/ns/shop/sa/x"}},
		"not a SPIFFE URI":               {policy: strict, req: issuer.Request{Namespace: "shop", SPIFFEID: "https://prod.example/ns/shop"}, want: &want{issuer.RuleSPIFFEIDSyntax, "https://prod.example/ns/shop"}},
		"SPIFFE ID with query":           {policy: strict, req: issuer.Request{Namespace: "shop", SPIFFEID: id("shop") + "?x=1"}, want: &want{issuer.RuleSPIFFEIDSyntax, id("shop") + "?x=1"}},
		"wildcard refused":               {policy: strict, req: issuer.Request{Namespace: "shop", DNSNames: []string{"*.shop.svc"}}, want: &want{issuer.RuleWildcard, "*.shop.svc"}},
		"wildcard allowed":               {policy: wide, req: issuer.Request{Namespace: "shop", DNSNames: []string{"*.shop.svc"}}},
		"wildcard outside suffix":        {policy: wide, req: issuer.Request{Namespace: "shop", DNSNames: []string{"*.bank.svc"}}, want: &want{issuer.RuleDNSSuffix, "*.bank.svc"}},
		"inner wildcard":                 {policy: wide, req: issuer.Request{Namespace: "shop", DNSNames: []string{"a.*.shop.svc"}}, want: &want{issuer.RuleDNSSyntax, "a.*.shop.svc"}},
		"IP refused":                     {policy: strict, req: issuer.Request{Namespace: "shop", IPAddresses: []net.IP{net.ParseIP("::1")}}, want: &want{issuer.RuleIPSAN, "::1"}},
		"IP allowed":                     {policy: wide, req: issuer.Request{Namespace: "shop", IPAddresses: []net.IP{net.ParseIP("::1")}}},
		"URI refused":                    {policy: strict, req: issuer.Request{Namespace: "shop", URIs: []string{"https://shop.example.com"}}, want: &want{issuer.RuleURISAN, "https://shop.example.com"}},
		"URI allowed":                    {policy: wide, req: issuer.Request{Namespace: "shop", URIs: []string{"https://shop.example.com"}}},
		"bad DNS syntax":                 {policy: strict, req: issuer.Request{Namespace: "shop", DNSNames: []string{"a..shop.svc"}}, want: &want{issuer.RuleDNSSyntax, "a..shop.svc"}},
		"operator: any names":            {policy: issuer.OperatorPolicy(), req: issuer.Request{SPIFFEID: "spiffe://x/anything", DNSNames: []string{"*.example.com"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}}},
		"operator: still syntax":         {policy: issuer.OperatorPolicy(), req: issuer.Request{SPIFFEID: "spiffe://x"}, want: &want{issuer.RuleSPIFFEIDSyntax, "spiffe://x"}},
		"zero policy is cluster.local":   {policy: issuer.Policy{}, req: issuer.Request{Namespace: "a", SPIFFEID: "spiffe://cluster.local/ns/a/sa/b", DNSNames: []string{"x.a.svc.cluster.local"}}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tc.req.NamespaceSuffixes = perNS(tc.req.Namespace)
			err := tc.policy.Check(tc.req)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			var pe *issuer.PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("Check = %v, want a *PolicyError", err)
			}
			if pe.Rule != tc.want.rule || pe.Name != tc.want.name || pe.Namespace != tc.req.Namespace {
				t.Fatalf("PolicyError{%q, %s, ns %q}, want {%q, %s}", pe.Name, pe.Rule, pe.Namespace, tc.want.name, tc.want.rule)
			}
			if !strings.Contains(err.Error(), string(pe.Rule)) || !strings.Contains(err.Error(), pe.Name) {
				t.Errorf("message %q does not name the rule and the name", err)
			}
		})
	}
}

func TestPolicyNeedsNamespace(t *testing.T) {
	t.Parallel()
	err := issuer.Policy{}.Check(issuer.Request{DNSNames: []string{"a.svc"}})
	if !errors.Is(err, issuer.ErrInvalidRequest) {
		t.Fatalf("Check without namespace = %v, want ErrInvalidRequest", err)
	}
}
