package controller

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/ca/castore"
	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/internal/testenv"
)

// meshcaHome is a namespace set up as meshca's own: the CA Secret as
// castore.Secret writes it, the webhook's serving Secret as
// ServingCertificate writes it, and a managed Secret with no source.
type meshcaHome struct {
	ns       string
	reserved ReservedSecrets
	before   map[string]*corev1.Secret
}

func newMeshcaHome(t *testing.T, env *testenv.Env, h *harness, ns string) *meshcaHome {
	t.Helper()
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (castore.Secret{Client: cs, Namespace: ns}).Save(ctx, h.state); err != nil {
		t.Fatalf("save CA: %v", err)
	}
	b := issueFor(t, h, ns)
	webhookSecret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "meshca-webhook-tls",
			Labels:      map[string]string{meta.LabelManagedBy: meta.ManagedByValue},
			Annotations: map[string]string{meta.AnnotationSource: "meshca/" + ns + "/webhook"}},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": b.CertificatePEM, "tls.key": b.PrivateKeyPEM, "ca.crt": h.state.Bundle()},
	}
	spare := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "meshca-spare",
			Labels: map[string]string{meta.LabelManagedBy: meta.ManagedByValue}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{"note": []byte("kept by hand, no meshca.io/source")},
	}
	h.create(t, webhookSecret, spare)
	home := &meshcaHome{ns: ns, before: map[string]*corev1.Secret{},
		reserved: ReservedSecrets{{Namespace: ns, Name: ca.DefaultSecretName}, {Namespace: ns, Name: "meshca-webhook-tls"}}}
	for _, name := range []string{ca.DefaultSecretName, "meshca-webhook-tls", "meshca-spare"} {
		home.before[name] = h.waitSecret(t, ns, name, nil)
	}
	return home
}

// unchanged asserts that meshca's own Secrets are exactly as they were:
// same object (UID), never written (resourceVersion), same keys and bytes.
func (m *meshcaHome) unchanged(t *testing.T, h *harness) {
	t.Helper()
	for name, was := range m.before {
		now := &corev1.Secret{}
		if err := h.env.Client.Get(context.Background(), types.NamespacedName{Namespace: m.ns, Name: name}, now); err != nil {
			t.Errorf("Secret %s/%s: %v", m.ns, name, err)
			continue
		}
		if now.UID != was.UID || now.ResourceVersion != was.ResourceVersion || now.Type != was.Type ||
			!maps.EqualFunc(now.Data, was.Data, func(a, b []byte) bool { return string(a) == string(b) }) {
			t.Errorf("Secret %s/%s was changed: uid %s -> %s, resourceVersion %s -> %s, type %s -> %s, keys %v -> %v",
				m.ns, name, was.UID, now.UID, was.ResourceVersion, now.ResourceVersion, was.Type, now.Type,
				keysOf(was.Data), keysOf(now.Data))
		}
	}
}

