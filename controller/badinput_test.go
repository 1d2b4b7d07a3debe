package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/internal/testenv"
)

// TestBadInputCorpus feeds TLSContexts and workloads with hostile or broken
// fields to meshca on the real API server. Each is either refused by the API
// server through the CRD schema (the documented refusal), or gets a Warning
// Event and a meshca_requests_rejected_total count and no Secret; and the
// good objects created before and after keep being served. Cases already in
// TestTLSContextTable (invalid Secret name, -1h, dsa-1024, missing target
// namespace, cross-namespace without consent) are not repeated here.
func TestBadInputCorpus(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	other := env.Namespace(t)
	// excluded is outside the namespaces meshca watches, though it
	// consents to Secrets from ns.
	excluded := env.Namespace(t, map[string]string{meta.LabelAcceptSecretsFrom: ns})
	h := startHarness(t, harnessOptions{namespaces: []string{ns, other}, workloads: true})
	h.create(t, tlsContext(ns, "good-before", issue, map[string]any{"hosts": []any{"a." + ns + ".svc"}, "secret": "good-before"}))

	thousand := make([]any, 1000)
	for i := range thousand {
		thousand[i] = fmt.Sprintf("h%d.%s.svc", i, ns)
	}
	long := strings.Repeat("a", 64)
	var labels253 []string
	for range 5 {
		labels253 = append(labels253, strings.Repeat("b", 60))
	}
	tooLongName := strings.Join(labels253, ".") + "." + ns + ".svc"
	ann := func(kv ...string) map[string]string {
		m := map[string]string{meta.AnnotationIssue: "true"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	type want struct {
		apiRefusal string // the API server refuses the object; text in its error
		event      string // else a Warning Event with this reason
		eventHas   string
		rule       string // meshca_requests_rejected_total rule counted
	}
	cases := map[string]struct {
		ann  map[string]string
		spec map[string]any
		want want
	}{
		"1000 hosts":                    {issue, map[string]any{"hosts": thousand, "secret": "s"}, want{event: EventInvalidSpec, eventHas: "at most 100", rule: "spec"}},
		"label over 63 bytes":           {issue, map[string]any{"hosts": []any{long + "." + ns + ".svc"}, "secret": "s"}, want{event: EventPolicyRejected, eventHas: "longer than 63", rule: "policy"}},
		"name over 253 bytes":           {issue, map[string]any{"hosts": []any{tooLongName}, "secret": "s"}, want{event: EventPolicyRejected, eventHas: "253", rule: "policy"}},
		"non-ascii host":                {issue, map[string]any{"hosts": []any{"bücher." + ns + ".svc"}, "secret": "s"}, want{event: EventPolicyRejected, eventHas: "not allowed", rule: "policy"}},
		"non-ascii dns-names":           {ann(meta.AnnotationDNSNames, "ä."+ns+".svc"), map[string]any{"secret": "s"}, want{event: EventPolicyRejected, eventHas: "not allowed", rule: "policy"}},
		"wildcard *.* annotation":       {ann(meta.AnnotationDNSNames, "*.*"), map[string]any{"secret": "s"}, want{event: EventPolicyRejected, eventHas: "wildcard", rule: "policy"}},
		"ip literal host":               {issue, map[string]any{"hosts": []any{"10.0.0.1"}, "secret": "s"}, want{event: EventPolicyRejected, eventHas: "10.0.0.1", rule: "policy"}},
		"ipv6 literal host":             {issue, map[string]any{"hosts": []any{"::1"}, "secret": "s"}, want{event: EventPolicyRejected, eventHas: "::1", rule: "policy"}},
		"empty secret":                  {issue, map[string]any{"hosts": []any{""}, "secret": ""}, want{event: EventInvalidSpec, eventHas: "nothing to issue", rule: "spec"}},
		"null secret":                   {issue, map[string]any{"secret": nil}, want{event: EventInvalidSpec, eventHas: "nothing to issue", rule: "spec"}},
		"hosts wrong type":              {issue, map[string]any{"hosts": "a.b", "secret": "s"}, want{apiRefusal: "spec.hosts"}},
		"host number":                   {issue, map[string]any{"hosts": []any{int64(7)}, "secret": "s"}, want{apiRefusal: "spec.hosts"}},
		"secret wrong type":             {issue, map[string]any{"secret": map[string]any{"name": "x"}}, want{apiRefusal: "spec.secret"}},
		"namespacing wrong type":        {issue, map[string]any{"secret": "s", "secret_namespacing": "no"}, want{apiRefusal: "spec.secret_namespacing"}},
		"secret name too long":          {issue, map[string]any{"secret": strings.Repeat("x", 254)}, want{event: EventInvalidSpec, eventHas: "not a valid Secret name", rule: "spec"}},
		"secret namespace invalid":      {issue, map[string]any{"secret": "s.Not_A_Namespace"}, want{event: EventInvalidSpec, eventHas: "not a valid namespace", rule: "spec"}},
		"secret in unwatched namespace": {issue, map[string]any{"secret": "s." + excluded}, want{event: EventCrossNamespace, eventHas: "not one meshca watches", rule: "cross-namespace"}},
		"duration 0":                    {ann(meta.AnnotationDuration, "0"), map[string]any{"secret": "s"}, want{event: EventInvalidSpec, eventHas: "must be positive", rule: "spec"}},
		"duration 1000000h":             {ann(meta.AnnotationDuration, "1000000h"), map[string]any{"secret": "s"}, want{event: EventInvalidSpec, eventHas: "maximum", rule: "spec"}},
		"duration abc":                  {ann(meta.AnnotationDuration, "abc"), map[string]any{"secret": "s"}, want{event: EventInvalidSpec, eventHas: "not a duration", rule: "spec"}},
		"renew-before abc":              {ann(meta.AnnotationRenewBefore, "1x"), map[string]any{"secret": "s"}, want{event: EventInvalidSpec, eventHas: "not a duration", rule: "spec"}},
		"key algorithm rsa-1024":        {ann(meta.AnnotationKeyAlgorithm, "rsa-1024"), map[string]any{"secret": "s"}, want{event: EventInvalidSpec, eventHas: "rsa-1024", rule: "spec"}},
		// Policy: a TLSContext in ns cannot claim another namespace's names
		// or SPIFFE ID by any route.
		"policy: host of other namespace":      {issue, map[string]any{"hosts": []any{"api." + other + ".svc"}, "secret": "s"}, want{event: EventPolicyRejected, eventHas: "api." + other + ".svc", rule: "policy"}},
		"policy: dns-names of other namespace": {ann(meta.AnnotationDNSNames, "api."+other+".svc.cluster.local"), map[string]any{"secret": "s"}, want{event: EventPolicyRejected, eventHas: other, rule: "policy"}},
		"policy: name outside suffixes":        {ann(meta.AnnotationDNSNames, "login.bank.example"), map[string]any{"secret": "s"}, want{event: EventPolicyRejected, eventHas: "login.bank.example", rule: "policy"}},
		"policy: service account with slash":   {ann(meta.AnnotationServiceAccount, "x/../../ns/"+other+"/sa/admin"), map[string]any{"secret": "s"}, want{event: EventInvalidSpec, eventHas: "not a service account name", rule: "spec"}},
		"policy: service account ..":           {ann(meta.AnnotationServiceAccount, ".."), map[string]any{"secret": "s"}, want{event: EventInvalidSpec, eventHas: "not a service account name", rule: "spec"}},
		"policy: service account url":          {ann(meta.AnnotationServiceAccount, "spiffe://cluster.local/ns/"+other+"/sa/a"), map[string]any{"secret": "s"}, want{event: EventInvalidSpec, eventHas: "not a service account name", rule: "spec"}},
		"policy: secret in other namespace":    {issue, map[string]any{"secret": "stolen." + other}, want{event: EventCrossNamespace, eventHas: "does not accept", rule: "cross-namespace"}},
		"policy: ca_secret in other namespace": {issue, map[string]any{"ca_secret": "stolen-ca." + other}, want{event: EventCrossNamespace, eventHas: "does not accept", rule: "cross-namespace"}},
	}
	i := 0
	names := map[string]string{}
	for name, tc := range cases {
		i++
		objName := fmt.Sprintf("bad-%d", i)
		names[name] = objName
		spec := tc.spec
		if s, ok := spec["secret"].(string); ok && s == "s" {
			// Each case gets its own Secret name so a wrongly issued one
			// is seen.
			spec["secret"] = objName + "-certs"
		}
		err := h.env.Client.Create(context.Background(), tlsContext(ns, objName, tc.ann, spec))
		if tc.want.apiRefusal != "" {
			if err == nil || !strings.Contains(err.Error(), tc.want.apiRefusal) {
				t.Errorf("%s: API server answered %v, want a refusal naming %s", name, err, tc.want.apiRefusal)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: create: %v", name, err)
		}
	}
	// A workload in ns cannot get another namespace's names, nor write its
	// Secret elsewhere through meshca.io/secret-name.
	h.create(t,
		workload("Deployment", ns, "wl-other-dns", "", certAnn(meta.AnnotationDNSNames, "db."+other+".svc")),
		workload("Deployment", ns, "wl-secret-elsewhere", "", certAnn(meta.AnnotationSecretName, "x/"+other)),
		workload("Deployment", ns, "wl-dotted-secret", "", certAnn(meta.AnnotationSecretName, "x."+other)),
	)
	for name, tc := range cases {
		if tc.want.apiRefusal != "" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			note := h.waitEvent(t, ns, names[name], tc.want.event)
			if !strings.Contains(note, tc.want.eventHas) {
				t.Errorf("Event %s: %q does not mention %q", tc.want.event, note, tc.want.eventHas)
			}
			h.noSecret(t, ns, names[name]+"-certs")
			if v := counter(t, h.metrics.Rejected.WithLabelValues(tc.want.rule)); v < 1 {
				t.Errorf("meshca_requests_rejected_total{rule=%q} = %v", tc.want.rule, v)
			}
		})
	}
	t.Run("workload: other namespace's name", func(t *testing.T) {
		t.Parallel()
		note := h.waitEvent(t, ns, "wl-other-dns", EventPolicyRejected)
		if !strings.Contains(note, "db."+other+".svc") {
			t.Errorf("Event %q does not name the refused name", note)
		}
		h.noSecret(t, ns, "wl-other-dns-meshca-tls")
	})
	t.Run("workload: secret-name with slash", func(t *testing.T) {
		t.Parallel()
		h.waitEvent(t, ns, "wl-secret-elsewhere", EventInvalidSpec)
	})
	t.Run("workload: dotted secret-name stays home", func(t *testing.T) {
		t.Parallel()
		// A workload's secret-name is a name in its own namespace, never
		// name.namespace: the Secret lands in ns and nothing in other.
		s := h.waitSecret(t, ns, "x."+other, nil)
		if leaf := leafOf(t, s); joined(uris(leaf)) != "spiffe://cluster.local/ns/"+ns+"/sa/default" {
			t.Errorf("SPIFFE ID %v", uris(leaf))
		}
		h.noSecret(t, other, "x")
	})
	t.Run("good objects still served", func(t *testing.T) {
		t.Parallel()
		h.create(t, tlsContext(ns, "good-after", issue, map[string]any{"hosts": []any{"b." + ns + ".svc"}, "secret": "good-after"}))
		for _, n := range []string{"good-before", "good-after"} {
			s := h.waitSecret(t, ns, n, nil)
			if err := emissaryCheck(s, false); err != nil {
				t.Errorf("%s: %v", n, err)
			}
		}
		h.noSecret(t, other, "stolen")
		h.noSecret(t, other, "stolen-ca")
		h.noSecret(t, excluded, "s")
	})
}
