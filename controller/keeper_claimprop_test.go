package controller

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/internal/testenv"
)

// TestClaimProperty generates TLSContexts and workloads with random names,
// namespaces, consent labels and flags that reference each other's Secrets,
// a foreign Secret and meshca's own, runs the controllers against the real
// API server until nothing moves, and checks what must hold whatever the
// mix: meshca's own Secrets and the foreign one are untouched, every
// managed Secret is held by a live source that names it, uses it as its
// type says and may write where it lies, and the steady state writes
// nothing. MESHCA_PROPERTY_SEEDS=n runs n seeds (default 3) starting at
// MESHCA_PROPERTY_SEED (default 1).
func TestClaimProperty(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the API server and a few seconds per seed")
	}
	env := testenv.Get(t)
	first, n := envInt("MESHCA_PROPERTY_SEED", 1), envInt("MESHCA_PROPERTY_SEEDS", 3)
	for seed := first; seed < first+n; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			claimPropertyRound(t, env, uint64(seed))
		})
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func claimPropertyRound(t *testing.T, env *testenv.Env, seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, 0x5eed))
	ctx := context.Background()
	tenants := []string{env.Namespace(t), env.Namespace(t), env.Namespace(t)}
	h0 := startHarness(t, harnessOptions{skipTLSContext: true})
	homeNS := env.Namespace(t)
	home := newMeshcaHome(t, env, h0, homeNS)
	all := append([]string{homeNS}, tenants...)
	// Consent labels: each namespace may accept Secrets from another.
	for _, ns := range all {
		if rnd.IntN(2) == 0 {
			continue
		}
		obj := &corev1.Namespace{}
		if err := env.Client.Get(ctx, types.NamespacedName{Name: ns}, obj); err != nil {
			t.Fatal(err)
		}
		obj.Labels[meta.LabelAcceptSecretsFrom] = all[rnd.IntN(len(all))]
		if err := env.Client.Update(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	foreign := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenants[0], Name: "f1"},
		Data:       map[string][]byte{"password": []byte("not meshca's")},
	}
	h0.create(t, foreign)
	cfg := TLSContextConfig{AllowCrossNamespace: rnd.IntN(3) == 0, Reserved: home.reserved}
	if rnd.IntN(2) == 0 {
		cfg.Cleanup = CleanupDelete
	}
	t.Logf("seed %d: allow-cross-namespace=%v cleanup=%q", seed, cfg.AllowCrossNamespace, cfg.Cleanup)
	h := startHarness(t, harnessOptions{
		namespaces: all, state: h0.state, config: cfg,
		workloads: true, workloadConfig: WorkloadConfig{Reserved: home.reserved},
	})

	names := []string{"s0", "s1", "s2", "f1", "meshca-ca", "meshca-webhook-tls", "meshca-spare"}
	ref := func() string {
		name := names[rnd.IntN(len(names))]
		if rnd.IntN(3) == 0 {
			return name + "." + all[rnd.IntN(len(all))]
		}
		return name
	}
	var objs []client.Object
	for i := range 12 {
		ns := all[rnd.IntN(len(all))]
		spec := map[string]any{}
		if rnd.IntN(10) < 7 {
			spec["secret"] = ref()
		}
		if rnd.IntN(2) == 0 {
			spec["ca_secret"] = ref()
		}
		if rnd.IntN(4) == 0 {
			spec["secret_namespacing"] = false
		}
		if rnd.IntN(2) == 0 {
			spec["hosts"] = []any{fmt.Sprintf("h%d.%s.svc", rnd.IntN(2), ns)}
		}
		objs = append(objs, tlsContext(ns, fmt.Sprintf("tc%d", i), issue, spec))
	}
	for i := range 6 {
		ns := all[rnd.IntN(len(all))]
		ann := certAnn()
		if rnd.IntN(3) > 0 {
			ann[meta.AnnotationSecretName] = names[rnd.IntN(len(names))]
		}
		objs = append(objs, workload(WorkloadKinds[rnd.IntN(len(WorkloadKinds))], ns, fmt.Sprintf("w%d", i), "", ann))
	}
	for _, o := range objs {
		t.Logf("%T %s/%s %v %v", o, o.GetNamespace(), o.GetName(), o.GetAnnotations()[meta.AnnotationSecretName], specOf(o))
	}
	h.create(t, objs...)
	quiet := h.quiesce(t, all)

	home.unchanged(t, h)
	got := &corev1.Secret{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(foreign), got); err != nil || got.ResourceVersion != quiet[tenants[0]+"/f1"] {
		t.Errorf("foreign Secret: %v", err)
	}
	if got.Labels[meta.LabelManagedBy] != "" || string(got.Data["password"]) != "not meshca's" {
		t.Errorf("foreign Secret written: %v", got)
	}
	for _, ns := range all {
		list := &corev1.SecretList{}
		if err := env.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		for i := range list.Items {
			s := &list.Items[i]
			if !isManaged(s) || home.reserved.has(secretRef{s.Namespace, s.Name}) || s.Name == "meshca-spare" {
				continue
			}
			if err := h.heldRightly(ctx, cfg, s); err != nil {
				t.Errorf("Secret %s/%s: %v", s.Namespace, s.Name, err)
			}
		}
	}
	// Steady state: another round of every check writes nothing.
	h.settle(t)
	h.work.ResyncAll(ctx)
	if again := h.quiesce(t, all); !mapsEqual(again, quiet) {
		t.Errorf("steady state wrote: before %v, after %v", quiet, again)
	}
}

