package main

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/ca/castore"
	"github.com/meshca/meshca/internal/daemontest"
	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/internal/testpki"
)

// editStorm is how long the editor of TestServeRepairsConcurrentEdits works.
const editStorm = 12 * time.Second

// TestServeRepairsConcurrentEdits lets a seeded editor work on meshca's
// objects while meshca runs, as careless people and tools would: it puts a
// valid certificate and key from a foreign CA into tls.crt/tls.key, swaps in
// another Secret's key, garbles values, removes keys, scrambles meshca's
// annotations, deletes Secrets and trust bundle ConfigMaps, replaces a
// bundle with a foreign root, and writes some changes with a
// resourceVersion it knows to be stale. Its writes race with meshca's, so
// both sides see conflicts. Afterwards every Secret holds a whole
// certificate from meshca's CA with the CA's bundle, every bundle ConfigMap
// holds exactly the bundle, meshca never exited, and the conflicts it met
// are in its log only as errors it retried. (The controller tests cover one
// edit at a time with the reconcilers in the test process; this is the
// whole daemon under a stream of them.)
func TestServeRepairsConcurrentEdits(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ctx := t.Context()
	ns, app := env.Namespace(t), env.Namespace(t)
	rng := rand.New(rand.NewPCG(testSeed(t, "MESHCA_EDIT_SEED"), 1))
	d := daemontest.Start(t, "meshca", daemontest.WithFlags(daemontest.ServeArgs(env, ns),
		"--watch-namespaces="+ns+","+app, "--audit-schedule=@every 5s"))

	createTLSContexts(t, env, app, "gw", 3, nil)
	for i := range 2 {
		u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
			"hosts":     []any{fmt.Sprintf("up-%d.%s.svc", i, app)},
			"secret":    fmt.Sprintf("up-%d-certs", i),
			"ca_secret": fmt.Sprintf("up-%d-ca", i),
		}}}
		u.SetGroupVersionKind(tlsContextGVK)
		u.SetNamespace(app)
		u.SetName(fmt.Sprintf("up-%d", i))
		u.SetAnnotations(map[string]string{"meshca.io/issue": "true"})
		if err := env.Client.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := env.Clientset.AppsV1().Deployments(app).Create(ctx, certDeployment(app, "web"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secrets := []string{"gw-0-certs", "gw-1-certs", "gw-2-certs", "up-0-certs", "up-1-certs", "up-0-ca", "up-1-ca", "web-meshca-tls"}
	caSecrets := []string{"up-0-ca", "up-1-ca"}
	store := castore.Secret{Client: env.Clientset, Namespace: ns}
	var st *ca.State
	daemontest.Eventually(t, time.Minute, "the CA Secret", func(ctx context.Context) (bool, error) {
		var err error
		st, err = store.Load(ctx)
		return err == nil, err
	})
	bundle := st.Bundle()
	waitRepaired(t, env, app, secrets, caSecrets, []string{ns, app}, bundle)

	// The API server warns about malformed kubernetes.io/tls data; the
	// editor means it.
	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandler = rest.NoWarnings{}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	foreign := testpki.New(t)
	e := &editor{client: cs, rng: rng, foreignRoot: foreign.RootPEM, ns: app, secrets: secrets, bundleNamespaces: []string{ns, app}, counts: map[string]int{}}
	for _, name := range secrets {
		e.foreignLeaves = append(e.foreignLeaves, foreign.Leaf(t, testpki.LeafOptions{DNSNames: []string{name + "." + app + ".svc"}}))
	}
	e.run(t, editStorm)
	t.Logf("editor: %s", e.summary())
	if e.counts["conflict (stale resourceVersion refused)"] == 0 {
		t.Errorf("no stale write was refused with a conflict: the test did not force one")
	}
	if !d.Running() {
		t.Fatalf("meshca exited during the edits: %v", d.Err())
	}
	// The storm may or may not leave this for last, so do it once more on
	// purpose: an edited meshca.io/source on a broken Secret. The storm's
	// last edit may have deleted the Secret, or meshca may be rewriting it:
	// wait for meshca to recreate it and retry on a conflict.
	for _, name := range []string{"gw-0-certs", "web-meshca-tls"} {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			s, err := cs.CoreV1().Secrets(app).Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			if err != nil {
				return false, err
			}
			if s.Annotations == nil {
				s.Annotations = map[string]string{}
			}
			if s.Data == nil {
				s.Data = map[string][]byte{}
			}
			s.Annotations[meta.AnnotationSource] = "edited"
			s.Data["tls.key"] = e.foreignLeaves[0].KeyPEM
			_, err = cs.CoreV1().Secrets(app).Update(ctx, s, metav1.UpdateOptions{})
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				return false, nil
			}
			return err == nil, err
		})
		if err != nil {
			t.Fatalf("edit meshca.io/source of Secret %s: %v", name, err)
		}
	}

	waitRepaired(t, env, app, secrets, caSecrets, []string{ns, app}, bundle)
	after, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Current.Fingerprint() != st.Current.Fingerprint() {
		t.Errorf("the CA changed during the edits: %s, was %s", after.Current.Fingerprint(), st.Current.Fingerprint())
	}
	if !d.Running() {
		t.Fatalf("meshca exited: %v", d.Err())
	}

	// meshca met the editor's writes as conflicts and retried them; the
	// log shows them as retried reconcile errors, never as anything that
	// stopped a part of meshca.
	conflicts := 0
	for _, line := range strings.Split(d.Log(), "\n") {
		switch {
		case strings.Contains(line, "the object has been modified"):
			conflicts++
			if !strings.Contains(line, "Reconciler error") {
				t.Errorf("a conflict not retried by a reconciler: %s", line)
			}
		case strings.Contains(line, `"level":"ERROR"`) && !strings.Contains(line, "Reconciler error"):
			t.Errorf("meshca logged an error outside a reconcile: %s", daemontest.Tail(line, 600))
		}
	}
	t.Logf("meshca logged %d conflicts, all retried by reconcilers", conflicts)
	assertNoKeyMaterial(t, map[string]string{
		"meshca's log": d.Log(),
		"Events":       eventsText(t, env, app),
		"metrics":      d.MetricsText(t),
	}, append(keyMaterial(t, env, app), keyMaterial(t, env, ns)...))
	d.Terminate(t)
}

