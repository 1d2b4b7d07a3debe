package rotator

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca"
)

// memStore is a CAStore in memory that encodes states in the Secret layout
// (so every load is a real round trip) and checks resource versions the
// way the API server does.
type memStore struct {
	mu    sync.Mutex
	data  map[string][]byte // nil: no CA stored
	rv    int
	saves int
	// beforeSave, when set, runs before each Save (without the lock); it
	// may write to the store to simulate a concurrent writer.
	beforeSave func(m *memStore)
}

func (m *memStore) Load(context.Context) (*ca.State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.data == nil {
		return nil, fmt.Errorf("mem: %w", ca.ErrNotFound)
	}
	st, err := ca.StateFromSecretData(m.data)
	if err != nil {
		return nil, err
	}
	st.ResourceVersion = strconv.Itoa(m.rv)
	return st, nil
}

func (m *memStore) Save(_ context.Context, st *ca.State) (*ca.State, error) {
	if m.beforeSave != nil {
		m.beforeSave(m)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case st.ResourceVersion == "" && m.data != nil:
		return nil, fmt.Errorf("mem: %w", ca.ErrAlreadyExists)
	case st.ResourceVersion != "" && m.data == nil:
		return nil, fmt.Errorf("mem: %w", ca.ErrNotFound)
	case st.ResourceVersion != "" && st.ResourceVersion != strconv.Itoa(m.rv):
		return nil, fmt.Errorf("mem: %w", ca.ErrConflict)
	}
	return m.write(st)
}

// write stores st unconditionally; the caller holds the lock.
func (m *memStore) write(st *ca.State) (*ca.State, error) {
	data, err := st.SecretData()
	if err != nil {
		return nil, err
	}
	m.data, m.rv = data, m.rv+1
	m.saves++
	cp := *st
	cp.ResourceVersion = strconv.Itoa(m.rv)
	return &cp, nil
}

func (m *memStore) state(t *testing.T) *ca.State {
	t.Helper()
	st, err := m.Load(context.Background())
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return st
}

func (m *memStore) delete() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data = nil
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func hours(n float64) time.Duration { return time.Duration(n * float64(time.Hour)) }