func specOf(o client.Object) any {
	if u, ok := o.(*unstructured.Unstructured); ok {
		return u.Object["spec"]
	}
	return nil
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// quiesce waits until the Secrets of the namespaces have not changed for 3
// s and returns their resourceVersions by namespace/name.
func (h *harness) quiesce(t *testing.T, namespaces []string) map[string]string {
	t.Helper()
	read := func() map[string]string {
		out := map[string]string{}
		for _, ns := range namespaces {
			list := &corev1.SecretList{}
			if err := h.env.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
				t.Fatal(err)
			}
			for _, s := range list.Items {
				out[s.Namespace+"/"+s.Name] = s.ResourceVersion
			}
		}
		return out
	}
	last, since := read(), time.Now()
	deadline := time.Now().Add(90 * time.Second)
	for time.Since(since) < 3*time.Second {
		if time.Now().After(deadline) {
			t.Fatalf("Secrets still changing after 90 s: a loop? %v", last)
		}
		time.Sleep(250 * time.Millisecond)
		if now := read(); !mapsEqual(now, last) {
			last, since = now, time.Now()
		}
	}
	return last
}

// heldRightly checks that the holder of the managed Secret s is a live
// source that names it, uses it as its type says, and may write where it
// lies.
func (h *harness) heldRightly(ctx context.Context, cfg TLSContextConfig, s *corev1.Secret) error {
	hd := parseHolder(s.Annotations[meta.AnnotationSource])
	ref := secretRef{s.Namespace, s.Name}
	switch {
	case hd.Kind == tlsContextKind:
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(TLSContextGVK)
		if err := h.env.Client.Get(ctx, types.NamespacedName{Namespace: hd.Namespace, Name: hd.Name}, u); err != nil {
			return fmt.Errorf("holder %s: %w", hd.Key, err)
		}
		how, ok := secretUse(u, ref)
		if !ok {
			return fmt.Errorf("holder %s does not name it", hd.Key)
		}
		if want := map[use]corev1.SecretType{useCertificate: corev1.SecretTypeTLS, useBundle: corev1.SecretTypeOpaque}[how]; s.Type != want {
			return fmt.Errorf("type %s, but holder %s uses it as %v", s.Type, hd.Key, how)
		}
	case isWorkloadKind(hd.Kind):
		o := newWorkload(hd.Kind)
		if err := h.env.Client.Get(ctx, types.NamespacedName{Namespace: hd.Namespace, Name: hd.Name}, o); err != nil {
			return fmt.Errorf("holder %s: %w", hd.Key, err)
		}
		w, err := parseWorkloadSpec(o, WorkloadConfig{})
		if err != nil || w.Secret != ref || s.Type != corev1.SecretTypeTLS {
			return fmt.Errorf("holder %s does not name it as a certificate (%v)", hd.Key, err)
		}
	default:
		return fmt.Errorf("held by %q", hd.Key)
	}
	if hd.Namespace != s.Namespace && !cfg.AllowCrossNamespace {
		ns := &corev1.Namespace{}
		if err := h.env.Client.Get(ctx, types.NamespacedName{Name: s.Namespace}, ns); err != nil {
			return err
		}
		if ns.Labels[meta.LabelAcceptSecretsFrom] != hd.Namespace {
			return fmt.Errorf("holder %s wrote into %s without its consent", hd.Key, s.Namespace)
		}
	}
	return nil
}
