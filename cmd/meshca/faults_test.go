package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/internal/daemontest"
	"github.com/meshca/meshca/internal/testenv"
)

// TestServeSurvivesAPIServerOutage stops kube-apiserver (etcd stays up)
// while meshca serves 200 TLSContexts, and starts it again: meshca never
// exits, and every Secret ends whole and valid. Then nothing meshca logged,
// recorded as an Event or exported as a metric holds private key material.
// Not parallel: the API server is shared with the package's other tests.
func TestServeSurvivesAPIServerOutage(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	const n = 200
	// The Lease outlives the outage: with leader election a replica that
	// cannot renew for --leader-election-renew-deadline gives up leading
	// and exits (controller-runtime's design, so that two replicas never
	// lead at once); kubelet restarts it. The crash test covers restarts.
	d := startDaemon(t, env, ns, "--log-level", "debug", "--audit-schedule", "@every 10s",
		"--leader-election-lease-duration=120s", "--leader-election-renew-deadline=100s")
	createTLSContexts(t, env, ns, "gw", n, nil)
	daemontest.Eventually(t, 2*time.Minute, "meshca to be issuing", func(ctx context.Context) (bool, error) {
		list, err := env.Clientset.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=meshca"})
		return err == nil && len(list.Items) > 20, err
	})
	if err := env.StopAPIServer(); err != nil {
		t.Fatalf("stop kube-apiserver: %v", err)
	}
	stopped := time.Now()
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = env.StartAPIServer()
		}
	})
	time.Sleep(8 * time.Second)
	if !d.Running() {
		t.Fatalf("meshca exited during the outage: %v", d.Err())
	}
	if err := env.StartAPIServer(); err != nil {
		t.Fatalf("start kube-apiserver again: %v", err)
	}
	restarted = true
	t.Logf("API server down for %s", time.Since(stopped).Round(time.Second))
	waitValidSecrets(t, env, ns, "gw", n, nil)
	if !d.Running() {
		t.Fatalf("meshca exited after the outage: %v", d.Err())
	}
	assertNoKeyMaterial(t, map[string]string{
		"meshca's log": d.Log(),
		"Events":       eventsText(t, env, ns),
		"metrics":      d.MetricsText(t),
	}, keyMaterial(t, env, ns))
	d.Terminate(t)
}

// TestServeCrashLoop SIGKILLs meshca at random points of a mass reissue
// (every TLSContext's names change before each start), 20 times, seeded
// (MESHCA_CRASH_SEED repeats a run). After each kill every Secret present
// is whole (certificate and key match and verify); after the last restart
// every Secret exists and carries the last names.
func TestServeCrashLoop(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	seed := testSeed(t, "MESHCA_CRASH_SEED")
	rng := rand.New(rand.NewPCG(seed, seed))
	const n, rounds = 60, 20
	createTLSContexts(t, env, ns, "gw", n, nil)
	var logs []string
	for round := range rounds {
		setGeneration(t, env, ns, "gw", n, round)
		d := startDaemon(t, env, ns, "--leader-elect=false")
		// Kill at a random point from just before the CA is loaded to well
		// into the reissue (the -race binary takes a while to start).
		daemontest.Eventually(t, time.Minute, "meshca to start", func(context.Context) (bool, error) {
			return !d.Running() || strings.Contains(d.Log(), "CA loaded"), nil
		})
		wait := time.Duration(rng.IntN(2500)) * time.Millisecond
		time.Sleep(wait)
		if !d.Running() {
			t.Fatalf("round %d: meshca exited by itself: %v", round, d.Err())
		}
		d.Kill()
		logs = append(logs, d.Log())
		list, err := env.Clientset.CoreV1().Secrets(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=meshca"})
		if err != nil {
			t.Fatal(err)
		}
		current := 0
		for i := range list.Items {
			s := &list.Items[i]
			if s.Type != "kubernetes.io/tls" {
				continue
			}
			leaf, err := checkTLSSecret(s)
			if err != nil {
				t.Fatalf("round %d (killed after %s): Secret %s half-written: %v", round, wait, s.Name, err)
			}
			if slices.Contains(leaf.DNSNames, genName(ns, round)) {
				current++
			}
		}
		t.Logf("round %d: killed after %s; %d managed Secrets, %d already reissued", round, wait, len(list.Items), current)
	}
	d := startDaemon(t, env, ns, "--leader-elect=false")
	last := genName(ns, rounds-1)
	waitValidSecrets(t, env, ns, "gw", n, func(c *x509.Certificate) bool { return slices.Contains(c.DNSNames, last) })
	if !d.Running() {
		t.Fatalf("meshca exited: %v", d.Err())
	}
	logs = append(logs, d.Log())
	texts := map[string]string{"Events": eventsText(t, env, ns), "metrics": d.MetricsText(t)}
	for i, l := range logs {
		texts[fmt.Sprintf("log of start %d", i)] = l
	}
	assertNoKeyMaterial(t, texts, keyMaterial(t, env, ns))
	d.Terminate(t)
}

func genName(ns string, gen int) string { return fmt.Sprintf("gen-%d.%s.svc", gen, ns) }

// setGeneration gives every TLSContext <prefix>-<i> the extra name of
// generation gen, so each needs a new certificate.
func setGeneration(t *testing.T, env *testenv.Env, ns, prefix string, n, gen int) {
	t.Helper()
	inParallel(t, n, "patch TLSContext", func(i int) error {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(tlsContextGVK)
		u.SetNamespace(ns)
		u.SetName(fmt.Sprintf("%s-%d", prefix, i))
		patch := fmt.Sprintf(`{"metadata":{"annotations":{"meshca.io/dns-names":%q}}}`, genName(ns, gen))
		return env.Client.Patch(context.Background(), u, client.RawPatch(types.MergePatchType, []byte(patch)))
	})
}
