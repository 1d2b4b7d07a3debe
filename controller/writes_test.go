package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/rotator"
)

// The user's part of a managed object, as the write tests seed it.
const (
	userLabel      = "example.com/team"
	userAnnotation = "example.com/note"
	userKey        = "keystore.p12"
	// staleAnnotation is named by meshca's code but written by no version
	// this one knows: it stands for an annotation an older meshca wrote.
	staleAnnotation = meta.AnnotationDNSSANs
)

// editSecret reads the Secret at ns/name, lets edit change it and writes
// it back, retrying on conflicts with meshca's own writes.
func editSecret(t *testing.T, env *testenv.Env, ns, name string, edit func(*corev1.Secret)) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("edit of Secret %s/%s", ns, name), func() bool {
		s := &corev1.Secret{}
		if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, s); err != nil {
			return false
		}
		edit(s)
		return env.Client.Update(context.Background(), s) == nil
	})
}

// addUsersPart gives s a user's label, annotation and data key.
func addUsersPart(s *corev1.Secret) {
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Labels[userLabel] = "a"
	s.Annotations[userAnnotation] = "mine"
	s.Data[userKey] = []byte("the user's")
}

// usersPartKept reports what of the user's part s lost ("" when nothing).
func usersPartKept(s *corev1.Secret) string {
	switch {
	case s.Labels[userLabel] != "a":
		return "the user's label"
	case s.Annotations[userAnnotation] != "mine":
		return "the user's annotation"
	case string(s.Data[userKey]) != "the user's":
		return "the user's data key"
	}
	return ""
}

// TestWritesKeepTheUsersPart: a certificate Secret (of a TLSContext and of a
// workload) renewed on request keeps the user's label, annotation and data
// key, loses a meshca.io/ annotation meshca no longer sets, and keeps the
// renew-requested input it acted on; a CA Secret loses tls.key, a key of a
// use it does not have, and a meshca.io/ annotation of that use, and keeps
// the user's key.
func TestWritesKeepTheUsersPart(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	h := startHarness(t, harnessOptions{namespaces: []string{ns}, workloads: true})
	h.create(t,
		tlsContext(ns, "gw", issue, map[string]any{"secret": "gw-certs", "ca_secret": "gw-ca"}),
		workload("Deployment", ns, "app", "", certAnn()))

	for _, name := range []string{"gw-certs", "app-meshca-tls"} {
		t.Run(name, func(t *testing.T) {
			first := h.waitSecret(t, ns, name, func(s *corev1.Secret) bool { return s.Annotations[meta.AnnotationSerial] != "" })
			serial := first.Annotations[meta.AnnotationSerial]
			editSecret(t, env, ns, name, func(s *corev1.Secret) {
				addUsersPart(s)
				s.Annotations[staleAnnotation] = "left by an older meshca"
				s.Annotations[meta.AnnotationRenewRequested] = serial
			})
			s := h.waitSecret(t, ns, name, func(s *corev1.Secret) bool {
				return s.Annotations[meta.AnnotationSerial] != serial && s.Annotations[staleAnnotation] == ""
			})
			if s.Annotations[meta.AnnotationReason] != rotator.ReasonManual {
				t.Errorf("reason %q, want %s: the renew-requested input did not work", s.Annotations[meta.AnnotationReason], rotator.ReasonManual)
			}
			if lost := usersPartKept(s); lost != "" {
				t.Errorf("the renewal removed %s: %v %v %v", lost, s.Labels, s.Annotations, keysOf(s.Data))
			}
			if s.Annotations[meta.AnnotationRenewRequested] != serial {
				t.Errorf("renew-requested %q, want the replaced serial %s kept (an input, not meshca's)", s.Annotations[meta.AnnotationRenewRequested], serial)
			}
			if err := emissaryCheck(s, false); err != nil {
				t.Error(err)
			}
		})
	}

	t.Run("gw-ca", func(t *testing.T) {
		ca := h.waitSecret(t, ns, "gw-ca", nil)
		leaf := h.waitSecret(t, ns, "gw-certs", nil)
		editSecret(t, env, ns, "gw-ca", func(s *corev1.Secret) {
			addUsersPart(s)
			s.Data[corev1.TLSPrivateKeyKey] = leaf.Data[corev1.TLSPrivateKeyKey]
			s.Annotations[meta.AnnotationSerial] = leaf.Annotations[meta.AnnotationSerial]
		})
		s := h.waitSecret(t, ns, "gw-ca", func(s *corev1.Secret) bool {
			return s.ResourceVersion != ca.ResourceVersion && s.Data[corev1.TLSPrivateKeyKey] == nil && s.Annotations[meta.AnnotationSerial] == ""
		})
		if lost := usersPartKept(s); lost != "" {
			t.Errorf("the write removed %s: %v %v %v", lost, s.Labels, s.Annotations, keysOf(s.Data))
		}
		if err := emissaryCheck(s, true); err != nil {
			t.Error(err)
		}
	})
}

