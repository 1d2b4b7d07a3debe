package controller

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/internal/testenv"
)

// TestTLSContextTable runs each kind of TLSContext against the real API
// server and checks the Secret, Event or refusal it gets.
func TestTLSContextTable(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	accepting := env.Namespace(t, map[string]string{meta.LabelAcceptSecretsFrom: ns})
	refusing := env.Namespace(t)
	h := startHarness(t, harnessOptions{namespaces: []string{ns, accepting, refusing}})

	foreign := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "foreign-certs", Namespace: ns},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{"keep": []byte("me")},
	}
	h.create(t, foreign)

	spiffe := "spiffe://cluster.local/ns/" + ns + "/sa/ambassador"
	type want struct {
		secretNS, secret string   // Secret expected to appear
		dns              []string // its DNS SANs
		uri              string   // its URI SAN
		event            string   // Warning Event reason expected instead
		eventHas         string   // text the Event names
		absentNS, absent string   // Secret that must not appear
	}
	cases := map[string]struct {
		ann  map[string]string
		spec map[string]any
		want want
	}{
		"hosts present": {issue, map[string]any{"hosts": []any{"api." + ns + ".svc", "API." + ns + ".svc.cluster.local"}, "secret": "hosts-certs"},
			want{secretNS: ns, secret: "hosts-certs", dns: []string{"api." + ns + ".svc", "api." + ns + ".svc.cluster.local"}, uri: spiffe}},
		"hosts empty": {issue, map[string]any{"hosts": []any{}, "secret": "upstream-certs"},
			want{secretNS: ns, secret: "upstream-certs", uri: spiffe}},
		"wildcard host skipped": {issue, map[string]any{"hosts": []any{"*", "web." + ns + ".svc"}, "secret": "wild-certs"},
			want{secretNS: ns, secret: "wild-certs", dns: []string{"web." + ns + ".svc"}, uri: spiffe}},
		"service account annotation": {map[string]string{meta.AnnotationIssue: "true", meta.AnnotationServiceAccount: "edge"}, map[string]any{"secret": "sa-certs"},
			want{secretNS: ns, secret: "sa-certs", uri: "spiffe://cluster.local/ns/" + ns + "/sa/edge"}},
		"other namespace, accepted": {issue, map[string]any{"secret": "cross-certs." + accepting},
			want{secretNS: accepting, secret: "cross-certs", uri: spiffe}},
		"other namespace, not accepted": {issue, map[string]any{"secret": "cross-certs." + refusing},
			want{event: EventCrossNamespace, eventHas: "does not accept", absentNS: refusing, absent: "cross-certs"}},
		"secret_namespacing false": {issue, map[string]any{"secret": "dotted.certs", "secret_namespacing": false},
			want{secretNS: ns, secret: "dotted.certs", uri: spiffe}},
		"missing target namespace": {issue, map[string]any{"secret": "x.no-such-namespace"},
			want{event: EventCrossNamespace, eventHas: "does not exist"}},
		"invalid secret name": {issue, map[string]any{"secret": "Bad_Name"},
			want{event: EventInvalidSpec, eventHas: "not a valid Secret name"}},
		"foreign secret": {issue, map[string]any{"secret": "foreign-certs"},
			want{event: EventSecretConflict, eventHas: "not managed by meshca"}},
		"name outside policy": {issue, map[string]any{"hosts": []any{"www.example.com"}, "secret": "public-certs"},
			want{event: EventPolicyRejected, eventHas: "www.example.com", absentNS: ns, absent: "public-certs"}},
		"bad duration": {map[string]string{meta.AnnotationIssue: "true", meta.AnnotationDuration: "-1h"}, map[string]any{"secret": "dur-certs"},
			want{event: EventInvalidSpec, eventHas: "must be positive", absentNS: ns, absent: "dur-certs"}},
		"unknown key algorithm": {map[string]string{meta.AnnotationIssue: "true", meta.AnnotationKeyAlgorithm: "dsa-1024"}, map[string]any{"secret": "alg-certs"},
			want{event: EventInvalidSpec, eventHas: "dsa-1024"}},
	}
	for name, tc := range cases {
		objName := strings.ReplaceAll(strings.ReplaceAll(name, " ", "-"), ",", "")
		objName = strings.ReplaceAll(objName, "_", "-")
		h.create(t, tlsContext(ns, objName, tc.ann, tc.spec))
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if tc.want.event != "" {
				note := h.waitEvent(t, ns, objName, tc.want.event)
				if !strings.Contains(note, tc.want.eventHas) {
					t.Errorf("Event %s: %q does not mention %q", tc.want.event, note, tc.want.eventHas)
				}
				if tc.want.absent != "" {
					h.noSecret(t, tc.want.absentNS, tc.want.absent)
				}
				return
			}
			s := h.waitSecret(t, tc.want.secretNS, tc.want.secret, nil)
			if s.Type != corev1.SecretTypeTLS {
				t.Errorf("type %s, want kubernetes.io/tls", s.Type)
			}
			if err := emissaryCheck(s, false); err != nil {
				t.Errorf("Emissary would not read it: %v", err)
			}
			leaf := leafOf(t, s)
			dns := slices.Clone(leaf.DNSNames)
			slices.Sort(dns)
			if joined(dns) != joined(tc.want.dns) {
				t.Errorf("DNS SANs %v, want %v", dns, tc.want.dns)
			}
			if joined(uris(leaf)) != tc.want.uri {
				t.Errorf("URI SANs %v, want %s", uris(leaf), tc.want.uri)
			}
			for _, k := range []string{meta.AnnotationSerial, meta.AnnotationNotAfter, meta.AnnotationRenewAt, meta.AnnotationSPIFFEID, meta.AnnotationIssuer, meta.AnnotationSource} {
				if s.Annotations[k] == "" {
					t.Errorf("annotation %s missing", k)
				}
			}
			if s.Labels[meta.LabelManagedBy] != meta.ManagedByValue {
				t.Errorf("label %s missing", meta.LabelManagedBy)
			}
			h.waitEvent(t, ns, objName, EventIssued)
		})
	}
	t.Run("foreign secret untouched", func(t *testing.T) {
		h.waitEvent(t, ns, "foreign-secret", EventSecretConflict)
		got := h.waitSecret(t, ns, "foreign-certs", nil)
		if string(got.Data["keep"]) != "me" || len(got.Data) != 1 || got.ResourceVersion != foreign.ResourceVersion {
			t.Errorf("foreign Secret was modified: %v", got)
		}
		if v := counter(t, h.metrics.Conflicts.WithLabelValues("foreign")); v < 1 {
			t.Errorf("foreign conflicts metric = %v", v)
		}
	})
}

