package main

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/ca/castore"
	"github.com/meshca/meshca/internal/daemontest"
	"github.com/meshca/meshca/internal/testenv"
)

// loads is a CA store whose Load returns its states in turn, then errors.
type loads struct {
	mu     sync.Mutex
	states []*ca.State
	calls  chan struct{}
}

func (l *loads) Load(context.Context) (*ca.State, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer func() { l.calls <- struct{}{} }()
	if len(l.states) == 0 {
		return nil, errors.New("gone")
	}
	st := l.states[0]
	l.states = l.states[1:]
	return st, nil
}

// TestCAFollower checks the follower's loop with a fake clock: nothing is
// read before the interval, each read replaces live, a failed read keeps
// the last state, and election stops it.
func TestCAFollower(t *testing.T) {
	t.Parallel()
	states := make([]*ca.State, 3)
	for i := range states {
		states[i] = &ca.State{}
	}
	store := &loads{states: states[1:], calls: make(chan struct{})}
	live := &atomic.Pointer[ca.State]{}
	live.Store(states[0])
	clk := clocktesting.NewFakeClock(time.Now())
	elected := make(chan struct{})
	f := &caFollower{store: store, observe: live.Store, elected: elected, interval: 10 * time.Second, clock: clk}
	done := make(chan error)
	go func() { done <- f.Start(t.Context()) }()

	step := func(want *ca.State) {
		t.Helper()
		for !clk.HasWaiters() {
			time.Sleep(time.Millisecond)
		}
		clk.Step(9 * time.Second)
		select {
		case <-store.calls:
			t.Fatal("the CA Secret was read before the interval")
		case <-time.After(10 * time.Millisecond):
		}
		clk.Step(time.Second)
		<-store.calls
		deadline := time.Now().Add(10 * time.Second)
		for live.Load() != want {
			if time.Now().After(deadline) {
				t.Fatal("live did not follow the read")
			}
			time.Sleep(time.Millisecond)
		}
	}
	step(states[1])
	step(states[2])
	step(states[2]) // the read fails: the last state stays
	close(elected)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the follower did not stop when elected")
	}
}

// TestServeCAMetricsOnStandby runs two replicas and publishes a next CA
// with `meshca ca rotate`: the replica that does not hold the Lease must
// show it in meshca_ca_not_after_timestamp_seconds{slot="next"} within
// the CA poll interval, as the leader does, instead of the CA it loaded
// at start.
func TestServeCAMetricsOnStandby(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	args := daemontest.WithFlags(daemontest.ServeArgs(env, ns),
		"--leader-election-lease-duration=6s",
		"--leader-election-renew-deadline=4s",
		"--leader-election-retry-period=1s",
	)
	replicas := []*daemontest.Daemon{daemontest.Start(t, "replica-0", args), daemontest.Start(t, "replica-1", args)}
	leader, _ := daemontest.WaitLeader(t, env, ns, replicas, "", time.Minute)
	standby := replicas[0]
	if standby == leader {
		standby = replicas[1]
	}
	standby.WaitReady(t, time.Minute)
	if _, ok := standby.Metrics(t).Value("meshca_ca_not_after_timestamp_seconds", "slot=next", "cert=intermediate"); ok {
		t.Fatal("the standby shows a next CA before any was published")
	}

	out, err := run(t, "ca", "rotate", "--kubeconfig", env.Kubeconfig, "--namespace", ns, "--activate-after", "1h")
	if err != nil {
		t.Fatalf("ca rotate: %v\n%s", err, out)
	}
	published, err := castore.Secret{Client: env.Clientset, Namespace: ns}.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if published.Next == nil {
		t.Fatal("ca rotate published no next CA")
	}
	want := map[string]float64{
		"root":         float64(published.Next.Root.NotAfter.Unix()),
		"intermediate": float64(published.Next.Intermediate.NotAfter.Unix()),
	}
	began := time.Now()
	for _, d := range []*daemontest.Daemon{standby, leader} {
		daemontest.Eventually(t, 30*time.Second, d.Name+" shows the next CA", func(ctx context.Context) (bool, error) {
			got := daemontest.ParseSamples(d.MetricsText(t))
			for cert, v := range want {
				if g, ok := got.Value("meshca_ca_not_after_timestamp_seconds", "slot=next", "cert="+cert); !ok || g != v {
					return false, nil
				}
			}
			return true, nil
		})
		t.Logf("%s shows the next CA %v after ca rotate", d.Name, time.Since(began).Round(100*time.Millisecond))
	}
	if v, _ := standby.Metrics(t).Value("meshca_leader"); v != 0 {
		t.Errorf("%s reports meshca_leader %s, want 0: the test did not check a standby", standby.Name, strconv.FormatFloat(v, 'g', -1, 64))
	}
}
