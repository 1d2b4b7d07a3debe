package main

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/ca/castore"
	"github.com/meshca/meshca/internal/daemontest"
	"github.com/meshca/meshca/internal/testenv"
)

// TestServeTrustOutlivesLongLeaf: with --leaf-duration 1m, a TLSContext
// asks for a 2h certificate (meshca.io/duration). `meshca ca rotate
// --activate-after 0s` makes B sign at once; the old CA A must stay in
// every bundle while that leaf, signed by A, is valid: past activation +
// --leaf-duration (where A used to be pruned) its prune time has moved to
// the leaf's NotAfter. A watch on every Secret and ConfigMap checks, at
// every revision, that the leaf's Secret is whole (its tls.crt verifies
// against its own ca.crt) and that every trust bundle ConfigMap verifies it.
func TestServeTrustOutlivesLongLeaf(t *testing.T) {
	t.Parallel() // mostly waiting out one --leaf-duration
	began := time.Now()
	env := testenv.Get(t)
	ctx := t.Context()
	ns, app := env.Namespace(t), env.Namespace(t)
	watched := watchTrust(t, env, ns, app)
	const leafDuration = time.Minute
	d := daemontest.Start(t, "meshca", daemontest.WithFlags(daemontest.ServeArgs(env, ns),
		"--watch-namespaces="+ns+","+app,
		"--leaf-duration="+leafDuration.String(),
		"--ca-publish-grace=2s",
	))

	createTLSContexts(t, env, app, "long", 1, map[string]string{"meshca.io/duration": "2h"})
	long := app + "/long-0-certs"
	waitSignedBy(t, env, []string{long}, "")
	sec, err := env.Clientset.CoreV1().Secrets(app).Get(ctx, "long-0-certs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := checkTLSSecret(sec)
	if err != nil {
		t.Fatal(err)
	}
	if life := time.Until(leaf.NotAfter); life < time.Hour {
		t.Fatalf("the leaf lives %s more, want about 2h", life.Round(time.Second))
	}

	store := castore.Secret{Client: env.Clientset, Namespace: ns}
	out, err := run(t, "ca", "rotate", "--kubeconfig", env.Kubeconfig, "--namespace", ns, "--activate-after", "0s")
	if err != nil {
		t.Fatalf("ca rotate: %v\n%s", err, out)
	}
	published, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, b := published.Current, published.Next
	if b == nil || sec.Annotations["meshca.io/issuer"] != a.Fingerprint() {
		t.Fatalf("after ca rotate the CA Secret holds %s; the leaf's issuer is %s", slotList(published), sec.Annotations["meshca.io/issuer"])
	}
	names := map[string]string{rootName(a.Root): "A", rootName(b.Root): "B"}

	var activated *ca.State
	daemontest.Eventually(t, time.Minute, "the activation of B", func(ctx context.Context) (bool, error) {
		activated, err = store.Load(ctx)
		return err == nil && activated.Current.Fingerprint() == b.Fingerprint(), err
	})
	activatedAt := *activated.Record.Current.ActivatedAt
	t.Logf("[%5.1fs] B activated; A used to be pruned at activation + %s", time.Since(began).Seconds(), leafDuration)

	// Past the old prune time, with room for the rotator's timer and a
	// poll of the CA Secret.
	time.Sleep(time.Until(activatedAt.Add(leafDuration + 8*time.Second)))
	held, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Errors, not Fatal: the replay below says what each bundle held.
	keptUntil := "never"
	switch {
	case held.Previous == nil || held.Previous.Fingerprint() != a.Fingerprint():
		t.Errorf("%s after activation the CA Secret holds %s: A left the bundle while a leaf it signed is valid until %s",
			time.Since(activatedAt).Round(time.Second), slotList(held), leaf.NotAfter.Format(time.RFC3339))
	case held.Record.Previous.PruneAt == nil || !held.Record.Previous.PruneAt.Equal(leaf.NotAfter.UTC()):
		t.Errorf("A's prune time %v, want the leaf's NotAfter %s", held.Record.Previous.PruneAt, leaf.NotAfter.UTC())
	default:
		keptUntil = held.Record.Previous.PruneAt.Format(time.RFC3339)
	}
	if !strings.Contains(d.Log(), "retired CA kept in the bundle until the last leaf it signed expires") {
		t.Errorf("meshca did not log why it kept A")
	}

	r := watched.stopAndCheck(t, names)
	for _, v := range r.violations {
		t.Error(v)
	}
	for key, sets := range r.rootSets {
		if strings.Contains(key, "long-0-certs") || strings.Contains(key, "meshca-trust-bundle") {
			t.Logf("%s held %v", key, sets)
		}
	}
	if r.bundleVersions == 0 || r.certVersions == 0 {
		t.Errorf("replayed %d bundle and %d certificate versions, want some of each", r.bundleVersions, r.certVersions)
	}
	t.Logf("[%5.1fs] %d bundle and %d certificate versions replayed; A kept until %s", time.Since(began).Seconds(),
		r.bundleVersions, r.certVersions, keptUntil)
	if !d.Running() {
		t.Errorf("meshca exited: %v", d.Err())
	}
}

// caLabels are the labels docs/byo-ca.md puts on a hand-written meshca-ca.
var caLabels = map[string]string{"app.kubernetes.io/managed-by": "meshca", "app.kubernetes.io/component": "ca"}

// byoCASecretData is meshca-ca as docs/byo-ca.md's manual path writes it:
// the current.* keys of a CA from elsewhere (no root key) and no
// state.json. The CA lives life, of which elapsed has passed.
func byoCASecretData(t *testing.T, life, elapsed time.Duration) (map[string][]byte, *ca.CA) {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Now().Add(-elapsed))
	c, err := ca.New(ca.Config{TrustDomain: "cluster.local", Clock: clk, IntermediateLifetime: life, RootLifetime: 2 * life, Backdate: -1})
	if err != nil {
		t.Fatal(err)
	}
	data, err := ca.NewState(c, "", clk.Now()).SecretData()
	if err != nil {
		t.Fatal(err)
	}
	_, rootKey, _, _ := ca.SlotKeys(ca.SlotCurrent)
	for _, k := range []string{rootKey, ca.KeyState, ca.KeyBundle} {
		delete(data, k)
	}
	return data, c
}

