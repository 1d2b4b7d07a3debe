package authority

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/meshca/meshca/ca"
)

// Stage is when in Apply a subscriber runs. Stages run in their declared
// order; the subscribers of one stage in the order they subscribed.
type Stage int

const (
	// StagePublish: the trust bundles hold the new state's roots. The
	// Authority's own Trusts are published here, before any subscriber of
	// this stage runs; subscribers of the stage publish what the Authority
	// does not hold itself.
	StagePublish Stage = iota
	// StageSign: the signers switch to the state's current CA. Everything a
	// new CA signs is trusted by every bundle by then.
	StageSign
	// StageFollow: after bundles and signers, whoever acts on a change:
	// pokes to the caBundle syncer and the serving certificate, resyncs of
	// every managed Secret and bundle.
	StageFollow
)

func (s Stage) String() string {
	switch s {
	case StagePublish:
		return "publish"
	case StageSign:
		return "sign"
	case StageFollow:
		return "follow"
	}
	return fmt.Sprintf("Stage(%d)", int(s))
}

// Subscriber is told of each state the Authority applies.
type Subscriber struct {
	// Name says who it is in errors.
	Name  string
	Stage Stage
	// Apply receives the new state. An error stops Apply: the later
	// subscribers do not run, and the caller retries the whole Apply.
	Apply func(ctx context.Context, st *ca.State) error
}

// Authority holds the CA state in force and the bundles it implies, and
// applies each change to its subscribers in order (see Stage). Its zero
// value is not ready: use New.
type Authority struct {
	mu     sync.Mutex // serializes Apply
	trusts []*Trust
	subs   []Subscriber
	first  atomic.Bool // the first Apply has completed
	state  atomic.Pointer[ca.State]
}

// New returns an Authority whose state, until the first Apply, is initial
// (nil means none). initial is what the metrics show and nothing more: no
// bundle is published and no writer released until Apply.
func New(initial *ca.State) *Authority {
	a := &Authority{}
	if initial != nil {
		a.state.Store(initial)
	}
	return a
}

// State returns the CA state in force: the last applied or observed.
func (a *Authority) State() *ca.State { return a.state.Load() }

// Observe records st as the state in force without applying it: a
// replica that does not lead follows the CA Secret this way for its
// metrics. It is ignored once this replica has applied a state.
func (a *Authority) Observe(st *ca.State) {
	if st == nil || a.first.Load() {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.first.Load() {
		a.state.Store(st)
	}
}

// Publish adds a trust bundle that every Apply fills with the state's
// roots (and extra's, after them) in StagePublish. Its readers wait until
// the end of the first Apply. Call it before the first Apply.
func (a *Authority) Publish(extra ...*Trust) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.trusts = append(a.trusts, extra...)
}

// Subscribe adds s. Call it before the first Apply.
func (a *Authority) Subscribe(s ...Subscriber) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.subs = append(a.subs, s...)
}

// ErrNoState means Apply was given no usable state.
var ErrNoState = errors.New("no CA state to apply")

// Apply makes st the state in force: every bundle is published from it,
// then the signers switch to its current CA, then the followers run. A
// bundle that cannot be built (st without roots) fails Apply before
// anything changes. At the end of the first successful Apply the bundles
// are released to their readers, so nothing waiting for a bundle writes
// before the signers hold the same state.
func (a *Authority) Apply(ctx context.Context, st *ca.State) error {
	if st == nil || st.Current == nil {
		return ErrNoState
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	snaps := make([]*Snapshot, len(a.trusts))
	bundle := st.Bundle()
	for i, t := range a.trusts {
		s, err := t.build(bundle)
		if err != nil {
			return fmt.Errorf("apply CA %s: %w", st.Current.Fingerprint(), err)
		}
		snaps[i] = s
	}
	a.state.Store(st)
	for i, t := range a.trusts {
		t.v.Store(snaps[i])
	}
	for _, stage := range []Stage{StagePublish, StageSign, StageFollow} {
		if stage == StageFollow && !a.first.Load() {
			// The first state: bundles and signers agree now.
			for _, t := range a.trusts {
				t.release()
			}
			a.first.Store(true)
		}
		for _, s := range a.subs {
			if s.Stage != stage {
				continue
			}
			if err := s.Apply(ctx, st); err != nil {
				return fmt.Errorf("apply CA %s: %s (%s): %w", st.Current.Fingerprint(), s.Name, stage, err)
			}
		}
	}
	return nil
}