// TestCASecret checks the Opaque CA Secret Emissary reads for ca_secret.
func TestCASecret(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	h := startHarness(t, harnessOptions{namespaces: []string{ns}})
	h.create(t,
		tlsContext(ns, "a", issue, map[string]any{"secret": "a-certs", "ca_secret": "shared-ca"}),
		tlsContext(ns, "b", issue, map[string]any{"secret": "b-certs", "ca_secret": "shared-ca"}),
	)
	s := h.waitSecret(t, ns, "shared-ca", nil)
	if s.Type != corev1.SecretTypeOpaque {
		t.Errorf("type %s, want Opaque", s.Type)
	}
	if err := emissaryCheck(s, true); err != nil {
		t.Errorf("Emissary would not read it: %v", err)
	}
	bundle := string(h.state.Bundle())
	if string(s.Data["tls.crt"]) != bundle || string(s.Data["ca.crt"]) != bundle {
		t.Errorf("CA Secret does not hold the trust bundle")
	}
	h.waitSecret(t, ns, "b-certs", nil)
	if n := counter(t, h.metrics.Conflicts.WithLabelValues("owner")); n != 0 {
		t.Errorf("a shared CA Secret counted %v conflicts", n)
	}
}

// TestConflictingOwners: two TLSContexts name one Secret with different
// names; the smaller name keeps it, the other gets an Event, and nothing
// writes in a loop.
func TestConflictingOwners(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	h := startHarness(t, harnessOptions{namespaces: []string{ns}})
	h.create(t,
		tlsContext(ns, "zeta", issue, map[string]any{"hosts": []any{"z." + ns + ".svc"}, "secret": "contested"}),
		tlsContext(ns, "alpha", issue, map[string]any{"hosts": []any{"a." + ns + ".svc"}, "secret": "contested"}),
	)
	s := h.waitSecret(t, ns, "contested", func(s *corev1.Secret) bool {
		return s.Annotations[meta.AnnotationSource] == sourceKey("TLSContext", ns, "alpha")
	})
	if dns := leafOf(t, s).DNSNames; joined(dns) != "a."+ns+".svc" {
		t.Errorf("winner's names %v", dns)
	}
	h.waitEvent(t, ns, "zeta", EventSecretConflict)
	writes := counter(t, h.metrics.Writes.WithLabelValues("update")) + counter(t, h.metrics.Writes.WithLabelValues("create"))
	h.settle(t)
	h.settle(t)
	after := counter(t, h.metrics.Writes.WithLabelValues("update")) + counter(t, h.metrics.Writes.WithLabelValues("create"))
	if after != writes {
		t.Errorf("resyncs wrote %v more times: a write loop", after-writes)
	}
}