// TestCARotateRefusesExternalCA: `meshca ca rotate` on a bring-your-own
// CA written by hand (no state.json) refuses to mint a self-signed
// replacement and leaves the Secret as it was; with --replace-external-ca
// it publishes one.
func TestCARotateRefusesExternalCA(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ctx := t.Context()
	ns := env.Namespace(t)
	data, byo := byoCASecretData(t, 24*time.Hour, time.Hour)
	store := castore.Secret{Client: env.Clientset, Namespace: ns}
	before := putSecret(t, env, ns, ca.DefaultSecretName, caLabels, data)
	out, err := run(t, "ca", "rotate", "--kubeconfig", env.Kubeconfig, "--namespace", ns, "--activate-after", "1h")
	if err == nil || !strings.Contains(err.Error(), "bring-your-own") || !strings.Contains(err.Error(), "--replace-external-ca") {
		t.Fatalf("ca rotate on a BYO CA: err %v, want a refusal naming --replace-external-ca\n%s", err, out)
	}
	after, err := env.Clientset.CoreV1().Secrets(ns).Get(ctx, ca.DefaultSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != before.ResourceVersion {
		t.Errorf("the refused rotate wrote the CA Secret")
	}

	out, err = run(t, "ca", "rotate", "--kubeconfig", env.Kubeconfig, "--namespace", ns, "--activate-after", "1h", "--replace-external-ca")
	if err != nil {
		t.Fatalf("ca rotate --replace-external-ca: %v\n%s", err, out)
	}
	st, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Current.Fingerprint() != byo.Fingerprint() || st.Next == nil || st.Record.Next.Source != ca.SourceGenerated {
		t.Errorf("after --replace-external-ca the CA Secret holds %s, want the BYO CA current and a generated next", slotList(st))
	}
}

// TestServeWarnsOfExpiringExternalCA: meshca serve with a bring-your-own CA
// written by hand, past the point where meshca would rotate a CA of its
// own, never replaces it; it records a Warning Event on the CA Secret and
// sets meshca_ca_external_expiring to 1.
func TestServeWarnsOfExpiringExternalCA(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ctx := t.Context()
	ns := env.Namespace(t)
	// 2h of life, 1h10m gone: past half its life (prepare), before the
	// activation point.
	data, byo := byoCASecretData(t, 2*time.Hour, 70*time.Minute)
	putSecret(t, env, ns, ca.DefaultSecretName, caLabels, data)
	d := daemontest.Start(t, "meshca", daemontest.WithFlags(daemontest.ServeArgs(env, ns), "--leaf-duration=10m"))
	daemontest.Eventually(t, 90*time.Second, "a Warning Event ExternalCAExpiring on the CA Secret", func(ctx context.Context) (bool, error) {
		evs, err := env.Clientset.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.Reason == reasonExternalCAExpiring && e.Type == "Warning" && e.Regarding.Kind == "Secret" && e.Regarding.Name == ca.DefaultSecretName {
				return strings.Contains(e.Note, byo.Fingerprint()), nil
			}
		}
		return false, nil
	})
	found := false
	for _, s := range d.Metrics(t) {
		if s.Name == "meshca_ca_external_expiring" {
			found = true
			if s.Value != 1 {
				t.Errorf("meshca_ca_external_expiring = %v, want 1", s.Value)
			}
		}
	}
	if !found {
		t.Error("no meshca_ca_external_expiring metric")
	}
	st, err := castore.Secret{Client: env.Clientset, Namespace: ns}.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Current.Fingerprint() != byo.Fingerprint() || st.Next != nil {
		t.Errorf("the CA Secret holds %s, want the BYO CA alone", slotList(st))
	}
}
