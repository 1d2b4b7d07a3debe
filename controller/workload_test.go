package controller

import (
	"bytes"
	"context"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/internal/testpki"
	"github.com/meshca/meshca/rotator"
)

// workload builds an apps/v1 workload of kind with a minimal valid pod
// template running as service account sa ("" for none).
func workload(kind, ns, name, sa string, ann map[string]string) client.Object {
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa,
			Containers:         []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}},
		},
	}
	om := metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: ann}
	switch kind {
	case "StatefulSet":
		return &appsv1.StatefulSet{ObjectMeta: om, Spec: appsv1.StatefulSetSpec{Selector: sel, Template: tmpl, ServiceName: name}}
	case "DaemonSet":
		return &appsv1.DaemonSet{ObjectMeta: om, Spec: appsv1.DaemonSetSpec{Selector: sel, Template: tmpl}}
	}
	return &appsv1.Deployment{ObjectMeta: om, Spec: appsv1.DeploymentSpec{Selector: sel, Template: tmpl}}
}

// certAnn is the opt-in annotation plus extra ones.
func certAnn(kv ...string) map[string]string {
	m := map[string]string{meta.AnnotationCertificate: "true"}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// opensslVerify checks a workload Secret the way a peer would: openssl
// verify of the leaf against ca.crt with the rest of tls.crt as untrusted
// intermediates. It also checks tls.key is PKCS#8.
func opensslVerify(t *testing.T, s *corev1.Secret) {
	t.Helper()
	leafBlock, rest := pem.Decode(s.Data[corev1.TLSCertKey])
	if leafBlock == nil {
		t.Fatalf("Secret %s/%s: tls.crt holds no PEM", s.Namespace, s.Name)
	}
	if len(bytes.TrimSpace(rest)) == 0 {
		t.Fatalf("Secret %s/%s: tls.crt holds no intermediate after the leaf", s.Namespace, s.Name)
	}
	if kb, _ := pem.Decode(s.Data[corev1.TLSPrivateKeyKey]); kb == nil || kb.Type != "PRIVATE KEY" {
		t.Errorf("Secret %s/%s: tls.key is not a PKCS#8 PRIVATE KEY block", s.Namespace, s.Name)
	}
	dir := t.TempDir()
	testpki.Verify(t,
		testpki.WriteFile(t, dir, "ca.crt", s.Data[corev1.ServiceAccountRootCAKey]),
		testpki.WriteFile(t, dir, "chain.pem", rest),
		testpki.WriteFile(t, dir, "leaf.pem", pem.EncodeToMemory(leafBlock)))
}

// TestWorkloadTable runs annotated and unannotated workloads of each kind
// against the real API server and checks the Secret, or the Event, each
// gets. No garbage collector runs here, so the test asserts the owner
// reference that makes the collector delete a workload's Secret with it.
func TestWorkloadTable(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	other := env.Namespace(t)
	wide := env.Namespace(t)
	nsObj := &corev1.Namespace{}
	if err := env.Client.Get(context.Background(), types.NamespacedName{Name: wide}, nsObj); err != nil {
		t.Fatal(err)
	}
	nsObj.Annotations = map[string]string{meta.AnnotationAllowedDNSSuffixes: "example.com"}
	if err := env.Client.Update(context.Background(), nsObj); err != nil {
		t.Fatal(err)
	}
	h := startHarness(t, harnessOptions{
		namespaces:     []string{ns, wide},
		skipTLSContext: true,
		workloads:      true,
	})
	h.create(t, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "taken-meshca-tls", Namespace: ns},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{"keep": []byte("me")},
	})

	spiffe := func(ns, sa string) string { return "spiffe://cluster.local/ns/" + ns + "/sa/" + sa }
	own := func(ns, name string) []string {
		return []string{name + "." + ns + ".svc", name + "." + ns + ".svc.cluster.local"}
	}
	type want struct {
		secret   string   // Secret expected to appear
		dns      []string // its DNS SANs
		uri      string   // its URI SAN
		keyAlg   string
		event    string // Warning Event reason expected instead
		eventHas string // text the Event names
	}
	cases := map[string]struct {
		kind, ns, name, sa string
		ann                map[string]string
		want               want
	}{
		"deployment": {"Deployment", ns, "web", "", certAnn(),
			want{secret: "web-meshca-tls", dns: own(ns, "web"), uri: spiffe(ns, "default"), keyAlg: "ecdsa-p256"}},
		"statefulset with names and secret name": {"StatefulSet", ns, "db", "db-sa",
			certAnn(meta.AnnotationSecretName, "db-certs", meta.AnnotationDNSNames, "db-0.db."+ns+".svc"),
			want{secret: "db-certs", dns: append(own(ns, "db"), "db-0.db."+ns+".svc"), uri: spiffe(ns, "db-sa"), keyAlg: "ecdsa-p256"}},
		"daemonset with key algorithm": {"DaemonSet", ns, "agent", "node-agent", certAnn(meta.AnnotationKeyAlgorithm, "ecdsa-p384"),
			want{secret: "agent-meshca-tls", dns: own(ns, "agent"), uri: spiffe(ns, "node-agent"), keyAlg: "ecdsa-p384"}},
		"allowed by namespace annotation": {"Deployment", wide, "public", "", certAnn(meta.AnnotationDNSNames, "www.example.com"),
			want{secret: "public-meshca-tls", dns: append(own(wide, "public"), "www.example.com"), uri: spiffe(wide, "default"), keyAlg: "ecdsa-p256"}},
		"other namespace's DNS name": {"Deployment", ns, "steal-dns", "", certAnn(meta.AnnotationDNSNames, "api."+other+".svc"),
			want{event: EventPolicyRejected, eventHas: "api." + other + ".svc"}},
		"other namespace's SPIFFE ID": {"Deployment", ns, "steal-id", "", certAnn(meta.AnnotationDNSNames, spiffe(other, "default")),
			want{event: EventPolicyRejected, eventHas: other}},
		"name outside suffixes": {"Deployment", ns, "outside", "", certAnn(meta.AnnotationDNSNames, "www.example.com"),
			want{event: EventPolicyRejected, eventHas: "www.example.com"}},
		"bad duration": {"Deployment", ns, "bad-duration", "", certAnn(meta.AnnotationDuration, "soon"),
			want{event: EventInvalidSpec, eventHas: "not a duration"}},
		"foreign secret": {"Deployment", ns, "taken", "", certAnn(),
			want{event: EventSecretConflict, eventHas: "not managed by meshca"}},
	}
	objs := map[string]client.Object{}
	for name, tc := range cases {
		objs[name] = workload(tc.kind, tc.ns, tc.name, tc.sa, tc.ann)
		h.create(t, objs[name])
	}
	unannotated := workload("Deployment", ns, "plain", "", map[string]string{"unrelated": "true"})
	h.create(t, unannotated)

	t.Run("cases", func(t *testing.T) {
		for name, tc := range cases {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				if tc.want.event != "" {
					note := h.waitEvent(t, tc.ns, tc.name, tc.want.event)
					if !strings.Contains(note, tc.want.eventHas) {
						t.Errorf("Event %s: %q does not mention %q", tc.want.event, note, tc.want.eventHas)
					}
					if tc.want.event != EventSecretConflict {
						h.noSecret(t, tc.ns, tc.name+"-meshca-tls")
					}
					return
				}
				s := h.waitSecret(t, tc.ns, tc.want.secret, nil)
				if s.Type != corev1.SecretTypeTLS {
					t.Errorf("type %s, want kubernetes.io/tls", s.Type)
				}
				opensslVerify(t, s)
				leaf := leafOf(t, s)
				if got, want := joined(leaf.DNSNames), joined(sorted(tc.want.dns)); got != want {
					t.Errorf("DNS names %s, want %s", got, want)
				}
				if got := joined(uris(leaf)); got != tc.want.uri {
					t.Errorf("URIs %s, want %s", got, tc.want.uri)
				}
				if got, _ := ca.KeyAlgorithmOf(leaf.PublicKey); string(got) != tc.want.keyAlg {
					t.Errorf("key algorithm %s, want %s", got, tc.want.keyAlg)
				}
				for k, v := range map[string]string{
					meta.AnnotationSerial:   serialHex(leaf),
					meta.AnnotationSPIFFEID: tc.want.uri,
					meta.AnnotationSource:   tc.kind + "/" + tc.ns + "/" + tc.name,
					meta.AnnotationReason:   rotator.ReasonMissing,
					meta.AnnotationNotAfter: leaf.NotAfter.UTC().Format(time.RFC3339),
				} {
					if s.Annotations[k] != v {
						t.Errorf("annotation %s=%q, want %q", k, s.Annotations[k], v)
					}
				}
				for _, k := range []string{meta.AnnotationRenewAt, meta.AnnotationIssuer} {
					if s.Annotations[k] == "" {
						t.Errorf("annotation %s missing", k)
					}
				}
				if s.Labels[meta.LabelManagedBy] != meta.ManagedByValue {
					t.Errorf("label %s missing", meta.LabelManagedBy)
				}
				obj := objs[name]
				refs := s.OwnerReferences
				if len(refs) != 1 || refs[0].Kind != tc.kind || refs[0].APIVersion != "apps/v1" || refs[0].Name != tc.name ||
					refs[0].UID != obj.GetUID() || refs[0].Controller == nil || !*refs[0].Controller ||
					refs[0].BlockOwnerDeletion == nil || !*refs[0].BlockOwnerDeletion {
					t.Errorf("owner references %+v, want the %s as controller with blockOwnerDeletion", refs, tc.kind)
				}
				h.waitEvent(t, tc.ns, tc.name, EventIssued)
			})
		}
	})
	// Every annotated workload has been handled by now; the unannotated
	// one, reconciled alongside, got nothing.
	h.noSecret(t, ns, "plain-meshca-tls")

	foreign := &corev1.Secret{}
	if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "taken-meshca-tls"}, foreign); err != nil {
		t.Fatal(err)
	}
	if string(foreign.Data["keep"]) != "me" || foreign.Labels[meta.LabelManagedBy] != "" {
		t.Errorf("the foreign Secret was written: %v", foreign.Labels)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestRestartOnRotate: the first certificate leaves the pod template alone;
// a renewal stamps meshca.io/cert-revision with the new serial.
func TestRestartOnRotate(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	h := startHarness(t, harnessOptions{namespaces: []string{ns}, skipTLSContext: true, workloads: true})
	ctx := context.Background()
	d := workload("Deployment", ns, "roll", "", certAnn(meta.AnnotationRestartOnRotate, "true")).(*appsv1.Deployment)
	h.create(t, d)
	s := h.waitSecret(t, ns, "roll-meshca-tls", nil)
	first := s.Annotations[meta.AnnotationSerial]
	h.waitEvent(t, ns, "roll", EventIssued)

	// Give any follow-up reconcile (the Secret's own watch event) time to
	// act; none may stamp the template after a first issue.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if err := env.Client.Get(ctx, keyOf(d), d); err != nil {
			t.Fatal(err)
		}
		if v, ok := d.Spec.Template.Annotations[meta.AnnotationCertRevision]; ok {
			t.Fatalf("first issue stamped the template: %s=%s", meta.AnnotationCertRevision, v)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Asking for another name renews the certificate.
	d.Annotations[meta.AnnotationDNSNames] = "extra." + ns + ".svc"
	if err := env.Client.Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	s = h.waitSecret(t, ns, "roll-meshca-tls", func(s *corev1.Secret) bool {
		return s.Annotations[meta.AnnotationSerial] != first
	})
	second := s.Annotations[meta.AnnotationSerial]
	if r := s.Annotations[meta.AnnotationReason]; r != rotator.ReasonNamesChanged {
		t.Errorf("reason %s, want %s", r, rotator.ReasonNamesChanged)
	}
	eventually(t, 30*time.Second, "the pod template stamped with the new serial", func() bool {
		if err := env.Client.Get(ctx, keyOf(d), d); err != nil {
			return false
		}
		return strings.HasPrefix(d.Spec.Template.Annotations[meta.AnnotationCertRevision], second+".")
	})
	h.waitEvent(t, ns, "roll", EventRestarted)
}

// TestRestartOnRotateFollowsBundle: a workload whose certificate was only
// ever first-issued rolls when the trust bundle in its Secret changes (a
// CA rotation publishes a new root), once, and not again while nothing
// changes.
func TestRestartOnRotateFollowsBundle(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	h := startHarness(t, harnessOptions{namespaces: []string{ns}, skipTLSContext: true, workloads: true})
	ctx := context.Background()
	d := workload("Deployment", ns, "roll", "", certAnn(meta.AnnotationRestartOnRotate, "TRUE")).(*appsv1.Deployment)
	h.create(t, d)
	s := h.waitSecret(t, ns, "roll-meshca-tls", nil)
	serial := s.Annotations[meta.AnnotationSerial]
	if got, want := s.Annotations[meta.AnnotationIssuedBundle], bundleDigest(s.Data["ca.crt"]); got != want {
		t.Fatalf("%s = %q, want the digest of ca.crt %q", meta.AnnotationIssuedBundle, got, want)
	}
	h.work.ResyncAll(ctx)
	h.waitEvent(t, ns, "roll", EventIssued)

	// A new root joins the bundle, as when the next CA is published.
	bundle := append(append([]byte{}, h.trust.PEM()...), testpki.New(t).RootPEM...)
	if err := h.trust.Set(bundle); err != nil {
		t.Fatal(err)
	}
	h.work.ResyncAll(ctx)
	want := serial + "." + bundleDigest(bundle)
	eventually(t, 30*time.Second, "the pod template stamped with the new bundle", func() bool {
		if err := env.Client.Get(ctx, keyOf(d), d); err != nil {
			return false
		}
		return d.Spec.Template.Annotations[meta.AnnotationCertRevision] == want
	})
	h.waitEvent(t, ns, "roll", EventRestarted)
	s = h.waitSecret(t, ns, "roll-meshca-tls", nil)
	if s.Annotations[meta.AnnotationSerial] != serial {
		t.Errorf("the certificate was reissued (%s -> %s): only the bundle changed", serial, s.Annotations[meta.AnnotationSerial])
	}
	gen := d.Generation
	h.work.ResyncAll(ctx)
	h.work.ResyncAll(ctx)
	time.Sleep(time.Second)
	if err := env.Client.Get(ctx, keyOf(d), d); err != nil {
		t.Fatal(err)
	}
	if d.Generation != gen {
		t.Errorf("the template was stamped again (generation %d -> %d) though nothing changed", gen, d.Generation)
	}
}

func TestPodsStale(t *testing.T) {
	t.Parallel()
	kept := func(serial, reason, bundle, issued string) keepResult {
		return keepResult{Serial: serial, Reason: reason, Bundle: bundle, IssuedBundle: issued}
	}
	for name, tc := range map[string]struct {
		stamped string
		kept    keepResult
		stale   bool
	}{
		"first issue":                          {"", kept("A1", "Missing", "b1", "b1"), false},
		"first issue, bundle moved":            {"", kept("A1", "Missing", "b2", "b1"), true},
		"first issue before issued-bundle":     {"", kept("A1", "Missing", "b2", ""), false},
		"renewed, never stamped":               {"", kept("A2", "NearExpiry", "b1", "b1"), true},
		"stamped, same":                        {"A2.b1", kept("A2", "NearExpiry", "b1", "b1"), false},
		"stamped, bundle moved":                {"A2.b1", kept("A2", "NearExpiry", "b2", "b1"), true},
		"stamped, renewed":                     {"A2.b1", kept("A3", "NearExpiry", "b1", "b1"), true},
		"old serial-only stamp, same serial":   {"A2", kept("A2", "NearExpiry", "b1", ""), false},
		"old stamp, same serial, bundle moved": {"A2", kept("A2", "NearExpiry", "b2", "b1"), true},
		"old stamp, renewed":                   {"A2", kept("A3", "NearExpiry", "b1", "b1"), true},
		"nothing in the Secret":                {"", keepResult{}, false},
		"serial prefix of another is no match": {"A2.b1", kept("A", "NearExpiry", "2.b1", ""), true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rev, why, stale := podsStale(tc.stamped, tc.kept)
			if stale != tc.stale {
				t.Errorf("podsStale(%q, %+v) = %q, %q, %v; want stale %v", tc.stamped, tc.kept, rev, why, stale, tc.stale)
			}
			if stale && rev != tc.kept.Serial+"."+tc.kept.Bundle {
				t.Errorf("revision %q", rev)
			}
		})
	}
}
