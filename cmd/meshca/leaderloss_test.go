package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/ca/castore"
	"github.com/meshca/meshca/internal/daemontest"
	"github.com/meshca/meshca/internal/testenv"
)

// Timings of the leader-loss test. The Lease is short so a takeover takes
// seconds, yet long enough for a loaded 2-core machine running several
// -race daemons (a leader that cannot renew in time exits); the leaves are as short as the issuer's one-minute backdate
// allows without renewing at once (renewal comes 5-10 s after issuance);
// the previous CA is pruned one leaf lifetime after activation.
const (
	llLease         = 6 * time.Second
	llRenewDeadline = 4 * time.Second
	llRetry         = time.Second
	llLeaf          = 45 * time.Second
	llActivateAfter = 18 * time.Second
)

// testSeed returns the seed of a randomized test: the value of the
// environment variable env if set, else the clock. It is logged so that a
// failing run can be repeated.
func testSeed(t *testing.T, env string) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(env); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s: %v", env, err)
		}
	}
	t.Logf("seed %d (%s=%d repeats this run)", seed, env, seed)
	return seed
}

// TestServeLeaderLossMidRotation runs two meshca replicas with a short
// Lease, rotates the CA with `meshca ca rotate`, and SIGKILLs the leader
// twice at seeded random points: once while the next CA is published but
// not active (a new replica is started in its place, as kubelet would), and
// once after activation, before the old CA is pruned. Each time the other
// replica takes the Lease and resumes the rotation from the CA Secret: the
// CA it activates is the one published (same fingerprint), at the recorded
// time, and the prune comes at the recorded time. A watch on every Secret and
// ConfigMap checks, at every revision of the whole run, that each trust
// bundle ConfigMap verifies every live certificate meshca manages, that
// every Secret is whole, that every bundle (ConfigMaps and each ca.crt) only
// moves forward, {A} -> {A,B} -> {B}, and that no leaf signed by A is valid
// past A's recorded prune time.
func TestServeLeaderLossMidRotation(t *testing.T) {
	t.Parallel() // mostly waiting for the rotation's times
	began := time.Now()
	at := func() string { return fmt.Sprintf("[%5.1fs]", time.Since(began).Seconds()) }
	env := testenv.Get(t)
	ctx := t.Context()
	ns, app := env.Namespace(t), env.Namespace(t)
	rng := rand.New(rand.NewPCG(testSeed(t, "MESHCA_ROTATION_SEED"), 0))
	watched := watchTrust(t, env, ns, app)

	args := daemontest.WithFlags(daemontest.ServeArgs(env, ns),
		"--watch-namespaces="+ns+","+app,
		"--leaf-duration="+llLeaf.String(),
		// A replacement first sees B well before its activation time; a
		// short grace keeps that activation at the recorded time.
		"--ca-publish-grace=3s",
		"--leader-election-lease-duration="+llLease.String(),
		"--leader-election-renew-deadline="+llRenewDeadline.String(),
		"--leader-election-retry-period="+llRetry.String(),
	)
	var replicas []*daemontest.Daemon
	start := func() {
		replicas = append(replicas, daemontest.Start(t, fmt.Sprintf("replica-%d", len(replicas)), args))
	}
	alive := func() (out []*daemontest.Daemon) {
		for _, d := range replicas {
			if d.Running() {
				out = append(out, d)
			}
		}
		return out
	}
	takeover := 2*(llLease+llRenewDeadline) + 20*time.Second
	start()
	start()
	leader, holder := daemontest.WaitLeader(t, env, ns, replicas, "", time.Minute)
	t.Logf("%s %s leads (%s)", at(), leader.Name, holder)

	// The live certificates: gateways (one with a CA Secret), a workload,
	// and meshca's own webhook serving certificate in ns.
	createTLSContexts(t, env, app, "gw", 3, nil)
	withCASecret := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"hosts": []any{"up." + app + ".svc"}, "secret": "up-certs", "ca_secret": "up-ca",
	}}}
	withCASecret.SetGroupVersionKind(tlsContextGVK)
	withCASecret.SetNamespace(app)
	withCASecret.SetName("up")
	withCASecret.SetAnnotations(map[string]string{"meshca.io/issue": "true"})
	if err := env.Client.Create(ctx, withCASecret); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Clientset.AppsV1().Deployments(app).Create(ctx, certDeployment(app, "web"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	live := []string{app + "/gw-0-certs", app + "/gw-1-certs", app + "/gw-2-certs", app + "/up-certs", app + "/web-meshca-tls", ns + "/meshca-webhook-tls"}
	waitSignedBy(t, env, live, "")

	store := castore.Secret{Client: env.Clientset, Namespace: ns}
	out, err := run(t, "ca", "rotate", "--kubeconfig", env.Kubeconfig, "--namespace", ns, "--activate-after", llActivateAfter.String())
	if err != nil {
		t.Fatalf("ca rotate: %v\n%s", err, out)
	}
	published, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if published.Next == nil {
		t.Fatalf("after ca rotate the CA Secret holds %s, no next CA", slotList(published))
	}
	a, b := published.Current, published.Next
	activateAt := *published.Record.Next.ActivateAt
	names := map[string]string{rootName(a.Root): "A", rootName(b.Root): "B"}
	t.Logf("%s published B %s beside A %s, to activate at %s", at(), b.Fingerprint()[:12], a.Fingerprint()[:12], activateAt.Format(time.RFC3339Nano))

	// First loss: the next CA is in the Secret, maybe not yet picked up
	// (the leader reads it every 10s). The kill comes early enough for
	// the takeover to end before the activation time: a leader that is
	// gone longer than --activate-after is not what this test is about.
	killed := map[*daemontest.Daemon]bool{}
	kill := func(d *daemontest.Daemon) time.Time {
		d.Kill()
		killed[d] = true
		return time.Now()
	}
	wait := time.Duration(rng.Int64N(int64(3 * time.Second)))
	time.Sleep(wait)
	killedAt := kill(leader)
	start() // the replacement, which loads the CA Secret mid-rotation
	leader, holder = daemontest.WaitLeader(t, env, ns, alive(), holder, takeover)
	t.Logf("%s killed the leader %v after ca rotate, %v before activation; %s took the Lease after %v",
		at(), wait.Round(time.Millisecond), activateAt.Sub(killedAt).Round(time.Millisecond), leader.Name, time.Since(killedAt).Round(time.Millisecond))

	var activated *ca.State
	daemontest.Eventually(t, time.Until(activateAt)+takeover, "the activation of B", func(ctx context.Context) (bool, error) {
		activated, err = store.Load(ctx)
		return err == nil && activated.Current.Fingerprint() != a.Fingerprint(), err
	})
	if activated.Current.Fingerprint() != b.Fingerprint() || activated.Previous == nil || activated.Previous.Fingerprint() != a.Fingerprint() {
		t.Fatalf("after activation the CA Secret holds %s, want current B %s and previous A %s", slotList(activated), b.Fingerprint()[:12], a.Fingerprint()[:12])
	}
	activatedAt, pruneAt := *activated.Record.Current.ActivatedAt, *activated.Record.Previous.PruneAt
	if activatedAt.Before(activateAt) {
		t.Errorf("B activated at %s, before the recorded %s", activatedAt.Format(time.RFC3339Nano), activateAt.Format(time.RFC3339Nano))
	}
	t.Logf("%s B activated %v after the recorded time; A to be pruned at %s", at(), activatedAt.Sub(activateAt).Round(time.Millisecond), pruneAt.Format(time.RFC3339Nano))

	// Second loss: after activation, well before the prune.
	// The kill leaves the next leader half the takeover bound before the
	// prune is due, so that it is the one to prune.
	wait = time.Duration(rng.Int64N(int64(max(time.Until(pruneAt)-takeover/2, time.Millisecond))))
	time.Sleep(wait)
	killedAt = kill(leader)
	leader, _ = daemontest.WaitLeader(t, env, ns, alive(), holder, takeover)
	t.Logf("%s killed the leader %v after activation, %v before the prune; %s took the Lease after %v",
		at(), wait.Round(time.Millisecond), pruneAt.Sub(killedAt).Round(time.Millisecond), leader.Name, time.Since(killedAt).Round(time.Millisecond))

	var pruned *ca.State
	daemontest.Eventually(t, time.Until(pruneAt)+takeover, "the prune of A", func(ctx context.Context) (bool, error) {
		pruned, err = store.Load(ctx)
		return err == nil && pruned.Previous == nil, err
	})
	if pruned.Current.Fingerprint() != b.Fingerprint() || pruned.Next != nil {
		t.Errorf("after the prune the CA Secret holds %s, want B alone", slotList(pruned))
	}
	bundle := string(pruned.Bundle())
	waitSignedBy(t, env, live, b.Fingerprint())
	for _, n := range []string{ns, app} {
		daemontest.Eventually(t, 30*time.Second, "the bundle B in "+n, func(ctx context.Context) (bool, error) {
			cm, err := env.Clientset.CoreV1().ConfigMaps(n).Get(ctx, "meshca-trust-bundle", metav1.GetOptions{})
			return err == nil && cm.Data["ca.crt"] == bundle, err
		})
	}
	for _, d := range replicas {
		if !d.Running() && !killed[d] {
			t.Errorf("replica %s exited: %v", d.Name, d.Err())
		}
	}

	r := watched.stopAndCheck(t, names)
	t.Logf("%s replayed %d bundle ConfigMap and %d certificate Secret versions; the CA Secret held: %s", at(), r.bundleVersions, r.certVersions,
		strings.NewReplacer(a.Fingerprint(), "A", b.Fingerprint(), "B").Replace(strings.Join(r.caSlots, " | ")))
	for _, v := range r.violations {
		t.Errorf("bundle lost a needed root: %s", v)
	}
	for _, v := range r.outliving() {
		t.Errorf("a leaf outlives its CA in the bundle: %s", v)
	}
	for _, st := range r.caStates {
		for _, s := range ca.Slots {
			if c := st.st.Get(s); c != nil && c.Fingerprint() != a.Fingerprint() && c.Fingerprint() != b.Fingerprint() {
				t.Errorf("the CA Secret held a third CA %s in %s at %s: the rotation was restarted", c.Fingerprint()[:12], s, st.at.Format(time.RFC3339Nano))
			}
		}
		if p := st.st.SlotRecord(ca.SlotPrevious); p != nil && (p.PruneAt == nil || !p.PruneAt.Equal(pruneAt)) {
			t.Errorf("prune time %v recorded at %s, want the one recorded at activation (%s): the wait was restarted", p.PruneAt, st.at.Format(time.RFC3339Nano), pruneAt)
		}
	}
	order := [][]string{{"A"}, {"A", "B"}, {"B"}}
	for holder, sets := range r.rootSets {
		t.Logf("%s: %v", holder, sets)
		last := -1
		for _, set := range sets {
			i := slices.IndexFunc(order, func(o []string) bool { return slices.Equal(o, set) })
			if i < last || i < 0 {
				t.Errorf("%s went %v: not forward through {A} -> {A,B} -> {B}", holder, sets)
				break
			}
			last = i
		}
	}
}

// slotList names the CAs of st's slots by fingerprint prefix.
func slotList(st *ca.State) string {
	var out []string
	for _, s := range ca.Slots {
		if c := st.Get(s); c != nil {
			out = append(out, string(s)+"="+c.Fingerprint()[:12])
		}
	}
	return strings.Join(out, " ")
}

// waitSignedBy waits until each Secret (namespace/name) is whole
// (checkTLSSecret) and, when issuer is set, carries a certificate from the
// CA with that fingerprint.
func waitSignedBy(t *testing.T, env *testenv.Env, secrets []string, issuer string) {
	t.Helper()
	for _, s := range secrets {
		ns, name, _ := strings.Cut(s, "/")
		daemontest.Eventually(t, 90*time.Second, "Secret "+s+" valid", func(ctx context.Context) (bool, error) {
			sec, err := env.Clientset.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if _, err := checkTLSSecret(sec); err != nil {
				return false, err
			}
			return issuer == "" || sec.Annotations["meshca.io/issuer"] == issuer, nil
		})
	}
}

// certDeployment is a Deployment that asks for a workload certificate.
func certDeployment(ns, name string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{"meshca.io/certificate": "true"}},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: "example.com/" + name + ":1"}}},
			},
		},
	}
}