// newTestCA creates a CA on clk living life from now, without backdating.
func newTestCA(t *testing.T, clk *clocktesting.FakeClock, life time.Duration) *ca.CA {
	t.Helper()
	c, err := ca.New(ca.Config{Clock: clk, IntermediateLifetime: life, RootLifetime: 10 * life, Backdate: -1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rotatorRun is a CARotator running on a fake clock in the background.
type rotatorRun struct {
	clk     *clocktesting.FakeClock
	store   *memStore
	newCAs  atomic.Int64
	mu      sync.Mutex
	changes []*ca.State
	cancel  context.CancelFunc
	done    chan error
	poll    time.Duration
}

// startRotator runs a rotator over store with a 100h CA life in mind: poll
// hourly, leaves live at most 10h, successors live 100h.
func startRotator(t *testing.T, clk *clocktesting.FakeClock, store *memStore) *rotatorRun {
	t.Helper()
	return startRotatorWith(t, clk, store, nil)
}

// startRotatorWith is startRotator with edit applied to the config.
func startRotatorWith(t *testing.T, clk *clocktesting.FakeClock, store *memStore, edit func(*CARotatorConfig)) *rotatorRun {
	t.Helper()
	rr := &rotatorRun{clk: clk, store: store, done: make(chan error, 1), poll: time.Hour}
	cfg := CARotatorConfig{
		Store: store,
		NewCA: func(*ca.CA) (*ca.CA, error) {
			rr.newCAs.Add(1)
			return newTestCA(t, clk, 100*time.Hour), nil
		},
		Policy:       CAPolicy{MaxLeafLifetime: 10 * time.Hour},
		Clock:        clk,
		PollInterval: rr.poll,
		OnChange: func(_ context.Context, st *ca.State) error {
			rr.mu.Lock()
			defer rr.mu.Unlock()
			rr.changes = append(rr.changes, st)
			return nil
		},
	}
	if edit != nil {
		edit(&cfg)
	}
	r, err := NewCARotator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rr.cancel = cancel
	go func() { rr.done <- r.Start(ctx) }()
	t.Cleanup(func() {
		if err := rr.stop(); err != nil {
			t.Errorf("Start returned %v after its context ended, want nil", err)
		}
	})
	rr.idle(t)
	return rr
}

func (rr *rotatorRun) stop() error {
	if rr.cancel == nil {
		return nil
	}
	rr.cancel()
	rr.cancel = nil
	return <-rr.done
}

// idle waits until the rotator waits on the clock.
func (rr *rotatorRun) idle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !rr.clk.HasWaiters() {
		if time.Now().After(deadline) {
			t.Fatal("the rotator never waited on the clock")
		}
		time.Sleep(time.Millisecond)
	}
}

// advanceTo moves the clock to at in steps of at most the poll interval,
// letting the rotator act at each step.
func (rr *rotatorRun) advanceTo(t *testing.T, at time.Time) {
	t.Helper()
	for rr.clk.Now().Before(at) {
		next := rr.clk.Now().Add(rr.poll)
		if next.After(at) {
			next = at
		}
		rr.clk.SetTime(next)
		rr.idle(t)
	}
}

func (rr *rotatorRun) lastChange(t *testing.T) *ca.State {
	t.Helper()
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if len(rr.changes) == 0 {
		t.Fatal("OnChange was never called")
	}
	return rr.changes[len(rr.changes)-1]
}

func fp(c *ca.CA) string {
	if c == nil {
		return "none"
	}
	return c.Fingerprint()[:8]
}

func roots(st *ca.State) []string {
	var out []string
	for _, r := range st.Roots() {
		out = append(out, ca.Fingerprint(r)[:8])
	}
	return out
}

// slots says which CA is in which slot: "cur/next/prev".
func slots(st *ca.State) string {
	return fp(st.Current) + "/" + fp(st.Next) + "/" + fp(st.Previous)
}

func seed(t *testing.T, clk *clocktesting.FakeClock) (*memStore, *ca.CA) {
	t.Helper()
	a := newTestCA(t, clk, 100*time.Hour)
	store := &memStore{}
	if _, err := store.Save(context.Background(), ca.NewState(a, "generated", clk.Now())); err != nil {
		t.Fatal(err)
	}
	return store, a
}

// TestCARotatorSequence walks a CA through A -> A+B -> B on a fake clock
// and checks each transition happens exactly when due, not a second before.
func TestCARotatorSequence(t *testing.T) {
	t.Parallel()
	clk := clocktesting.NewFakeClock(t0)
	store, a := seed(t, clk)
	rr := startRotator(t, clk, store)
	if got := rr.lastChange(t); fp(got.Current) != fp(a) {
		t.Fatalf("OnChange at start got %s, want current %s", slots(got), fp(a))
	}

	var b *ca.CA
	// Prepare at 50h: B is published but A signs.
	rr.advanceTo(t, t0.Add(hours(50)-time.Second))
	if st := store.state(t); st.Next != nil {
		t.Fatalf("next CA prepared early, at %s", clk.Now().Sub(t0))
	}
	rr.advanceTo(t, t0.Add(hours(50)))
	st := store.state(t)
	if st.Next == nil || fp(st.Current) != fp(a) {
		t.Fatalf("at 50h: slots %s, want current A and a next", slots(st))
	}
	b = st.Next
	if len(st.Roots()) != 2 || !st.Record.Next.CreatedAt.Equal(t0.Add(hours(50))) {
		t.Errorf("at 50h: roots %v, next created %s", roots(st), st.Record.Next.CreatedAt)
	}
	if got := rr.lastChange(t); slots(got) != slots(st) {
		t.Errorf("OnChange got %s, store holds %s", slots(got), slots(st))
	}

	// Activate at 83h20m (5/6 of 100h; 90h would be the latest for 10h leaves).
	activate := t0.Add(83*time.Hour + 20*time.Minute)
	rr.advanceTo(t, activate.Add(-time.Second))
	if st := store.state(t); fp(st.Current) != fp(a) {
		t.Fatalf("activated early, at %s", clk.Now().Sub(t0))
	}
	rr.advanceTo(t, activate)
	st = store.state(t)
	if fp(st.Current) != fp(b) || fp(st.Previous) != fp(a) || st.Next != nil || len(st.Roots()) != 2 {
		t.Fatalf("at activation: slots %s roots %v, want B/none/A with both roots", slots(st), roots(st))
	}
	prune := activate.Add(10 * time.Hour)
	if r := st.Record.Previous; r.RetiredAt == nil || !r.RetiredAt.Equal(activate) || r.PruneAt == nil || !r.PruneAt.Equal(prune) {
		t.Errorf("previous record %+v, want retired at %s, prune at %s", r, activate, prune)
	}
	if r := st.Record.Current; r.ActivatedAt == nil || !r.ActivatedAt.Equal(activate) {
		t.Errorf("current record %+v, want activated at %s", r, activate)
	}

	// Prune 10h (the max leaf lifetime) later.
	rr.advanceTo(t, prune.Add(-time.Second))
	if st := store.state(t); st.Previous == nil {
		t.Fatalf("pruned early, at %s", clk.Now().Sub(t0))
	}
	rr.advanceTo(t, prune)
	st = store.state(t)
	if fp(st.Current) != fp(b) || st.Previous != nil || st.Next != nil || len(st.Roots()) != 1 {
		t.Fatalf("after prune: slots %s roots %v, want B alone", slots(st), roots(st))
	}
	if got := rr.lastChange(t); slots(got) != slots(st) {
		t.Errorf("OnChange got %s, store holds %s", slots(got), slots(st))
	}
	if n := rr.newCAs.Load(); n != 1 {
		t.Errorf("NewCA called %d times, want 1", n)
	}
	// The bundle went {A}, {A,B}, {B}: every OnChange in order.
	var seq []int
	rr.mu.Lock()
	for _, c := range rr.changes {
		seq = append(seq, len(c.Roots()))
	}
	rr.mu.Unlock()
	if fmt.Sprint(seq) != "[1 2 2 1]" {
		t.Errorf("root counts over OnChange calls %v, want [1 2 2 1]", seq)
	}
}

// TestCARotatorResumes restarts the rotator from persisted states in the
// middle of a rotation: it must neither redo a step nor lose a recorded time.
func TestCARotatorResumes(t *testing.T) {
	t.Parallel()
	activate := t0.Add(83*time.Hour + 20*time.Minute)
	cases := map[string]struct {
		// prepare builds the stored state at 60h from A (created at t0).
		prepare   func(t *testing.T, clk *clocktesting.FakeClock, a *ca.CA, st *ca.State) *ca.State
		nextAt    time.Time
		wantSlots func(st, after *ca.State) bool
	}{
		"next published, scheduled activation": {
			prepare: func(t *testing.T, clk *clocktesting.FakeClock, _ *ca.CA, st *ca.State) *ca.State {
				return st.WithNext(newTestCA(t, clk, 100*time.Hour), "generated", t0.Add(hours(50)), nil)
			},
			nextAt: activate,
			wantSlots: func(st, after *ca.State) bool {
				return fp(after.Current) == fp(st.Next) && fp(after.Previous) == fp(st.Current)
			},
		},
		"next published, forced activation": {
			prepare: func(t *testing.T, clk *clocktesting.FakeClock, _ *ca.CA, st *ca.State) *ca.State {
				at := t0.Add(hours(70))
				return st.WithNext(newTestCA(t, clk, 100*time.Hour), "generated", t0.Add(hours(55)), &at)
			},
			nextAt:    t0.Add(hours(70)),
			wantSlots: func(st, after *ca.State) bool { return fp(after.Current) == fp(st.Next) },
		},
		"previous retired, recorded prune": {
			prepare: func(t *testing.T, clk *clocktesting.FakeClock, _ *ca.CA, st *ca.State) *ca.State {
				st = st.WithNext(newTestCA(t, clk, 100*time.Hour), "generated", t0.Add(hours(40)), nil)
				st, err := st.ActivateNext(t0.Add(hours(55)), t0.Add(hours(61)))
				if err != nil {
					t.Fatal(err)
				}
				return st
			},
			nextAt:    t0.Add(hours(61)),
			wantSlots: func(st, after *ca.State) bool { return after.Previous == nil && fp(after.Current) == fp(st.Current) },
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			clk := clocktesting.NewFakeClock(t0)
			store, a := seed(t, clk)
			clk.SetTime(t0.Add(hours(60)))
			st := tc.prepare(t, clk, a, store.state(t))
			if _, err := store.Save(context.Background(), st); err != nil {
				t.Fatal(err)
			}
			before := store.state(t)
			saves := store.saves

			rr := startRotator(t, clk, store)
			if store.saves != saves {
				t.Fatalf("restart wrote the CA at once (%d saves); nothing was due", store.saves-saves)
			}
			if got := rr.lastChange(t); slots(got) != slots(before) {
				t.Errorf("OnChange at start got %s, want the stored %s", slots(got), slots(before))
			}
			rr.advanceTo(t, tc.nextAt.Add(-time.Second))
			if store.saves != saves {
				t.Fatalf("a step was taken before %s", tc.nextAt.Sub(t0))
			}
			rr.advanceTo(t, tc.nextAt)
			after := store.state(t)
			if store.saves != saves+1 || !tc.wantSlots(before, after) {
				t.Fatalf("at %s: slots %s -> %s after %d saves", tc.nextAt.Sub(t0), slots(before), slots(after), store.saves-saves)
			}
			if n := rr.newCAs.Load(); n != 0 {
				t.Errorf("NewCA called %d times on resume", n)
			}
		})
	}
}

// TestCARotatorConflict makes another writer win the race for each step;
// the rotator must re-read and decide again, never overwrite.
func TestCARotatorConflict(t *testing.T) {
	t.Parallel()
	clk := clocktesting.NewFakeClock(t0)
	store, _ := seed(t, clk)
	other := newTestCA(t, clk, 100*time.Hour)
	forced := t0.Add(hours(52))
	var once sync.Once
	store.beforeSave = func(m *memStore) {
		once.Do(func() {
			// Another replica prepared its own next CA, and the CLI forced
			// its activation, between our read and our write.
			st, err := m.Load(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			if _, err := m.write(st.WithNext(other, "generated", clk.Now(), &forced)); err != nil {
				t.Error(err)
			}
		})
	}
	rr := startRotator(t, clk, store)
	rr.advanceTo(t, t0.Add(hours(50)))
	st := store.state(t)
	if fp(st.Next) != fp(other) || st.Record.Next.ActivateAt == nil || !st.Record.Next.ActivateAt.Equal(forced) {
		t.Fatalf("after the conflict: slots %s, want the other writer's next %s kept with its forced time", slots(st), fp(other))
	}
	if got := rr.lastChange(t); fp(got.Next) != fp(other) {
		t.Errorf("OnChange got next %s, want %s", fp(got.Next), fp(other))
	}
	rr.advanceTo(t, forced)
	if st := store.state(t); fp(st.Current) != fp(other) {
		t.Fatalf("at the forced time: slots %s, want %s current", slots(st), fp(other))
	}
}

// TestCARotatorPicksUpExternalChange: `meshca ca rotate` writes a next CA
// with a forced activation time; the running rotator reads it at its next
// poll and activates it when forced.
func TestCARotatorPicksUpExternalChange(t *testing.T) {
	t.Parallel()
	clk := clocktesting.NewFakeClock(t0)
	store, a := seed(t, clk)
	rr := startRotator(t, clk, store)
	rr.advanceTo(t, t0.Add(hours(10)))
	forced := t0.Add(hours(12))
	next := newTestCA(t, clk, 100*time.Hour)
	if _, err := store.Save(context.Background(), store.state(t).WithNext(next, "generated", clk.Now(), &forced)); err != nil {
		t.Fatal(err)
	}
	rr.advanceTo(t, t0.Add(hours(11)))
	if got := rr.lastChange(t); fp(got.Next) != fp(next) {
		t.Fatalf("the rotator did not pick up the new next CA within a poll: %s", slots(got))
	}
	rr.advanceTo(t, forced)
	st := store.state(t)
	if fp(st.Current) != fp(next) || fp(st.Previous) != fp(a) {
		t.Fatalf("at the forced time: %s", slots(st))
	}
	if want := forced.Add(10 * time.Hour); !st.Record.Previous.PruneAt.Equal(want) {
		t.Errorf("prune at %s, want %s", st.Record.Previous.PruneAt, want)
	}
	if n := rr.newCAs.Load(); n != 0 {
		t.Errorf("NewCA called %d times", n)
	}
}

// TestCARotatorRecreatesDeletedStore: the CA Secret is deleted while the
// rotator runs; it writes back the CA it holds and never mints a new one.
func TestCARotatorRecreatesDeletedStore(t *testing.T) {
	t.Parallel()
	clk := clocktesting.NewFakeClock(t0)
	store, a := seed(t, clk)
	rr := startRotator(t, clk, store)
	store.delete()
	rr.advanceTo(t, t0.Add(hours(1)))
	st := store.state(t)
	if fp(st.Current) != fp(a) || st.Next != nil {
		t.Fatalf("re-created store holds %s, want A alone", slots(st))
	}
	if !st.Record.Current.CreatedAt.Equal(t0) {
		t.Errorf("re-created record lost its creation time: %s", st.Record.Current.CreatedAt)
	}
	if n := rr.newCAs.Load(); n != 0 {
		t.Errorf("NewCA called %d times", n)
	}
}

func TestCARotatorStartErrors(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		cfg     CARotatorConfig
		initErr bool
	}{
		"no store":    {CARotatorConfig{}, true},
		"bad policy":  {CARotatorConfig{Store: &memStore{}, Policy: CAPolicy{PrepareAt: 0.9, ActivateAt: 0.5}}, true},
		"empty store": {CARotatorConfig{Store: &memStore{}}, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r, err := NewCARotator(tc.cfg)
			if tc.initErr {
				if err == nil {
					t.Fatal("NewCARotator accepted a bad config")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// An empty store at start is an error: the rotator never mints
			// the first CA (serve does, with LoadOrCreate).
			if err := r.Start(context.Background()); err == nil {
				t.Fatal("Start on an empty store returned nil")
			}
		})
	}
}

// TestCARotatorPublishGrace: a replica that finds a next CA whose
// activation time has passed (its predecessor as leader died after storing
// it, perhaps before publishing it) publishes it and waits the publish
// grace before it signs with it; never past the current CA's expiry.
func TestCARotatorPublishGrace(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		currentLife time.Duration // of A, created at t0
		wantAt      time.Duration // activation, after the restart at 60h
	}{
		"overdue activation waits the grace": {100 * time.Hour, DefaultCAPublishGrace},
		"never past the current CA's expiry": {60*time.Hour + time.Minute, time.Minute},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			clk := clocktesting.NewFakeClock(t0)
			a := newTestCA(t, clk, tc.currentLife)
			store := &memStore{}
			if _, err := store.Save(context.Background(), ca.NewState(a, "generated", t0)); err != nil {
				t.Fatal(err)
			}
			forced := t0.Add(hours(55))
			st := store.state(t).WithNext(newTestCA(t, clk, 100*time.Hour), "generated", t0.Add(hours(50)), &forced)
			if _, err := store.Save(context.Background(), st); err != nil {
				t.Fatal(err)
			}
			restart := t0.Add(hours(60))
			clk.SetTime(restart)
			saves := store.saves
			rr := startRotator(t, clk, store)
			if got := rr.lastChange(t); fp(got.Next) != fp(st.Next) {
				t.Fatalf("OnChange at start got next %s, want %s published first", fp(got.Next), fp(st.Next))
			}
			rr.advanceTo(t, restart.Add(tc.wantAt-time.Second))
			if store.saves != saves {
				t.Fatalf("activated %s after the restart, before the %s grace", clk.Now().Sub(restart), tc.wantAt)
			}
			rr.advanceTo(t, restart.Add(tc.wantAt))
			if after := store.state(t); fp(after.Current) != fp(st.Next) {
				t.Fatalf("%s after the restart: slots %s after %d saves, want %s current", tc.wantAt, slots(after), store.saves-saves, fp(st.Next))
			}
		})
	}
}
