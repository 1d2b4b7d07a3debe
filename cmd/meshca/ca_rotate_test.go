package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/ca/castore"
	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/rotator"
)

// conflictStore holds a state in memory and answers the first conflicts
// saves with ErrConflict, as if another writer got there first.
type conflictStore struct {
	mu        sync.Mutex
	st        *ca.State
	rv        int
	conflicts int
}

func (s *conflictStore) Load(context.Context) (*ca.State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := s.st.Clone()
	cp.ResourceVersion = fmt.Sprint(s.rv)
	return cp, nil
}

func (s *conflictStore) Save(_ context.Context, st *ca.State) (*ca.State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conflicts > 0 {
		s.conflicts--
		s.rv++ // the other writer's update
		return nil, fmt.Errorf("fake: %w", ca.ErrConflict)
	}
	if st.ResourceVersion != fmt.Sprint(s.rv) {
		return nil, fmt.Errorf("fake: stale %s: %w", st.ResourceVersion, ca.ErrConflict)
	}
	s.rv++
	s.st = st.Clone()
	cp := st.Clone()
	cp.ResourceVersion = fmt.Sprint(s.rv)
	return cp, nil
}

func TestRotateCAConflicts(t *testing.T) {
	t.Parallel()
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	cases := map[string]struct {
		conflicts int
		wantErr   bool
	}{
		"no conflict":                {0, false},
		"one conflict, retried":      {1, false},
		"two conflicts, clear error": {2, true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cur, err := ca.New(ca.Config{Clock: clk, KeyAlgorithm: ca.ECDSAP384, TrustDomain: "example.org"})
			if err != nil {
				t.Fatal(err)
			}
			store := &conflictStore{st: ca.NewState(cur, "generated", clk.Now()), conflicts: tc.conflicts}
			st, err := rotateCA(context.Background(), store, clk, 2*time.Hour, false)
			if tc.wantErr {
				if !errors.Is(err, ca.ErrConflict) || !strings.Contains(err.Error(), "try again") {
					t.Fatalf("rotateCA = %v, want a conflict error that says to try again", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.Next == nil || st.Current.Fingerprint() != cur.Fingerprint() {
				t.Fatal("rotateCA did not publish a next CA beside the current one")
			}
			if alg, _ := ca.KeyAlgorithmOf(st.Next.Intermediate.PublicKey); alg != ca.ECDSAP384 {
				t.Errorf("next CA key algorithm %s, want ecdsa-p384", alg)
			}
			if got := st.Next.Intermediate.Subject.OrganizationalUnit; len(got) != 1 || got[0] != "example.org" {
				t.Errorf("next CA trust domain %v, want example.org", got)
			}
			if at := st.Record.Next.ActivateAt; at == nil || !at.Equal(clk.Now().Add(2*time.Hour)) {
				t.Errorf("activateAt %v, want now+2h", at)
			}
		})
	}
}

// TestCARotateOnAPIServer runs `meshca ca rotate` against the real API
// server while a CA rotator runs: the rotator picks the next CA up within
// its poll interval; stopped and restarted before the forced activation
// time (a restart mid-rotation), the new rotator activates the next CA at
// the time recorded in the Secret, without minting another one.
func TestCARotateOnAPIServer(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	ctx := t.Context()
	store := castore.Secret{Client: env.Clientset, Namespace: ns}
	first, err := store.LoadOrCreate(ctx, ca.Config{TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		mu     sync.Mutex
		states []*ca.State
	}
	startRotator := func(s *seen) (stop func()) {
		r, err := rotator.NewCARotator(rotator.CARotatorConfig{
			Store:        store,
			PollInterval: 200 * time.Millisecond,
			// The test checks activation at the recorded time by a rotator
			// started seconds before it; the publish grace has its own test.
			PublishGrace: -1,
			NewCA: func(*ca.CA) (*ca.CA, error) {
				return nil, errors.New("the rotator must not create a CA in this test")
			},
			OnChange: func(_ context.Context, st *ca.State) error {
				s.mu.Lock()
				defer s.mu.Unlock()
				s.states = append(s.states, st)
				return nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Start(rctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("rotator: %v", err)
			}
		}
	}
	waitFor := func(s *seen, what string, cond func(*ca.State) bool) *ca.State {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			s.mu.Lock()
			for _, st := range s.states {
				if cond(st) {
					s.mu.Unlock()
					return st
				}
			}
			s.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for the rotator to see %s", what)
		return nil
	}

	r1 := &seen{}
	stop1 := startRotator(r1)
	waitFor(r1, "the first CA", func(st *ca.State) bool { return st.Next == nil })

	// Publish with a distant activation, then bring it forward: the same
	// next CA is kept, only its activation time moves.
	out, err := run(t, "ca", "rotate", "--kubeconfig", env.Kubeconfig, "--namespace", ns, "--activate-after", "1h")
	if err != nil {
		t.Fatalf("ca rotate: %v\n%s", err, out)
	}
	published, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if published.Next == nil || published.Current.Fingerprint() != first.Current.Fingerprint() {
		t.Fatalf("after ca rotate the Secret holds current %s, next %v", published.Current.Fingerprint(), published.Next)
	}
	if !strings.Contains(out, published.Next.Fingerprint()) {
		t.Errorf("ca rotate output does not name the next CA:\n%s", out)
	}
	out, err = run(t, "ca", "rotate", "--kubeconfig", env.Kubeconfig, "--namespace", ns, "--activate-after", "4s")
	if err != nil {
		t.Fatalf("second ca rotate: %v\n%s", err, out)
	}
	rescheduled, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := published.Next.Fingerprint()
	if rescheduled.Next == nil || rescheduled.Next.Fingerprint() != next {
		t.Fatalf("second ca rotate replaced the published next CA")
	}
	activateAt := *rescheduled.Record.Next.ActivateAt
	t.Logf("ca rotate published next CA %s, to activate at %s", next[:12], activateAt.Format(time.RFC3339Nano))

	got := waitFor(r1, "the published next CA", func(st *ca.State) bool {
		return st.Next != nil && st.Next.Fingerprint() == next && st.Record.Next.ActivateAt != nil && st.Record.Next.ActivateAt.Equal(activateAt)
	})
	if len(got.Roots()) != 2 {
		t.Errorf("bundle has %d roots after publishing, want 2", len(got.Roots()))
	}

	// Restart mid-rotation: the first rotator stops before activation.
	stop1()
	if st, _ := store.Load(ctx); st.Current.Fingerprint() != first.Current.Fingerprint() {
		t.Fatal("activated before the recorded time")
	}
	r2 := &seen{}
	stop2 := startRotator(r2)
	defer stop2()
	activated := waitFor(r2, "the activation", func(st *ca.State) bool { return st.Current.Fingerprint() == next })
	at := *activated.Record.Current.ActivatedAt
	if at.Before(activateAt) || at.After(activateAt.Add(2*time.Second)) {
		t.Errorf("activated at %s, recorded activation time %s", at.Format(time.RFC3339Nano), activateAt.Format(time.RFC3339Nano))
	}
	if activated.Previous == nil || activated.Previous.Fingerprint() != first.Current.Fingerprint() || len(activated.Roots()) != 2 {
		t.Errorf("after activation the old CA must stay in the bundle as previous")
	}
	if p := activated.Record.Previous.PruneAt; p == nil || !p.Equal(at.Add(rotator.DefaultMaxLeafLifetime)) {
		t.Errorf("previous prune time %v, want activation + %s", p, rotator.DefaultMaxLeafLifetime)
	}
	t.Logf("restarted rotator activated %s at %s (recorded %s)", next[:12], at.Format(time.RFC3339Nano), activateAt.Format(time.RFC3339Nano))
}
