package authority

import (
	"context"
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca"
)

// call is one subscriber call as a fake subscriber saw it.
type call struct {
	name  string
	stage Stage
	// current is the fingerprint of the state's current CA.
	current string
	// published says, per Trust of the Authority, whether its bundle held
	// every root of the state at the time of the call.
	published []bool
	// released says, per Trust, whether its readers had been let go.
	released []bool
}

// recorder holds fake subscribers of every stage and the calls they saw.
type recorder struct {
	trusts []*Trust
	calls  []call
	// fail, when set, makes the named subscriber fail once.
	fail string
	// signs counts the calls of StageSign subscribers.
	signs atomic.Int32
}

func (r *recorder) subscriber(name string, stage Stage) Subscriber {
	return Subscriber{Name: name, Stage: stage, Apply: func(_ context.Context, st *ca.State) error {
		c := call{name: name, stage: stage, current: st.Current.Fingerprint()}
		for _, t := range r.trusts {
			c.published = append(c.published, holdsAll(t, st.Roots()))
			c.released = append(c.released, t.PEM() != nil)
		}
		r.calls = append(r.calls, c)
		if stage == StageSign {
			r.signs.Add(1)
		}
		if r.fail == name {
			r.fail = ""
			return errors.New("fake failure")
		}
		return nil
	}}
}

// holdsAll reports whether t's bundle, released or not, holds every root.
func holdsAll(t *Trust, roots []*x509.Certificate) bool {
	s := t.v.Load()
	if s == nil {
		return false
	}
	certs, err := ca.ParseCertificatesPEM(s.PEM)
	if err != nil {
		return false
	}
	for _, r := range roots {
		if !slices.ContainsFunc(certs, r.Equal) {
			return false
		}
	}
	return true
}

// newAuthority returns an Authority with two Trusts (one with an extra
// root, as with step-ca) and two subscribers per stage, subscribed out of
// stage order.
func newAuthority(t *testing.T, extra *x509.Certificate) (*Authority, *recorder) {
	t.Helper()
	r := &recorder{trusts: []*Trust{{Extra: []*x509.Certificate{extra}}, {}}}
	a := New(nil)
	a.Publish(r.trusts...)
	a.Subscribe(
		r.subscriber("follow-1", StageFollow),
		r.subscriber("sign-1", StageSign),
		r.subscriber("publish-1", StagePublish),
		r.subscriber("sign-2", StageSign),
		r.subscriber("follow-2", StageFollow),
		r.subscriber("publish-2", StagePublish),
	)
	return a, r
}

func newCA(t *testing.T, clk *clocktesting.FakeClock) *ca.CA {
	t.Helper()
	c, err := ca.New(ca.Config{Clock: clk, IntermediateLifetime: 24 * time.Hour, RootLifetime: 240 * time.Hour, Backdate: -1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustState(t *testing.T) func(*ca.State, error) *ca.State {
	return func(st *ca.State, err error) *ca.State {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
}

// TestApplyOrderEveryTransition applies, on a fake clock, every transition
// the CA rotator makes and checks each against the rule the Authority
// exists for: every bundle holds the state's roots before any signer
// switches (so nothing a CA signs appears untrusted), subscribers run
// stage by stage in subscription order, and no reader of a bundle is let
// go before the first state's signers are set.
func TestApplyOrderEveryTransition(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC))
	other := newCA(t, clk) // stands in for step-ca's root
	a, rec := newAuthority(t, other.Root)
	must := mustState(t)

	first := ca.NewState(newCA(t, clk), ca.SourceGenerated, clk.Now())
	clk.Step(16 * time.Hour)
	published := first.WithNext(newCA(t, clk), ca.SourceGenerated, clk.Now(), nil)
	clk.Step(2 * time.Hour)
	activated := must(published.ActivateNext(clk.Now(), clk.Now().Add(24*time.Hour)))
	clk.Step(24 * time.Hour)
	pruned := activated.WithoutPrevious()
	byo := newCA(t, clk)
	byoNext := pruned.WithNext(byo, ca.SourceCertManager, clk.Now(), nil)
	byoActive := must(byoNext.ActivateNext(clk.Now(), clk.Now().Add(time.Hour)))

	transitions := []struct {
		name string
		st   *ca.State
	}{
		{"first CA", first},
		{"next published", published},
		{"activation", activated},
		{"prune", pruned},
		// The CA Secret was deleted and the rotator saved what it held:
		// the same state again.
		{"restore after deletion", pruned.Clone()},
		{"BYO import as next", byoNext},
		{"BYO activation", byoActive},
	}
	for i, tr := range transitions {
		rec.calls = nil
		// A reader that waits for the bundle must not come back before the
		// signers of the first state are set.
		woke := make(chan int32, 1)
		if i == 0 {
			go func() {
				if _, err := rec.trusts[1].Snapshot(context.Background()); err != nil {
					woke <- -1
					return
				}
				woke <- rec.signs.Load()
			}()
		}
		if err := a.Apply(context.Background(), tr.st); err != nil {
			t.Fatalf("%s: %v", tr.name, err)
		}
		var order []string
		for _, c := range rec.calls {
			order = append(order, c.name)
			for j := range rec.trusts {
				if !c.published[j] {
					t.Errorf("%s: %s (%s) ran before trust %d held every root of the state", tr.name, c.name, c.stage, j)
				}
				if wantReleased := i > 0 || c.stage == StageFollow; c.released[j] != wantReleased {
					t.Errorf("%s: %s (%s) saw trust %d released=%v, want %v", tr.name, c.name, c.stage, j, c.released[j], wantReleased)
				}
			}
		}
		if got, want := strings.Join(order, ","), "publish-1,publish-2,sign-1,sign-2,follow-1,follow-2"; got != want {
			t.Errorf("%s: order %s, want %s", tr.name, got, want)
		}
		if i == 0 {
			if signs := <-woke; signs != 2 {
				t.Errorf("first CA: a waiting reader woke after %d of 2 signers were set", signs)
			}
		}
		if tr.name == "prune" && holdsAll(rec.trusts[1], []*x509.Certificate{first.Current.Root}) {
			t.Error("prune: the retired CA's root is still in the bundle")
		}
		// The published bundle is exactly the state's roots, then the extra.
		want := append(tr.st.Roots(), other.Root)
		got, err := ca.ParseCertificatesPEM(rec.trusts[0].PEM())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got, want, (*x509.Certificate).Equal) {
			t.Errorf("%s: bundle has %d roots, want %d", tr.name, len(got), len(want))
		}
		if a.State() != tr.st {
			t.Errorf("%s: State() is not the applied state", tr.name)
		}
	}
}

// TestApplyFailure: a subscriber that fails stops the later ones and fails
// Apply; before the first success no reader is released, and the retry of
// the whole Apply (what the CA rotator does) runs every stage again.
func TestApplyFailure(t *testing.T) {
	t.Parallel()
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC))
	a, rec := newAuthority(t, newCA(t, clk).Root)
	st := ca.NewState(newCA(t, clk), ca.SourceGenerated, clk.Now())
	rec.fail = "sign-1"
	err := a.Apply(context.Background(), st)
	if err == nil || !strings.Contains(err.Error(), "sign-1 (sign)") {
		t.Fatalf("Apply with a failing signer: %v, want an error naming it", err)
	}
	var names []string
	for _, c := range rec.calls {
		names = append(names, c.name)
	}
	if got := strings.Join(names, ","); got != "publish-1,publish-2,sign-1" {
		t.Errorf("calls %s, want none after the failing signer", got)
	}
	for i, tr := range rec.trusts {
		if tr.PEM() != nil {
			t.Errorf("trust %d released after a failed first Apply", i)
		}
	}
	rec.calls = nil
	if err := a.Apply(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if len(rec.calls) != 6 {
		t.Errorf("retry made %d calls, want 6", len(rec.calls))
	}
	for i, tr := range rec.trusts {
		if tr.PEM() == nil {
			t.Errorf("trust %d not released after the first successful Apply", i)
		}
	}
}