// waitRepaired waits until each of the Secrets in ns is whole and from the
// CA's bundle (CA Secrets: the bundle in tls.crt and ca.crt) and the trust
// bundle ConfigMap of each of bundleNamespaces holds exactly the bundle.
func waitRepaired(t *testing.T, env *testenv.Env, ns string, secrets, caSecrets, bundleNamespaces []string, bundle []byte) {
	t.Helper()
	daemontest.Eventually(t, 2*time.Minute, "every Secret and bundle repaired", func(ctx context.Context) (bool, error) {
		for _, name := range secrets {
			s, err := env.Clientset.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if s.Labels[meta.LabelManagedBy] != meta.ManagedByValue {
				return false, fmt.Errorf("%w: Secret %s lost meshca's label", daemontest.ErrGiveUp, name)
			}
			if !bytes.Equal(s.Data["ca.crt"], bundle) {
				return false, fmt.Errorf("Secret %s: ca.crt is not the CA's bundle", name)
			}
			if slices.Contains(caSecrets, name) {
				if len(s.Data) != 2 || !bytes.Equal(s.Data["tls.crt"], bundle) {
					return false, fmt.Errorf("CA Secret %s: keys %v, tls.crt is the bundle: %v", name, slices.Sorted(maps.Keys(s.Data)), bytes.Equal(s.Data["tls.crt"], bundle))
				}
				continue
			}
			if _, err := checkTLSSecret(s); err != nil {
				return false, fmt.Errorf("Secret %s: %w", name, err)
			}
			if len(s.Data) != 3 {
				return false, fmt.Errorf("Secret %s: keys %v", name, slices.Sorted(maps.Keys(s.Data)))
			}
		}
		for _, n := range bundleNamespaces {
			cm, err := env.Clientset.CoreV1().ConfigMaps(n).Get(ctx, meta.TrustBundleConfigMap, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if len(cm.Data) != 1 || cm.Data["ca.crt"] != string(bundle) || len(cm.BinaryData) != 0 {
				return false, fmt.Errorf("ConfigMap %s/%s: keys %v, bundle right: %v", n, cm.Name, slices.Sorted(maps.Keys(cm.Data)), cm.Data["ca.crt"] == string(bundle))
			}
		}
		return true, nil
	})
}

// editor makes random edits to meshca's Secrets and bundle ConfigMaps.
type editor struct {
	client           kubernetes.Interface
	rng              *rand.Rand
	foreignRoot      []byte
	foreignLeaves    []*testpki.Leaf // valid certificates and keys of a foreign CA
	ns               string
	secrets          []string
	bundleNamespaces []string

	mu     sync.Mutex
	counts map[string]int
}

func (e *editor) count(what string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.counts[what]++
}

func (e *editor) summary() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var parts []string
	for k, v := range e.counts {
		parts = append(parts, fmt.Sprintf("%d %s", v, k))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// run edits for d in one goroutine (the rng is not shared), a few
// milliseconds apart, and waits for it.
func (e *editor) run(t *testing.T, d time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx := context.Background()
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			var err error
			if e.rng.IntN(4) == 0 {
				err = e.editBundle(ctx, e.bundleNamespaces[e.rng.IntN(len(e.bundleNamespaces))])
			} else {
				err = e.editSecret(ctx, e.secrets[e.rng.IntN(len(e.secrets))])
			}
			switch {
			case err == nil:
			case apierrors.IsNotFound(err):
				e.count("gone already")
			case apierrors.IsConflict(err):
				e.count("conflict with meshca")
			case apierrors.IsInvalid(err):
				e.count("refused by the API server as invalid")
			default:
				e.count("error: " + err.Error())
			}
			time.Sleep(time.Duration(e.rng.IntN(80)) * time.Millisecond)
		}
	}()
	<-done
}

