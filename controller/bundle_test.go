package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/internal/testenv"
)

// waitBundle waits until namespace ns holds a managed trust bundle
// ConfigMap with exactly want in ca.crt.
func (h *harness) waitBundle(t *testing.T, ns string, want []byte) *corev1.ConfigMap {
	t.Helper()
	cm := &corev1.ConfigMap{}
	eventually(t, 30*time.Second, "trust bundle ConfigMap in "+ns, func() bool {
		err := h.env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: meta.TrustBundleConfigMap}, cm)
		return err == nil && cm.Labels[meta.LabelManagedBy] == meta.ManagedByValue &&
			len(cm.Data) == 1 && cm.Data["ca.crt"] == string(want)
	})
	return cm
}

// waitNamespaceEvent waits for an Event with the reason about a Namespace
// (Events on cluster-scoped objects live in the default namespace).
func (h *harness) waitNamespaceEvent(t *testing.T, ns, reason string) string {
	t.Helper()
	var note string
	eventually(t, 30*time.Second, fmt.Sprintf("Event %s on Namespace %s", reason, ns), func() bool {
		list := &eventsv1.EventList{}
		if err := h.env.Client.List(context.Background(), list); err != nil {
			return false
		}
		for _, e := range list.Items {
			if e.Regarding.Kind == "Namespace" && e.Regarding.Name == ns && e.Reason == reason {
				note = e.Note
				return true
			}
		}
		return false
	})
	return note
}

// TestTrustBundleSelected: selected namespaces (also ones created later)
// get the ConfigMap, unselected ones do not; an edited or deleted
// ConfigMap is repaired; a bundle change reaches every one; a foreign
// ConfigMap of that name is left alone with a Warning Event.
func TestTrustBundleSelected(t *testing.T) {
	env := testenv.Get(t)
	sel := map[string]string{"meshca-bundle-test": fmt.Sprint(time.Now().UnixNano())}
	a, b := env.Namespace(t, sel), env.Namespace(t, sel)
	unselected := env.Namespace(t)
	foreignNS := env.Namespace(t, sel)
	ctx := context.Background()
	foreign := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: meta.TrustBundleConfigMap, Namespace: foreignNS},
		Data:       map[string]string{"ca.crt": "someone else's"},
	}
	if err := env.Client.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	later := fmt.Sprintf("later-%d", time.Now().UnixNano()%1e9)
	h := startHarness(t, harnessOptions{
		namespaces:     []string{a, b, unselected, foreignNS, later},
		skipTLSContext: true,
		bundle:         &BundleConfig{Selector: labels.SelectorFromSet(sel)},
	})
	bundle := h.trust.PEM()
	h.waitBundle(t, a, bundle)
	cmB := h.waitBundle(t, b, bundle)

	t.Log("a namespace created later")
	h.create(t, hasLabel(namespaceObj(later), "meshca-bundle-test", sel["meshca-bundle-test"]))
	h.waitBundle(t, later, bundle)

	t.Log("foreign ConfigMap")
	if note := h.waitNamespaceEvent(t, foreignNS, EventBundleConflict); note == "" {
		t.Error("empty Event note")
	}
	if counter(t, h.metrics.BundleConflicts) < 1 {
		t.Error("no conflict counted")
	}

	t.Log("unselected namespace")
	h.bundle.ResyncAll(ctx)
	err := env.Client.Get(ctx, types.NamespacedName{Namespace: unselected, Name: meta.TrustBundleConfigMap}, &corev1.ConfigMap{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("unselected namespace: got %v, want NotFound", err)
	}

	t.Log("edit")
	cmA := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: a, Name: meta.TrustBundleConfigMap}, cmA); err != nil {
		t.Fatal(err)
	}
	cmA.Data["ca.crt"] = "tampered"
	cmA.Data["extra"] = "x"
	if err := env.Client.Update(ctx, cmA); err != nil {
		t.Fatal(err)
	}
	h.waitBundle(t, a, bundle)

	t.Log("delete")
	if err := env.Client.Delete(ctx, cmB); err != nil {
		t.Fatal(err)
	}
	h.waitBundle(t, b, bundle)

	t.Log("bundle change")
	next, err := ca.New(ca.Config{TrustDomain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	newBundle := append(append([]byte{}, bundle...), ca.NewState(next, "next", time.Now()).Bundle()...)
	if err := h.trust.Set(newBundle); err != nil {
		t.Fatal(err)
	}
	h.bundle.ResyncAll(ctx)
	for _, ns := range []string{a, b, later} {
		h.waitBundle(t, ns, newBundle)
	}
	if err := env.Client.Get(ctx, keyOf(foreign), foreign); err != nil {
		t.Fatal(err)
	}
	if foreign.Data["ca.crt"] != "someone else's" || foreign.Labels[meta.LabelManagedBy] != "" {
		t.Errorf("the foreign ConfigMap was written: %v %v", foreign.Labels, foreign.Data)
	}
}

// TestTrustBundleAllNamespaces: without a selector every namespace gets
// the ConfigMap, including ones created while meshca runs.
func TestTrustBundleAllNamespaces(t *testing.T) {
	env := testenv.Get(t)
	before := env.Namespace(t)
	h := startHarness(t, harnessOptions{skipTLSContext: true, bundle: &BundleConfig{}})
	after := env.Namespace(t)
	for _, ns := range []string{before, after, metav1.NamespaceDefault} {
		h.waitBundle(t, ns, h.trust.PEM())
	}
}
