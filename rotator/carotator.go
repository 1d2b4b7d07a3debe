package rotator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca"
)

// DefaultCAPollInterval is how often the CA rotator re-reads the CA Secret
// when no step is due sooner, to pick up `meshca ca rotate` and other
// replicas' writes.
const DefaultCAPollInterval = 10 * time.Second

// DefaultCAPublishGrace is how long a next CA stays in the trust bundle, as
// published by this replica, before it may start signing: time for the
// bundle ConfigMaps to reach kubelet's mounted copies and for consumers to
// reload them. It matters when the replica that prepared the next CA died
// before publishing it and its successor finds the activation time passed.
const DefaultCAPublishGrace = 2 * time.Minute

// CAStore loads and saves the CA state; castore.Secret is one. Save must
// refuse a state whose ResourceVersion is stale with an error wrapping
// ca.ErrConflict, create the store for an empty ResourceVersion (an error
// wrapping ca.ErrAlreadyExists if it exists), and Load must report a
// missing store with an error wrapping ca.ErrNotFound.
type CAStore interface {
	Load(ctx context.Context) (*ca.State, error)
	Save(ctx context.Context, st *ca.State) (*ca.State, error)
}

// CARotatorConfig configures a CARotator. Zero fields mean the documented
// defaults.
type CARotatorConfig struct {
	// Store holds the CA state; required.
	Store CAStore
	// NewCA creates the successor of current when the next CA is prepared;
	// nil means ca.New(ca.SuccessorConfig(current, Clock)).
	NewCA func(current *ca.CA) (*ca.CA, error)
	// Policy is the rotation schedule.
	Policy CAPolicy
	// Clock is the time source; nil means the real clock.
	Clock clock.Clock
	// PollInterval is the longest time between two reads of the store;
	// 0 means DefaultCAPollInterval.
	PollInterval time.Duration
	// RetryInterval is the wait after a failed load or save; 0 means 5s
	// (never more than PollInterval).
	RetryInterval time.Duration
	// OnChange is called with every state the rotator saves or reads that
	// differs from the last one it knew, and once at start. It should make
	// the issuer sign with the state's Current CA and publish its Bundle;
	// an error is logged and the state is offered again at the next change.
	OnChange func(ctx context.Context, st *ca.State) error
	// PublishGrace is the least time between this rotator first handing a
	// state with a given next CA to OnChange (which publishes it in the
	// bundles) and activating that CA; 0 means DefaultCAPublishGrace, a
	// negative value none. It never delays activation past the current
	// CA's expiry.
	PublishGrace time.Duration
	// Inventory, when set, is asked before a retired CA leaves the bundle:
	// the prune waits until the last leaf that CA signed has expired (never
	// past the CA's own expiry), and an error from it delays the prune.
	// nil prunes at the recorded prune time.
	Inventory LeafInventory
	// OnExternalExpiring is called when the current CA is a bring-your-own
	// CA without a next one and it is past the time meshca would have
	// prepared its successor (ExternalExpiring): meshca does not replace
	// such a CA, so its owner must. It is called at that time and again
	// every ExternalWarnInterval while it holds. nil does nothing.
	OnExternalExpiring func(ctx context.Context, st *ca.State, notAfter time.Time)
	// ExternalWarnInterval is the least time between two calls of
	// OnExternalExpiring for the same CA; 0 means DefaultExternalWarnInterval.
	ExternalWarnInterval time.Duration
	// Log receives what the rotator does; the zero Logger discards it.
	Log logr.Logger
}

// DefaultExternalWarnInterval is how often the CA rotator repeats its
// warning about a bring-your-own CA nearing its end.
const DefaultExternalWarnInterval = time.Hour

// CARotator runs the CA rotation schedule against a store: it prepares,
// activates and prunes CAs when NextCAStep says so, each step a Save with
// the resourceVersion it read, so concurrent writers (another replica, the
// CLI) never lose an update. It runs only on the leader.
type CARotator struct {
	cfg CARotatorConfig
	// published is when this rotator first offered each next CA (by
	// fingerprint) to OnChange; only the rotator's goroutine uses it.
	published map[string]time.Time
	// warned is when OnExternalExpiring was last called for each current
	// CA (by fingerprint); only the rotator's goroutine uses it.
	warned map[string]time.Time
}