// garble is random bytes, sometimes dressed as PEM.
func (e *editor) garble() []byte {
	b := make([]byte, 16+e.rng.IntN(64))
	for i := range b {
		b[i] = byte(e.rng.Uint32())
	}
	if e.rng.IntN(2) == 0 {
		return []byte("-----BEGIN CERTIFICATE-----\n" + fmt.Sprintf("%x", b) + "\n-----END CERTIFICATE-----\n")
	}
	return b
}

func (e *editor) editSecret(ctx context.Context, name string) error {
	c := e.client.CoreV1().Secrets(e.ns)
	s, err := c.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	keys := slices.Sorted(maps.Keys(s.Data))
	op := []string{"foreign certificate and key", "foreign certificate", "other Secret's key", "garble", "remove key",
		"scramble annotations", "delete", "stale write", "burst"}[e.rng.IntN(9)]
	switch op {
	case "burst":
		// Writes in a row, each from a fresh read: meshca, reacting to the
		// first, writes from a copy the next one has made stale.
		e.count("Secret " + op)
		for range 4 {
			s, err := c.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			s.Data["tls.crt"] = e.foreignLeaves[e.rng.IntN(len(e.foreignLeaves))].CertPEM
			if _, err := c.Update(ctx, s, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
				return err
			}
		}
		return nil
	case "foreign certificate and key", "foreign certificate":
		leaf := e.foreignLeaves[e.rng.IntN(len(e.foreignLeaves))]
		s.Data["tls.crt"] = leaf.CertPEM
		if op == "foreign certificate and key" {
			s.Data["tls.key"] = leaf.KeyPEM
		}
	case "other Secret's key":
		other, err := c.Get(ctx, e.secrets[e.rng.IntN(len(e.secrets))], metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Data["tls.key"] = other.Data["tls.key"]
	case "garble":
		if len(keys) == 0 {
			return nil
		}
		s.Data[keys[e.rng.IntN(len(keys))]] = e.garble()
	case "remove key":
		if len(keys) == 0 {
			return nil
		}
		delete(s.Data, keys[e.rng.IntN(len(keys))])
	case "scramble annotations":
		for k := range s.Annotations {
			if strings.HasPrefix(k, "meshca.io/") && e.rng.IntN(2) == 0 {
				s.Annotations[k] = "edited"
			}
		}
	case "delete":
		e.count("Secret " + op)
		return c.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &s.ResourceVersion}})
	case "stale write":
		// Write once, then again from the copy read before the first
		// write: the API server must refuse the second.
		stale := s.DeepCopy()
		s.Data["tls.crt"] = e.garble()
		if _, err := c.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			return err
		}
		stale.Data["tls.key"] = e.garble()
		_, err := c.Update(ctx, stale, metav1.UpdateOptions{})
		return e.staleWrite(err)
	}
	e.count("Secret " + op)
	_, err = c.Update(ctx, s, metav1.UpdateOptions{})
	return err
}

func (e *editor) editBundle(ctx context.Context, ns string) error {
	c := e.client.CoreV1().ConfigMaps(ns)
	cm, err := c.Get(ctx, meta.TrustBundleConfigMap, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	op := []string{"foreign root", "foreign root added", "garble", "remove ca.crt", "extra key", "binary data", "delete", "stale write", "burst"}[e.rng.IntN(9)]
	switch op {
	case "burst":
		e.count("ConfigMap " + op)
		for i := range 4 {
			cm, err := c.Get(ctx, meta.TrustBundleConfigMap, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cm.Data = map[string]string{"ca.crt": string(e.foreignRoot), "n": fmt.Sprint(i)}
			if _, err := c.Update(ctx, cm, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
				return err
			}
		}
		return nil
	case "foreign root":
		cm.Data["ca.crt"] = string(e.foreignRoot)
	case "foreign root added":
		cm.Data["ca.crt"] += string(e.foreignRoot)
	case "garble":
		cm.Data["ca.crt"] = string(e.garble())
	case "remove ca.crt":
		delete(cm.Data, "ca.crt")
	case "extra key":
		cm.Data["extra.crt"] = string(e.foreignRoot)
	case "binary data":
		cm.BinaryData = map[string][]byte{"blob": e.garble()}
	case "delete":
		e.count("ConfigMap " + op)
		return c.Delete(ctx, cm.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &cm.ResourceVersion}})
	case "stale write":
		stale := cm.DeepCopy()
		cm.Data["ca.crt"] = string(e.foreignRoot)
		if _, err := c.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			return err
		}
		stale.Data["ca.crt"] = ""
		_, err := c.Update(ctx, stale, metav1.UpdateOptions{})
		return e.staleWrite(err)
	}
	e.count("ConfigMap " + op)
	_, err = c.Update(ctx, cm, metav1.UpdateOptions{})
	return err
}

// staleWrite counts the outcome of a write with a stale resourceVersion:
// the API server must refuse it with a conflict.
func (e *editor) staleWrite(err error) error {
	if apierrors.IsConflict(err) {
		e.count("conflict (stale resourceVersion refused)")
		return nil
	}
	e.count("stale write not refused")
	return err
}