// TestBundleWriteKeepsTheUsersPart: the trust bundle ConfigMap keeps the
// user's label and annotation, loses a meshca.io/ annotation, and holds
// ca.crt alone (its name, and so all of its data, is meshca's).
func TestBundleWriteKeepsTheUsersPart(t *testing.T) {
	env := testenv.Get(t)
	sel := map[string]string{"meshca-writes-test": fmt.Sprint(time.Now().UnixNano())}
	ns := env.Namespace(t, sel)
	h := startHarness(t, harnessOptions{namespaces: []string{ns}, skipTLSContext: true, bundle: &BundleConfig{Selector: labels.SelectorFromSet(sel)}})
	bundle := h.trust.PEM()
	h.waitBundle(t, ns, bundle)
	ctx := context.Background()
	key := types.NamespacedName{Namespace: ns, Name: meta.TrustBundleConfigMap}
	eventually(t, 30*time.Second, "edit of the bundle ConfigMap", func() bool {
		cm := &corev1.ConfigMap{}
		if err := env.Client.Get(ctx, key, cm); err != nil {
			return false
		}
		cm.Labels[userLabel] = "a"
		cm.Annotations = map[string]string{userAnnotation: "mine", staleAnnotation: "old"}
		cm.Data["extra"] = "x"
		return env.Client.Update(ctx, cm) == nil
	})
	cm := h.waitBundle(t, ns, bundle)
	eventually(t, 30*time.Second, "the meshca.io/ annotation removed", func() bool {
		return env.Client.Get(ctx, key, cm) == nil && cm.Annotations[staleAnnotation] == ""
	})
	if cm.Labels[userLabel] != "a" || cm.Annotations[userAnnotation] != "mine" || len(cm.Data) != 1 {
		t.Errorf("ConfigMap %v %v keys %d: want the user's label and annotation and ca.crt alone", cm.Labels, cm.Annotations, len(cm.Data))
	}
}