func keysOf(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestOwnSecretsUntouchable names meshca's CA Secret, its webhook Secret
// and a managed Secret with no source from every angle a tenant has: from
// another namespace with --allow-cross-namespace-secrets and with the
// consent label on meshca's namespace, from inside meshca's namespace, with
// and without secret_namespacing, as spec.secret and spec.ca_secret, and as
// a workload's meshca.io/secret-name. Nothing of meshca's changes, and each
// reference gets a Warning Event. Without the reserved list the claim rules
// alone still keep them (a Secret with no source is nobody's; one held by
// meshca is never taken).
func TestOwnSecretsUntouchable(t *testing.T) {
	env := testenv.Get(t)
	for _, withReserved := range []bool{true, false} {
		t.Run(fmt.Sprintf("reserved=%v", withReserved), func(t *testing.T) {
			tenant := env.Namespace(t)
			homeNS := env.Namespace(t, map[string]string{meta.LabelAcceptSecretsFrom: tenant})
			h0 := startHarness(t, harnessOptions{skipTLSContext: true})
			home := newMeshcaHome(t, env, h0, homeNS)
			var reserved ReservedSecrets
			if withReserved {
				reserved = home.reserved
			}
			h := startHarness(t, harnessOptions{
				namespaces: []string{tenant, homeNS},
				state:      h0.state,
				config:     TLSContextConfig{AllowCrossNamespace: true, Reserved: reserved},
				workloads:  true, workloadConfig: WorkloadConfig{Reserved: reserved},
			})
			caRef, whRef := "meshca-ca."+homeNS, "meshca-webhook-tls."+homeNS
			h.create(t,
				tlsContext(tenant, "t1", issue, map[string]any{"secret": caRef}),
				tlsContext(tenant, "t2", issue, map[string]any{"ca_secret": caRef}),
				tlsContext(tenant, "t3", issue, map[string]any{"secret": whRef, "ca_secret": "meshca-spare." + homeNS}),
				tlsContext(tenant, "t4", issue, map[string]any{"secret": "meshca-spare." + homeNS}),
				tlsContext(homeNS, "h1", issue, map[string]any{"secret": "meshca-ca"}),
				tlsContext(homeNS, "h2", issue, map[string]any{"ca_secret": "meshca-ca", "secret": "meshca-spare"}),
				tlsContext(homeNS, "h3", issue, map[string]any{"ca_secret": "meshca-webhook-tls"}),
				tlsContext(homeNS, "h4", issue, map[string]any{"secret": "meshca-ca", "secret_namespacing": false}),
				workload("Deployment", homeNS, "w1", "", certAnn(meta.AnnotationSecretName, "meshca-ca")),
				workload("Deployment", homeNS, "w2", "", certAnn(meta.AnnotationSecretName, " meshca-webhook-tls ")),
				workload("StatefulSet", homeNS, "w3", "", certAnn(meta.AnnotationSecretName, "meshca-spare")),
			)
			want := map[[2]string]string{
				{tenant, "t1"}: EventSecretReserved, {tenant, "t2"}: EventSecretReserved, {tenant, "t3"}: EventSecretReserved,
				{tenant, "t4"}: EventSecretConflict, {homeNS, "h1"}: EventSecretReserved, {homeNS, "h2"}: EventSecretReserved,
				{homeNS, "h3"}: EventSecretReserved, {homeNS, "h4"}: EventSecretReserved,
				{homeNS, "w1"}: EventSecretReserved, {homeNS, "w2"}: EventSecretReserved, {homeNS, "w3"}: EventSecretConflict,
			}
			for k, reason := range want {
				if !withReserved {
					reason = EventSecretConflict
				}
				note := h.waitEvent(t, k[0], k[1], reason)
				t.Logf("%s/%s: %s: %s", k[0], k[1], reason, note)
			}
			h.settle(t)
			home.unchanged(t, h)
			if n := counter(t, h.metrics.Writes.WithLabelValues("delete")); n != 0 {
				t.Errorf("%v Secrets deleted", n)
			}
		})
	}
}

// TestCASecretPathClaims: spec.ca_secret follows the claim rules of
// spec.secret. A Secret held as a certificate is never retyped into a CA
// Secret for another source, whatever the names' order or namespace, and a
// workload's Secret is never taken.
func TestCASecretPathClaims(t *testing.T) {
	env := testenv.Get(t)
	a := env.Namespace(t)
	b := env.Namespace(t, map[string]string{meta.LabelAcceptSecretsFrom: a})
	h := startHarness(t, harnessOptions{namespaces: []string{a, b}, workloads: true})
	h.create(t,
		tlsContext(b, "z-gw", issue, map[string]any{"secret": "gw-certs"}),
		workload("Deployment", b, "web", "", certAnn()),
	)
	gw := h.waitSecret(t, b, "gw-certs", nil)
	web := h.waitSecret(t, b, "web-meshca-tls", nil)
	h.create(t,
		tlsContext(b, "a-ca", issue, map[string]any{"ca_secret": "gw-certs"}),
		tlsContext(b, "b-ca", issue, map[string]any{"ca_secret": "web-meshca-tls"}),
		tlsContext(a, "a", issue, map[string]any{"ca_secret": "gw-certs." + b}),
	)
	h.waitEvent(t, b, "a-ca", EventSecretConflict)
	h.waitEvent(t, b, "b-ca", EventSecretConflict)
	h.waitEvent(t, a, "a", EventSecretConflict)
	h.settle(t)
	for _, was := range []*corev1.Secret{gw, web} {
		now := h.waitSecret(t, was.Namespace, was.Name, nil)
		if now.UID != was.UID || now.Type != corev1.SecretTypeTLS || now.Annotations[meta.AnnotationSource] != was.Annotations[meta.AnnotationSource] {
			t.Errorf("Secret %s/%s: uid %s -> %s, type %s, holder %q -> %q", was.Namespace, was.Name,
				was.UID, now.UID, now.Type, was.Annotations[meta.AnnotationSource], now.Annotations[meta.AnnotationSource])
		}
	}
	if n := counter(t, h.metrics.Writes.WithLabelValues("delete")); n != 0 {
		t.Errorf("%v Secrets deleted (retyped)", n)
	}
}

// TestConsentIsNotEviction: with namespace b accepting Secrets from a, a
// TLSContext in a never takes a Secret a source in b holds, whichever name
// sorts first, and a source in b takes one a TLSContext in a wrote first.
func TestConsentIsNotEviction(t *testing.T) {
	env := testenv.Get(t)
	a := env.Namespace(t)
	b := env.Namespace(t, map[string]string{meta.LabelAcceptSecretsFrom: a})
	h := startHarness(t, harnessOptions{namespaces: []string{a, b}, workloads: true})
	// b first: its sources hold x and the workload's Secret.
	h.create(t,
		tlsContext(b, "zz", issue, map[string]any{"secret": "x"}),
		workload("Deployment", b, "web", "", certAnn()),
	)
	x := h.waitSecret(t, b, "x", nil)
	h.waitSecret(t, b, "web-meshca-tls", nil)
	h.create(t,
		tlsContext(a, "aa", issue, map[string]any{"secret": "x." + b}),
		tlsContext(a, "ab", issue, map[string]any{"secret": "web-meshca-tls." + b}),
		// a first: its TLSContext writes y before b's source names it.
		tlsContext(a, "ay", issue, map[string]any{"secret": "y." + b}),
	)
	h.waitEvent(t, a, "aa", EventSecretConflict)
	h.waitEvent(t, a, "ab", EventSecretConflict)
	h.waitSecret(t, b, "y", func(s *corev1.Secret) bool {
		return s.Annotations[meta.AnnotationSource] == sourceKey(tlsContextKind, a, "ay")
	})
	h.create(t, tlsContext(b, "zy", issue, map[string]any{"secret": "y"}))
	h.waitSecret(t, b, "y", func(s *corev1.Secret) bool {
		return s.Annotations[meta.AnnotationSource] == sourceKey(tlsContextKind, b, "zy") &&
			uris(leafOf(t, s))[0] == "spiffe://cluster.local/ns/"+b+"/sa/ambassador"
	})
	h.waitEvent(t, a, "ay", EventSecretConflict)
	h.settle(t)
	now := h.waitSecret(t, b, "x", nil)
	if now.ResourceVersion != x.ResourceVersion {
		t.Errorf("Secret %s/x held by %s/zz was written for a TLSContext of %s", b, b, a)
	}
}

// TestNoLoopFromOneObject creates every self-conflicting shape we could
// think of, alone and in pairs, and watches their Secrets for 30 s while
// resyncing everything every few seconds: each Secret is created once and
// changes at most once more (a takeover), none is deleted, and at most one
// certificate is issued per object.
func TestNoLoopFromOneObject(t *testing.T) {
	if testing.Short() {
		t.Skip("30 s watch")
	}
	env := testenv.Get(t)
	a := env.Namespace(t)
	b := env.Namespace(t, map[string]string{meta.LabelAcceptSecretsFrom: a})
	h := startHarness(t, harnessOptions{namespaces: []string{a, b}, workloads: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	writes := map[string][]watch.EventType{}
	var wg sync.WaitGroup
	for _, ns := range []string{a, b} {
		w, err := cs.CoreV1().Secrets(ns).Watch(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Stop()
			for ev := range w.ResultChan() {
				s, ok := ev.Object.(*corev1.Secret)
				if !ok || s.Type == corev1.SecretTypeServiceAccountToken {
					continue
				}
				mu.Lock()
				writes[s.Namespace+"/"+s.Name] = append(writes[s.Namespace+"/"+s.Name], ev.Type)
				mu.Unlock()
			}
		}()
	}
	issued := func() float64 {
		n := 0.0
		for _, p := range []string{"gateway", "workload"} {
			for _, r := range []string{"Missing", "IssuerNotTrusted", "NamesChanged", "KeyMismatch", "Unparsable", "KeyAlgorithmChanged", "NearExpiry"} {
				n += counter(t, h.metrics.Issued.WithLabelValues(p, r))
			}
		}
		return n
	}
	created := 0
	all := []client.Object{
		// One object naming one Secret twice, however spelled.
		tlsContext(a, "same", issue, map[string]any{"secret": "s1", "ca_secret": "s1"}),
		tlsContext(a, "same-ns", issue, map[string]any{"secret": "s2", "ca_secret": "s2." + a}),
		tlsContext(a, "same-flat", issue, map[string]any{"secret": "s3.x", "ca_secret": "s3.x", "secret_namespacing": false}),
		tlsContext(a, "same-cross", issue, map[string]any{"secret": "s4." + b, "ca_secret": "s4." + b}),
		// Pairs naming one Secret in different roles or with different wishes.
		tlsContext(a, "zz-gw", issue, map[string]any{"secret": "k1"}),
		tlsContext(a, "aa-ca", issue, map[string]any{"ca_secret": "k1"}),
		tlsContext(a, "p", issue, map[string]any{"secret": "k2", "hosts": []any{"p." + a + ".svc"}}),
		tlsContext(a, "q", issue, map[string]any{"secret": "k2", "hosts": []any{"q." + a + ".svc"}}),
		tlsContext(a, "tc-k3", issue, map[string]any{"secret": "k3"}),
		workload("Deployment", a, "dep-k3", "", certAnn(meta.AnnotationSecretName, "k3")),
		workload("Deployment", a, "twin", "", certAnn()),
		workload("StatefulSet", a, "twin", "", certAnn()),
		tlsContext(a, "cross", issue, map[string]any{"secret": "k4." + b}),
		tlsContext(b, "local", issue, map[string]any{"secret": "k4"}),
		tlsContext(a, "bundle", issue, map[string]any{"ca_secret": "k5"}),
		workload("DaemonSet", a, "ds-k5", "", certAnn(meta.AnnotationSecretName, "k5")),
		tlsContext(a, "self-x", issue, map[string]any{"secret": "k6." + b, "ca_secret": "k6"}),
		tlsContext(b, "self-y", issue, map[string]any{"secret": "k6." + a, "ca_secret": "k6"}),
		// Annotations that would make every certificate due when issued:
		// 30 s is less than the 1-minute backdate plus a renewal margin,
		// and a renew-before of the whole default lifetime.
		tlsContext(a, "too-short", map[string]string{meta.AnnotationIssue: "true", meta.AnnotationDuration: "30s"}, map[string]any{"secret": "k7"}),
		workload("Deployment", a, "renew-all-the-time", "", certAnn(meta.AnnotationSecretName, "k8", meta.AnnotationRenewBefore, "24h")),
	}
	start := issued()
	for _, o := range all {
		h.create(t, o)
		created++
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(3 * time.Second)
		h.rec.ResyncAll(ctx)
		h.work.ResyncAll(ctx)
	}
	for _, name := range []string{"same", "same-ns", "same-flat", "same-cross", "too-short", "renew-all-the-time"} {
		h.waitEvent(t, a, name, EventInvalidSpec)
	}
	cancel()
	wg.Wait()
	if n := issued() - start; n > float64(created) {
		t.Errorf("%v certificates issued for %d objects", n, created)
	}
	mu.Lock()
	defer mu.Unlock()
	for name, evs := range writes {
		added, modified, deleted := 0, 0, 0
		for _, e := range evs {
			switch e {
			case watch.Added:
				added++
			case watch.Modified:
				modified++
			case watch.Deleted:
				deleted++
			}
		}
		t.Logf("Secret %s: %v", name, evs)
		if name == b+"/k6" && deleted == 1 && added == 2 && modified == 0 {
			// The one retype the rules allow: a TLSContext of b takes,
			// as its CA Secret, the certificate Secret a TLSContext of
			// a wrote there first (a source in the Secret's namespace
			// wins), and the type of a Secret cannot change in place.
			continue
		}
		if added > 1 || modified > 1 || deleted > 0 {
			t.Errorf("Secret %s: %d creates, %d changes, %d deletes in 30 s (%v): a loop", name, added, modified, deleted, evs)
		}
	}
	for _, s := range []string{a + "/s1", a + "/s2", a + "/s3.x", b + "/s4", a + "/k7", a + "/k8"} {
		if _, ok := writes[s]; ok {
			t.Errorf("Secret %s written for an invalid spec", s)
		}
	}
}

// TestCleanupSparesWhatOthersUse: with --secret-cleanup=delete, a
// TLSContext that goes away does not delete a Secret another TLSContext
// still uses (a CA Secret they share, a certificate the other refreshed as
// it was); the other takes it over instead.
func TestCleanupSparesWhatOthersUse(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	h := startHarness(t, harnessOptions{namespaces: []string{ns}, config: TLSContextConfig{Cleanup: CleanupDelete}})
	first := tlsContext(ns, "a-first", issue, map[string]any{"secret": "same-certs", "ca_secret": "shared-ca"})
	h.create(t, first)
	h.waitSecret(t, ns, "same-certs", nil)
	h.waitSecret(t, ns, "shared-ca", nil)
	// The same wish (names, service account) under a larger name: it
	// refreshes the first one's certificate as is and shares the bundle.
	h.create(t, tlsContext(ns, "b-second", issue, map[string]any{"secret": "same-certs", "ca_secret": "shared-ca"}))
	h.settle(t)
	if err := env.Client.Delete(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"same-certs", "shared-ca"} {
		h.waitSecret(t, ns, name, func(s *corev1.Secret) bool {
			return s.Annotations[meta.AnnotationSource] == sourceKey(tlsContextKind, ns, "b-second")
		})
	}
	h.settle(t)
	if n := counter(t, h.metrics.Writes.WithLabelValues("delete")); n != 0 {
		t.Errorf("%v Secrets deleted that another TLSContext uses", n)
	}
}

// TestExpiryGaugesFollowSecrets: the NotAfter and RenewAt series of a
// Secret go when its source goes, stops wanting a certificate or moves to
// another Secret.
func TestExpiryGaugesFollowSecrets(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	h := startHarness(t, harnessOptions{namespaces: []string{ns}, workloads: true})
	gone := tlsContext(ns, "gone", issue, map[string]any{"secret": "gone-certs"})
	moves := tlsContext(ns, "moves", issue, map[string]any{"secret": "old-certs"})
	web := workload("Deployment", ns, "web", "", certAnn())
	h.create(t, gone, moves, web)
	series := func(name string) bool {
		return testutilCount(t, h, ns, name) == 2
	}
	for _, name := range []string{"gone-certs", "old-certs", "web-meshca-tls"} {
		eventually(t, 30*time.Second, "expiry series of "+name, func() bool { return series(name) })
	}
	ctx := context.Background()
	if err := env.Client.Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctx, keyOf(moves), moves); err != nil {
		t.Fatal(err)
	}
	moves.Object["spec"] = map[string]any{"secret": "new-certs"}
	if err := env.Client.Update(ctx, moves); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctx, keyOf(web), web); err != nil {
		t.Fatal(err)
	}
	web.SetAnnotations(nil)
	if err := env.Client.Update(ctx, web); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "expiry series of new-certs", func() bool { return series("new-certs") })
	for _, name := range []string{"gone-certs", "old-certs", "web-meshca-tls"} {
		eventually(t, 30*time.Second, "no expiry series of "+name, func() bool { return testutilCount(t, h, ns, name) == 0 })
	}
}

// testutilCount counts the NotAfter and RenewAt series of one Secret.
func testutilCount(t *testing.T, h *harness, ns, name string) int {
	t.Helper()
	families, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		if f.GetName() != "meshca_certificate_not_after_timestamp_seconds" && f.GetName() != "meshca_certificate_renew_at_timestamp_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] == ns && labels["secret"] == name {
				n++
			}
		}
	}
	return n
}
