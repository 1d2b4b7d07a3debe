package e2e

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/meshca/meshca/internal/daemontest"
	"github.com/meshca/meshca/internal/testenv"
)

// Lease timings of the HA test: short enough for a test, long enough for a
// loaded 2-core machine running the race detector.
const (
	leaseDuration = 4 * time.Second
	renewDeadline = 3 * time.Second
	retryPeriod   = 500 * time.Millisecond
)

// TestHighAvailability runs three replicas: exactly one leads, and when it
// is killed (SIGKILL, so it cannot release the Lease) another takes over
// within lease duration + renew deadline. A watch on the namespace's
// Secrets counts every write: each Secret is created exactly once and never
// updated, across the start of three replicas at once and the handover,
// and TLSContexts created while nobody leads are not missed.
func TestHighAvailability(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	ns := env.Namespace(t)

	removeTLSContextsAtEnd(t, env, ns)
	writes := watchSecretWrites(t, env, ns)
	const contexts = 50
	for i := range contexts {
		if err := env.Client.Create(ctx, tlsContext(ns, fmt.Sprintf("gw-%d", i), fmt.Sprintf("gw-%d-tls", i), fmt.Sprintf("gw-%d-ca", i))); err != nil {
			t.Fatal(err)
		}
	}

	args := []string{"serve",
		"--kubeconfig=" + env.Kubeconfig,
		"--namespace=" + ns,
		"--watch-namespaces=" + ns,
		"--webhook-configuration=meshca-ha-none",
		"--webhook-names=127.0.0.1",
		"--leader-election-lease-duration=" + leaseDuration.String(),
		"--leader-election-renew-deadline=" + renewDeadline.String(),
		"--leader-election-retry-period=" + retryPeriod.String(),
	}
	var replicas []*daemontest.Daemon
	for i := range 3 {
		replicas = append(replicas, daemontest.Start(t, fmt.Sprintf("replica-%d", i), args))
	}
	for _, d := range replicas {
		d.WaitReady(t, 60*time.Second)
	}

	leader, holder := waitOneLeader(t, env, ns, replicas, "")
	for i := range contexts {
		waitSecret(t, env, ns, fmt.Sprintf("gw-%d-tls", i))
		waitSecret(t, env, ns, fmt.Sprintf("gw-%d-ca", i))
	}
	waitSettled(t, leader, contexts)
	before := writes.snapshot()
	t.Logf("before the kill: %s led (%s); %s", leader.Name, holder, before)
	if err := before.onlyCreates(); err != nil {
		t.Error(err)
	}
	if want := 2*contexts + 2; len(before.creates) != want { // + meshca-ca and the webhook Secret
		t.Errorf("%d Secrets created, want %d", len(before.creates), want)
	}

	// Kill the leader; TLSContexts created while nobody leads must be
	// issued by the next one.
	killed := time.Now()
	if _, err := leader.Stop(t, syscall.SIGKILL, 5*time.Second); err == nil {
		t.Fatal("the killed leader exited cleanly")
	}
	const during = 5
	for i := range during {
		if err := env.Client.Create(ctx, tlsContext(ns, fmt.Sprintf("handover-%d", i), fmt.Sprintf("handover-%d-tls", i), "")); err != nil {
			t.Fatal(err)
		}
	}
	var rest []*daemontest.Daemon
	for _, d := range replicas {
		if d != leader {
			rest = append(rest, d)
		}
	}
	next, nextHolder := waitOneLeader(t, env, ns, rest, holder)
	observed := time.Since(killed)
	// The new holder stamps acquireTime when it takes the Lease; polling
	// and scraping above add their own delay to observed.
	lease, err := env.Clientset.CoordinationV1().Leases(ns).Get(ctx, "meshca", metav1.GetOptions{})
	if err != nil || lease.Spec.AcquireTime == nil {
		t.Fatalf("Lease after the takeover: %v, %+v", err, lease)
	}
	takeover := lease.Spec.AcquireTime.Sub(killed)
	t.Logf("takeover: %s took the Lease (%s) %v after SIGKILL of %s, and reported meshca_leader 1 after %v (bound: lease duration %v + renew deadline %v)",
		next.Name, nextHolder, takeover.Round(time.Millisecond), leader.Name, observed.Round(time.Millisecond), leaseDuration, renewDeadline)
	if takeover > leaseDuration+renewDeadline {
		t.Errorf("takeover took %v, more than lease duration + renew deadline (%v)", takeover, leaseDuration+renewDeadline)
	}

	for i := range during {
		waitSecret(t, env, ns, fmt.Sprintf("handover-%d-tls", i))
	}
	waitSettled(t, next, contexts+during)
	after := writes.snapshot().since(before)
	t.Logf("after the takeover: %s", after)
	if err := after.onlyCreates(); err != nil {
		t.Error(err)
	}
	if len(after.creates) != during {
		t.Errorf("%d Secrets created after the kill, want %d (one per TLSContext created during the handover): %v", len(after.creates), during, after.creates)
	}
}