// TestWritesRemoveNothingNotMeshcas is the abuse test of the removal: a
// Secret or ConfigMap without meshca's label that looks like meshca's (its
// meshca.io/ annotations, tls.key) is never written, even when a source
// names it; a managed Secret that no source holds is not written for
// anyone; and a user's key survives every write (TestWritesKeepTheUsersPart).
func TestWritesRemoveNothingNotMeshcas(t *testing.T) {
	env := testenv.Get(t)
	sel := map[string]string{"meshca-writes-abuse": fmt.Sprint(time.Now().UnixNano())}
	ns := env.Namespace(t, sel)
	ctx := context.Background()
	lookalike := func(name string, ann map[string]string, lbl map[string]string) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbl, Annotations: ann},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{"tls.crt": []byte("theirs"), "tls.key": []byte("theirs"), userKey: []byte("theirs")},
		}
	}
	stale := func(source string) map[string]string {
		return map[string]string{meta.AnnotationSource: source, staleAnnotation: "x", meta.AnnotationSerial: "01", userAnnotation: "mine"}
	}
	// Foreign: no label, but annotated as if meshca held it for the
	// TLSContext that names it.
	foreign := lookalike("foreign", stale(sourceKey(tlsContextKind, ns, "a")), nil)
	// Managed by label, but with no holder: nobody's to take.
	unheld := lookalike("unheld", map[string]string{staleAnnotation: "x", userAnnotation: "mine"},
		map[string]string{meta.LabelManagedBy: meta.ManagedByValue})
	foreignCM := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: meta.TrustBundleConfigMap, Annotations: map[string]string{staleAnnotation: "x"}},
		Data:       map[string]string{"ca.crt": "theirs", "extra": "theirs"},
	}
	h := startHarness(t, harnessOptions{namespaces: []string{ns}, bundle: &BundleConfig{Selector: labels.SelectorFromSet(sel)}})
	h.create(t, foreign, unheld, foreignCM)
	h.create(t,
		tlsContext(ns, "a", issue, map[string]any{"secret": "foreign"}),
		tlsContext(ns, "b", issue, map[string]any{"secret": "unheld"}))
	h.waitEvent(t, ns, "a", EventSecretConflict)
	h.waitEvent(t, ns, "b", EventSecretConflict)
	h.waitNamespaceEvent(t, ns, EventBundleConflict)
	h.settle(t)
	h.bundle.ResyncAll(ctx)
	for _, want := range []*corev1.Secret{foreign, unheld} {
		got := &corev1.Secret{}
		if err := env.Client.Get(ctx, keyOf(want), got); err != nil {
			t.Fatal(err)
		}
		if got.ResourceVersion != want.ResourceVersion || len(got.Annotations) != len(want.Annotations) || len(got.Data) != 3 {
			t.Errorf("Secret %s was written: %v keys %v", want.Name, got.Annotations, keysOf(got.Data))
		}
	}
	got := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, keyOf(foreignCM), got); err != nil {
		t.Fatal(err)
	}
	if got.ResourceVersion != foreignCM.ResourceVersion || got.Annotations[staleAnnotation] != "x" || len(got.Data) != 2 {
		t.Errorf("the foreign ConfigMap was written: %v %v", got.Annotations, got.Data)
	}
}

// TestServingWriteKeepsTheUsersPart: the webhook's serving Secret, reissued
// over a certificate it cannot use, keeps the user's part and loses a
// meshca.io/ annotation meshca does not set there; its writes are counted
// in the Metrics it is given.
func TestServingWriteKeepsTheUsersPart(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	h := startHarness(t, harnessOptions{namespaces: []string{ns}, skipTLSContext: true})
	seed := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "webhook-tls",
			Labels:      map[string]string{meta.LabelManagedBy: meta.ManagedByValue, userLabel: "a"},
			Annotations: map[string]string{userAnnotation: "mine", meta.AnnotationSPIFFEID: "spiffe://cluster.local/ns/x/sa/y", staleAnnotation: "x"}},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": []byte("garbage"), "tls.key": []byte("garbage"), userKey: []byte("the user's")},
	}
	h.create(t, seed)
	sc := &ServingCertificate{Client: env.Client, Issuer: h.issuer, Trust: h.trust, Namespace: ns, Name: seed.Name,
		Names: []string{"meshca." + ns + ".svc"}, Clock: clock.RealClock{}, Metrics: h.metrics}
	if _, err := sc.ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := h.waitSecret(t, ns, seed.Name, nil)
	if lost := usersPartKept(s); lost != "" {
		t.Errorf("the write removed %s", lost)
	}
	for _, k := range []string{meta.AnnotationSPIFFEID, staleAnnotation} {
		if v, ok := s.Annotations[k]; ok {
			t.Errorf("annotation %s=%q kept; meshca does not set it on its serving Secret", k, v)
		}
	}
	if s.Annotations[meta.AnnotationSerial] == "" || leafOf(t, s) == nil {
		t.Errorf("no certificate written: %v", s.Annotations)
	}
	if got := counter(t, h.metrics.Writes.WithLabelValues("update")); got != 1 {
		t.Errorf("meshca_secret_writes_total{operation=update} = %v, want 1", got)
	}
}