// NewCARotator checks cfg and fills its defaults.
func NewCARotator(cfg CARotatorConfig) (*CARotator, error) {
	if cfg.Store == nil {
		return nil, errors.New("CA rotator: no store")
	}
	p, err := cfg.Policy.WithDefaults()
	if err != nil {
		return nil, fmt.Errorf("CA rotator: %w", err)
	}
	cfg.Policy = p
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultCAPollInterval
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = 5 * time.Second
	}
	if cfg.RetryInterval > cfg.PollInterval {
		cfg.RetryInterval = cfg.PollInterval
	}
	if cfg.NewCA == nil {
		clk := cfg.Clock
		cfg.NewCA = func(cur *ca.CA) (*ca.CA, error) {
			c, err := ca.SuccessorConfig(cur, clk)
			if err != nil {
				return nil, err
			}
			return ca.New(c)
		}
	}
	if cfg.OnChange == nil {
		cfg.OnChange = func(context.Context, *ca.State) error { return nil }
	}
	if cfg.PublishGrace == 0 {
		cfg.PublishGrace = DefaultCAPublishGrace
	}
	if cfg.ExternalWarnInterval <= 0 {
		cfg.ExternalWarnInterval = DefaultExternalWarnInterval
	}
	return &CARotator{cfg: cfg, published: map[string]time.Time{}, warned: map[string]time.Time{}}, nil
}

// Start loads the state, then takes every due step and waits for the next
// one (or the poll interval) on the clock, until ctx is done; it then
// returns nil. It returns an error only when the store holds no usable CA
// at start. If the store's CA disappears while running, the rotator writes
// the state it holds back (it never creates a new CA for it).
func (r *CARotator) Start(ctx context.Context) error {
	st, err := r.cfg.Store.Load(ctx)
	if err != nil {
		return fmt.Errorf("CA rotator: %w", err)
	}
	r.changed(ctx, st)
	for {
		var wait time.Duration
		st, wait = r.tick(ctx, st)
		if ctx.Err() != nil {
			return nil
		}
		t := r.cfg.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
		st = r.reload(ctx, st)
	}
}

// tick takes the steps due now and returns the state and how long to wait.
func (r *CARotator) tick(ctx context.Context, st *ca.State) (*ca.State, time.Duration) {
	// Bounded: each iteration saves a step or gives up; a chain of due
	// steps is at most prune, activate, prepare (and a conflict re-decides).
	for range 10 {
		now := r.cfg.Clock.Now()
		step, at := NextCAStep(now, ViewOf(st), r.cfg.Policy)
		if step == CAStepActivateNext {
			at = r.notBeforePublished(st, at)
		}
		if step == CAStepNone || at.After(now) {
			wait := r.cfg.PollInterval
			if step != CAStepNone && at.Sub(now) < wait {
				wait = at.Sub(now)
			}
			if warnIn, ok := r.warnExternal(ctx, st, now); ok && warnIn < wait {
				wait = warnIn
			}
			return st, wait
		}
		var (
			next *ca.State
			err  error
			held bool
		)
		if step == CAStepPrunePrevious {
			next, held, err = r.holdPrevious(ctx, st, at, now)
		}
		if !held && err == nil {
			next, err = r.apply(st, step, now)
		}
		if err != nil {
			r.cfg.Log.Error(err, "CA rotation step failed", "step", step.String())
			return st, r.cfg.RetryInterval
		}
		saved, err := r.cfg.Store.Save(ctx, next)
		switch {
		case err == nil && held:
			r.cfg.Log.Info("retired CA kept in the bundle until the last leaf it signed expires",
				"previous", saved.Previous.Fingerprint(), "pruneAt", *saved.Record.Previous.PruneAt)
			st = saved
			r.changed(ctx, st)
		case err == nil:
			r.cfg.Log.Info("CA rotation step taken", "step", step.String(), "due", at, "current", saved.Current.Fingerprint())
			st = saved
			r.changed(ctx, st)
		case errors.Is(err, ca.ErrConflict):
			// Someone else wrote (another replica, `meshca ca rotate`):
			// decide again on what is stored now.
			r.cfg.Log.Info("CA changed while rotating; re-reading it", "step", step.String())
			st = r.reload(ctx, st)
		case errors.Is(err, ca.ErrNotFound):
			st = r.reload(ctx, st)
		default:
			r.cfg.Log.Error(err, "save CA rotation step", "step", step.String())
			return st, r.cfg.RetryInterval
		}
		if ctx.Err() != nil {
			return st, 0
		}
	}
	return st, r.cfg.RetryInterval
}

