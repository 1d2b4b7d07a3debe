package rotator

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestNewAuditRejectsBadSpec(t *testing.T) {
	t.Parallel()
	for _, spec := range []string{"every 5m", "* * *", "@every -1m", "61 * * * *"} {
		if _, err := NewAudit(AuditConfig{Schedule: spec, Sweep: func(context.Context) {}}); err == nil {
			t.Errorf("NewAudit(%q) accepted a bad spec", spec)
		}
	}
}

func TestAuditRunsOnSchedule(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		spec  string
		step  time.Duration
		steps int
		want  int64
	}{
		"every 5m, 31 minutes":       {"@every 5m", time.Minute, 31, 6},
		"default, 10 minutes":        {"", time.Minute, 10, 2},
		"hourly cron, 3 hours":       {"0 * * * *", 10 * time.Minute, 18, 3},
		"every 30s, 1 minute in 10s": {"@every 30s", 10 * time.Second, 6, 2},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			var sweeps atomic.Int64
			swept := make(chan struct{}, 100)
			a, err := NewAudit(AuditConfig{Schedule: tc.spec, Clock: clk, Sweep: func(context.Context) {
				sweeps.Add(1)
				swept <- struct{}{}
			}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- a.Start(ctx) }()
			for range tc.steps {
				waitForWaiter(t, clk)
				before := sweeps.Load()
				fire := clk.Now().Add(tc.step).Compare(a.Next(clk.Now())) >= 0
				clk.Step(tc.step)
				if fire {
					select {
					case <-swept:
					case <-time.After(5 * time.Second):
						t.Fatalf("sweep %d did not run", before+1)
					}
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Start: %v", err)
			}
			if got := sweeps.Load(); got != tc.want {
				t.Errorf("sweeps = %d, want %d", got, tc.want)
			}
		})
	}
}

// waitForWaiter waits until the audit loop is blocked on the fake clock.
func waitForWaiter(t *testing.T, clk *clocktesting.FakeClock) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !clk.HasWaiters() {
		if time.Now().After(deadline) {
			t.Fatal("audit loop never waited on the clock")
		}
		time.Sleep(time.Millisecond)
	}
}
