package rotator

import (
	"errors"
	"fmt"
	"time"

	"github.com/meshca/meshca/ca"
)

// Defaults of CAPolicy.
const (
	// DefaultCAPrepareAt is the share of the current CA's life after which
	// the next CA is generated and published in the bundle.
	DefaultCAPrepareAt = 0.5
	// DefaultCAActivateAt is the share of the current CA's life after which
	// the next CA starts signing.
	DefaultCAActivateAt = 5.0 / 6.0
	// DefaultMaxLeafLifetime is the longest a leaf signed by meshca lives:
	// the issuer's default leaf duration.
	DefaultMaxLeafLifetime = 24 * time.Hour
)

// CAPolicy says when the CA rotates. The zero value prepares the next CA at
// half of the current CA's life, activates it at five sixths, and keeps a
// retired CA in the bundle for DefaultMaxLeafLifetime after its retirement.
//
// The life of a CA is that of its signing chain (see ca.CA.SigningValidity):
// the intermediate bounds every leaf, since a leaf's NotAfter is capped at
// the issuing CA's.
type CAPolicy struct {
	// PrepareAt in (0, 1) is the share of the current CA's life at which
	// the next CA is generated and published; 0 means DefaultCAPrepareAt.
	PrepareAt float64
	// ActivateAt in (PrepareAt, 1) is the share of the current CA's life at
	// which the next CA starts signing; 0 means DefaultCAActivateAt.
	// Activation is moved earlier when needed so that it happens at least
	// MaxLeafLifetime before the current CA expires: a leaf issued just
	// before activation is then never cut short by the CA's expiry.
	ActivateAt float64
	// MaxLeafLifetime is the longest lifetime of a leaf; a retired CA stays
	// in the bundle this long after its retirement (never past its own
	// expiry). 0 means DefaultMaxLeafLifetime.
	MaxLeafLifetime time.Duration
}

// WithDefaults fills the zero fields and checks the policy.
func (p CAPolicy) WithDefaults() (CAPolicy, error) {
	if p.PrepareAt == 0 {
		p.PrepareAt = DefaultCAPrepareAt
	}
	if p.ActivateAt == 0 {
		p.ActivateAt = DefaultCAActivateAt
	}
	if p.MaxLeafLifetime == 0 {
		p.MaxLeafLifetime = DefaultMaxLeafLifetime
	}
	if !(p.PrepareAt > 0 && p.PrepareAt < p.ActivateAt && p.ActivateAt < 1) {
		return p, fmt.Errorf("CA policy: need 0 < prepare (%v) < activate (%v) < 1", p.PrepareAt, p.ActivateAt)
	}
	if p.MaxLeafLifetime < 0 {
		return p, errors.New("CA policy: max leaf lifetime must be positive")
	}
	return p, nil
}

// CAStep is one CA rotation step.
type CAStep int

// The steps, in the order they are taken when several are due at once.
const (
	// CAStepNone: nothing is planned (a bring-your-own CA without a next).
	CAStepNone CAStep = iota
	// CAStepPrunePrevious removes the retired CA from the bundle.
	CAStepPrunePrevious
	// CAStepActivateNext makes the next CA sign and retires the current.
	CAStepActivateNext
	// CAStepPrepareNext generates the next CA and publishes it.
	CAStepPrepareNext
)

func (s CAStep) String() string {
	switch s {
	case CAStepNone:
		return "None"
	case CAStepPrunePrevious:
		return "PrunePrevious"
	case CAStepActivateNext:
		return "ActivateNext"
	case CAStepPrepareNext:
		return "PrepareNext"
	}
	return fmt.Sprintf("CAStep(%d)", int(s))
}

// CASlotView is what the schedule needs of one slot.
type CASlotView struct {
	// NotBefore and NotAfter bound the CA's signing chain.
	NotBefore, NotAfter time.Time
	// External is a bring-your-own CA: meshca never generates its
	// successor on its own (`meshca ca rotate` still can).
	External bool
	// ActivateAt is a forced activation time (Next only).
	ActivateAt *time.Time
	// RetiredAt and PruneAt are recorded on retirement (Previous only).
	RetiredAt, PruneAt *time.Time
}

// CAView is what the schedule needs of a ca.State.
type CAView struct {
	Current        CASlotView
	Next, Previous *CASlotView
}

// ViewOf extracts the schedule's view of st.
func ViewOf(st *ca.State) CAView {
	slot := func(s ca.Slot) *CASlotView {
		c := st.Get(s)
		if c == nil {
			return nil
		}
		v := &CASlotView{}
		v.NotBefore, v.NotAfter = c.SigningValidity()
		if r := st.SlotRecord(s); r != nil {
			v.External = r.Source == "cert-manager" || r.Source == "istio"
			v.ActivateAt, v.RetiredAt, v.PruneAt = r.ActivateAt, r.RetiredAt, r.PruneAt
		}
		return v
	}
	v := CAView{Next: slot(ca.SlotNext), Previous: slot(ca.SlotPrevious)}
	if cur := slot(ca.SlotCurrent); cur != nil {
		v.Current = *cur
	}
	return v
}