// TestApplyRefusesNoState: a state without a CA changes nothing.
func TestApplyRefusesNoState(t *testing.T) {
	t.Parallel()
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC))
	a, rec := newAuthority(t, newCA(t, clk).Root)
	st := ca.NewState(newCA(t, clk), ca.SourceGenerated, clk.Now())
	if err := a.Apply(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	before := rec.trusts[0].PEM()
	rec.calls = nil
	for name, bad := range map[string]*ca.State{"nil": nil, "no current": {}} {
		if err := a.Apply(context.Background(), bad); !errors.Is(err, ErrNoState) {
			t.Errorf("%s: Apply = %v, want ErrNoState", name, err)
		}
	}
	if len(rec.calls) != 0 || string(rec.trusts[0].PEM()) != string(before) || a.State() != st {
		t.Error("a refused state changed the bundle, the state or called a subscriber")
	}
}

// TestObserve: a replica that does not lead follows the CA Secret through
// Observe until it applies a state itself; from then on only Apply moves
// the state.
func TestObserve(t *testing.T) {
	t.Parallel()
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC))
	s1 := ca.NewState(newCA(t, clk), ca.SourceGenerated, clk.Now())
	s2 := ca.NewState(newCA(t, clk), ca.SourceGenerated, clk.Now())
	s3 := ca.NewState(newCA(t, clk), ca.SourceGenerated, clk.Now())
	a := New(s1)
	if a.State() != s1 {
		t.Fatal("State() is not the initial state")
	}
	a.Observe(s2)
	if a.State() != s2 {
		t.Fatal("Observe before the first Apply did not move the state")
	}
	if err := a.Apply(context.Background(), s3); err != nil {
		t.Fatal(err)
	}
	a.Observe(s1)
	if a.State() != s3 {
		t.Error("Observe after Apply moved the state")
	}
}

// TestTrustWaitsForApply: a reader of a published Trust waits until the
// first Apply ends, and gives up with its context.
func TestTrustWaitsForApply(t *testing.T) {
	t.Parallel()
	tr := &Trust{}
	a := New(nil)
	a.Publish(tr)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tr.Snapshot(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Snapshot before any Apply = %v, want context.Canceled", err)
	}
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC))
	if err := a.Apply(context.Background(), ca.NewState(newCA(t, clk), ca.SourceGenerated, clk.Now())); err != nil {
		t.Fatal(err)
	}
	s, err := tr.Snapshot(context.Background())
	if err != nil || len(s.PEM) == 0 || s.Pool == nil {
		t.Fatalf("Snapshot after Apply = %v, %v", s, err)
	}
}