// holdPrevious decides whether the retired CA of st, due to be pruned at
// pruneAt, must stay because leaves it signed are still valid. held means
// next is st with a later prune time, to be saved instead of the prune. An
// error means the inventory could not tell: the prune waits (fail safe).
func (r *CARotator) holdPrevious(ctx context.Context, st *ca.State, pruneAt, now time.Time) (next *ca.State, held bool, err error) {
	prev := ViewOf(st).Previous
	if r.cfg.Inventory == nil || prev == nil || !now.Before(prev.NotAfter) {
		// Nothing to ask, or the CA has expired and so has every leaf.
		return nil, false, nil
	}
	last, err := r.cfg.Inventory.LatestNotAfter(ctx, st.Previous.Intermediate)
	if err != nil {
		return nil, false, fmt.Errorf("keep retired CA %s in the bundle: cannot tell whether leaves it signed remain: %w", st.Previous.Fingerprint(), err)
	}
	t := PruneHold(*prev, pruneAt, last)
	if !t.After(now) {
		return nil, false, nil
	}
	next, err = st.WithPruneAt(t)
	return next, err == nil, err
}

// warnExternal calls OnExternalExpiring when due (see ExternalExpiring) and
// returns how long until it is next due; ok is false when it never is.
func (r *CARotator) warnExternal(ctx context.Context, st *ca.State, now time.Time) (time.Duration, bool) {
	v := ViewOf(st)
	at, ok := ExternalExpiring(v, r.cfg.Policy)
	if !ok {
		return 0, false
	}
	fp := st.Current.Fingerprint()
	if last, seen := r.warned[fp]; seen && last.Add(r.cfg.ExternalWarnInterval).After(at) {
		at = last.Add(r.cfg.ExternalWarnInterval)
	}
	if at.After(now) {
		return at.Sub(now), true
	}
	r.warned[fp] = now
	r.cfg.Log.Info("bring-your-own CA nears its end and meshca does not replace it: load its successor as the next CA",
		"current", fp, "notAfter", v.Current.NotAfter)
	if r.cfg.OnExternalExpiring != nil {
		r.cfg.OnExternalExpiring(ctx, st, v.Current.NotAfter)
	}
	return r.cfg.ExternalWarnInterval, true
}

// apply computes the state after step.
func (r *CARotator) apply(st *ca.State, step CAStep, now time.Time) (*ca.State, error) {
	switch step {
	case CAStepPrunePrevious:
		return st.WithoutPrevious(), nil
	case CAStepActivateNext:
		cur := ViewOf(st).Current
		return st.ActivateNext(now, PruneTime(cur, now, r.cfg.Policy))
	case CAStepPrepareNext:
		c, err := r.cfg.NewCA(st.Current)
		if err != nil {
			return nil, fmt.Errorf("create next CA: %w", err)
		}
		return st.WithNext(c, ca.SourceGenerated, now, nil), nil
	}
	return nil, fmt.Errorf("unknown CA step %v", step)
}

// reload reads the store. A store whose CA has gone is written back from
// st; any other failure keeps st.
func (r *CARotator) reload(ctx context.Context, st *ca.State) *ca.State {
	loaded, err := r.cfg.Store.Load(ctx)
	switch {
	case err == nil:
		if loaded.ResourceVersion != st.ResourceVersion {
			r.changed(ctx, loaded)
		}
		return loaded
	case errors.Is(err, ca.ErrNotFound):
		if ctx.Err() != nil {
			return st
		}
		r.cfg.Log.Info("CA store is gone; writing back the CA held in memory")
		cp := st.Clone()
		cp.ResourceVersion = ""
		saved, err := r.cfg.Store.Save(ctx, cp)
		if err != nil {
			// ErrAlreadyExists: someone else re-created it; read it next time.
			r.cfg.Log.Error(err, "re-create CA store")
			return st
		}
		return saved
	default:
		if ctx.Err() == nil {
			r.cfg.Log.Error(err, "reload CA")
		}
		return st
	}
}

// notBeforePublished moves an activation at `at` to the end of the publish
// grace of st's next CA, capped at the current CA's expiry.
func (r *CARotator) notBeforePublished(st *ca.State, at time.Time) time.Time {
	if r.cfg.PublishGrace < 0 || st.Next == nil {
		return at
	}
	seen, ok := r.published[st.Next.Fingerprint()]
	if !ok {
		// Not yet offered to OnChange (cannot happen: every state the
		// rotator decides on went through changed first); wait a grace.
		seen = r.cfg.Clock.Now()
	}
	t := seen.Add(r.cfg.PublishGrace)
	if st.Current != nil && st.Current.Root != nil {
		if end := ViewOf(st).Current.NotAfter; end.Before(t) {
			t = end
		}
	}
	if t.After(at) {
		return t
	}
	return at
}

func (r *CARotator) changed(ctx context.Context, st *ca.State) {
	if st.Next != nil {
		if fp := st.Next.Fingerprint(); r.published[fp].IsZero() {
			r.published[fp] = r.cfg.Clock.Now()
		}
	}
	if err := r.cfg.OnChange(ctx, st); err != nil {
		r.cfg.Log.Error(err, "apply CA change")
	}
}