// at returns the point at share f of [nb, na].
func at(nb, na time.Time, f float64) time.Time {
	return nb.Add(time.Duration(f * float64(na.Sub(nb))))
}

// ActivationTime is when a next CA activates under p while cur is the
// current CA: its forced time if it has one, else ActivateAt of cur's life,
// moved earlier to MaxLeafLifetime before cur expires if need be (but never
// before the prepare point).
func ActivationTime(cur CASlotView, next *CASlotView, p CAPolicy) time.Time {
	if next != nil && next.ActivateAt != nil {
		return *next.ActivateAt
	}
	t := at(cur.NotBefore, cur.NotAfter, p.ActivateAt)
	if latest := cur.NotAfter.Add(-p.MaxLeafLifetime); latest.Before(t) {
		t = latest
	}
	if prep := at(cur.NotBefore, cur.NotAfter, p.PrepareAt); t.Before(prep) {
		t = prep
	}
	return t
}

// PrepareTime is when the successor of cur is generated under p: PrepareAt
// of its life, never after its activation time.
func PrepareTime(cur CASlotView, p CAPolicy) time.Time {
	t := at(cur.NotBefore, cur.NotAfter, p.PrepareAt)
	if act := ActivationTime(cur, nil, p); act.Before(t) {
		t = act
	}
	return t
}

// PruneTime is when a CA retired at retiredAt leaves the bundle: after
// MaxLeafLifetime, since a leaf it signed lives no longer, and never after
// the CA itself expires.
func PruneTime(prev CASlotView, retiredAt time.Time, p CAPolicy) time.Time {
	t := retiredAt.Add(p.MaxLeafLifetime)
	if prev.NotAfter.Before(t) {
		t = prev.NotAfter
	}
	return t
}

// previousPruneTime is the recorded prune time of prev, or one derived from
// its retirement, or (no record at all) its expiry.
func previousPruneTime(prev CASlotView, p CAPolicy) time.Time {
	switch {
	case prev.PruneAt != nil:
		return *prev.PruneAt
	case prev.RetiredAt != nil:
		return PruneTime(prev, *prev.RetiredAt, p)
	}
	return prev.NotAfter
}

// NextCAStep returns the next rotation step for v under p and when it is
// due; a time at or before now means it is due now. When several steps
// are due at now, the one to take first is returned (prune, activate,
// prepare); the caller takes it and asks again. Otherwise it is the
// earliest.
//
// Each of the three slots has one pending step: Previous is pruned at its
// prune time; Next is activated at its activation time, but not while an
// older Previous is still in its prune window (only three slots exist)
// unless the current CA has expired; without a Next, the successor of
// Current is prepared at its prepare time (never for a bring-your-own CA).
// p must have been through WithDefaults or be zero.
func NextCAStep(now time.Time, v CAView, p CAPolicy) (CAStep, time.Time) {
	if dp, err := p.WithDefaults(); err == nil {
		p = dp
	}
	var (
		step = CAStepNone
		when time.Time
	)
	consider := func(s CAStep, t time.Time) {
		due, stepDue := !t.After(now), step != CAStepNone && !when.After(now)
		switch {
		case step == CAStepNone:
		case due && stepDue: // both due: take them in step order
			if s > step {
				return
			}
		case stepDue:
			return
		case !due && !t.Before(when):
			return
		}
		step, when = s, t
	}
	var pruneAt time.Time
	if v.Previous != nil {
		pruneAt = previousPruneTime(*v.Previous, p)
		consider(CAStepPrunePrevious, pruneAt)
	}
	switch {
	case v.Next != nil:
		t := ActivationTime(v.Current, v.Next, p)
		if v.Previous != nil && t.Before(pruneAt) {
			t = pruneAt
			if v.Current.NotAfter.Before(t) {
				t = v.Current.NotAfter
			}
		}
		consider(CAStepActivateNext, t)
	case !v.Current.External:
		consider(CAStepPrepareNext, PrepareTime(v.Current, p))
	}
	return step, when
}

// ForceRotation is what `meshca ca rotate` does to a state: it prepares a
// next CA now with newCA if there is none (a next CA already published is
// kept, so clients that have it keep trusting it), and forces its
// activation to now+activateAfter. The schedule then prunes the retired CA
// as usual.
func ForceRotation(st *ca.State, now time.Time, activateAfter time.Duration, newCA func(current *ca.CA) (*ca.CA, error)) (*ca.State, error) {
	if activateAfter < 0 {
		return nil, fmt.Errorf("force CA rotation: negative activation delay %s", activateAfter)
	}
	if st.Next == nil {
		c, err := newCA(st.Current)
		if err != nil {
			return nil, fmt.Errorf("force CA rotation: create next CA: %w", err)
		}
		st = st.WithNext(c, "generated", now, nil)
	}
	return st.WithActivateAt(now.Add(activateAfter))
}