// waitOneLeader waits for exactly one leader among replicas, other than
// notHolder.
func waitOneLeader(t *testing.T, env *testenv.Env, ns string, replicas []*daemontest.Daemon, notHolder string) (*daemontest.Daemon, string) {
	t.Helper()
	return daemontest.WaitLeader(t, env, ns, replicas, notHolder, 2*(leaseDuration+renewDeadline)+10*time.Second)
}

// waitSettled waits until the leader has reconciled at least n TLSContexts
// and its TLSContext queue has stayed empty for a second.
func waitSettled(t *testing.T, d *daemontest.Daemon, n int) {
	t.Helper()
	var quietSince time.Time
	daemontest.Eventually(t, 30*time.Second, d.Name+" settled", func(context.Context) (bool, error) {
		m := d.Metrics(t)
		var reconciled float64
		for _, s := range m.Find("controller_runtime_reconcile_total", "controller=tlscontext") {
			reconciled += s.Value
		}
		depth, _ := m.Value("workqueue_depth", "name=tlscontext")
		busy, _ := m.Value("controller_runtime_active_workers", "controller=tlscontext")
		if reconciled < float64(n) || depth > 0 || busy > 0 {
			quietSince = time.Time{}
			return false, nil
		}
		if quietSince.IsZero() {
			quietSince = time.Now()
		}
		return time.Since(quietSince) >= time.Second, nil
	})
}

// secretWrites counts, per Secret, the writes a watch sees.
type secretWrites struct {
	mu     sync.Mutex
	events map[string][]watch.EventType
}

// watchSecretWrites watches every Secret in ns from now until the test
// ends.
func watchSecretWrites(t *testing.T, env *testenv.Env, ns string) *secretWrites {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	list, err := env.Clientset.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := env.Clientset.CoreV1().Secrets(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	sw := &secretWrites{events: map[string][]watch.EventType{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			obj, ok := ev.Object.(metav1.Object)
			if !ok {
				continue
			}
			sw.mu.Lock()
			sw.events[obj.GetName()] = append(sw.events[obj.GetName()], ev.Type)
			sw.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		w.Stop()
		<-done
	})
	return sw
}

// writeCounts is what the watch saw up to a moment.
type writeCounts struct {
	creates, updates, deletes map[string]int
}

func (sw *secretWrites) snapshot() writeCounts {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	c := writeCounts{creates: map[string]int{}, updates: map[string]int{}, deletes: map[string]int{}}
	for name, evs := range sw.events {
		for _, e := range evs {
			switch e {
			case watch.Added:
				c.creates[name]++
			case watch.Modified:
				c.updates[name]++
			case watch.Deleted:
				c.deletes[name]++
			}
		}
	}
	return c
}

// since is what happened after earlier.
func (c writeCounts) since(earlier writeCounts) writeCounts {
	diff := func(now, then map[string]int) map[string]int {
		out := map[string]int{}
		for k, v := range now {
			if d := v - then[k]; d > 0 {
				out[k] = d
			}
		}
		return out
	}
	return writeCounts{creates: diff(c.creates, earlier.creates), updates: diff(c.updates, earlier.updates), deletes: diff(c.deletes, earlier.deletes)}
}

// onlyCreates fails unless every Secret was created once and nothing was
// updated or deleted.
func (c writeCounts) onlyCreates() error {
	var bad []string
	for name, n := range c.creates {
		if n != 1 {
			bad = append(bad, fmt.Sprintf("%s created %d times", name, n))
		}
	}
	for name, n := range c.updates {
		bad = append(bad, fmt.Sprintf("%s updated %d times", name, n))
	}
	for name, n := range c.deletes {
		bad = append(bad, fmt.Sprintf("%s deleted %d times", name, n))
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return fmt.Errorf("Secrets written more than once: %v", bad)
}

func (c writeCounts) String() string {
	secrets := map[string]bool{}
	sum := func(m map[string]int) (n int) {
		for k, v := range m {
			secrets[k] = true
			n += v
		}
		return n
	}
	creates, updates, deletes := sum(c.creates), sum(c.updates), sum(c.deletes)
	return fmt.Sprintf("%d Secrets written: %d creates, %d updates, %d deletes", len(secrets), creates, updates, deletes)
}
