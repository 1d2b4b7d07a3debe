package ca

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/utils/clock"
)

// ErrNoNext means a rotation step needs a Next CA and the state has none.
var ErrNoNext = errors.New("no next CA")

// Clone returns a copy of s whose record can be changed without touching
// s. The CAs themselves are shared: they are never modified after creation.
func (s *State) Clone() *State {
	cp := *s
	cp.Record = StateRecord{Version: s.Record.Version}
	for _, slot := range Slots {
		if r := s.Record.slot(slot); r != nil {
			rc := *r
			cp.Record.setSlot(slot, &rc)
		}
	}
	return &cp
}

// SlotRecord returns the record of a slot, or nil.
func (s *State) SlotRecord(slot Slot) *SlotRecord { return s.Record.slot(slot) }

// WithNext returns a copy of s with c in the Next slot, published in the
// bundle from now on. activateAt, when not nil, forces its activation time;
// nil leaves it to the rotator's schedule. A Next CA already there is
// replaced.
func (s *State) WithNext(c *CA, source string, now time.Time, activateAt *time.Time) *State {
	cp := s.Clone()
	cp.Next = c
	r := &SlotRecord{Fingerprint: c.Fingerprint(), Source: source, CreatedAt: now.UTC()}
	if activateAt != nil {
		r.ActivateAt = ptr(activateAt.UTC())
	}
	cp.Record.Next = r
	return cp
}

// WithActivateAt returns a copy of s whose Next CA activates at t.
func (s *State) WithActivateAt(t time.Time) (*State, error) {
	if s.Next == nil || s.Record.Next == nil {
		return nil, ErrNoNext
	}
	cp := s.Clone()
	cp.Record.Next.ActivateAt = ptr(t.UTC())
	return cp, nil
}

// ActivateNext returns a copy of s in which Next has become Current and
// Current has become Previous, to stay in the bundle until pruneAt. A
// Previous CA already there leaves the bundle.
func (s *State) ActivateNext(now, pruneAt time.Time) (*State, error) {
	if s.Next == nil || s.Record.Next == nil {
		return nil, fmt.Errorf("activate next CA: %w", ErrNoNext)
	}
	cp := s.Clone()
	prev := cp.Record.Current
	if prev == nil {
		prev = &SlotRecord{Fingerprint: s.Current.Fingerprint()}
	}
	prev.RetiredAt = ptr(now.UTC())
	prev.PruneAt = ptr(pruneAt.UTC())
	next := cp.Record.Next
	next.ActivatedAt = ptr(now.UTC())
	next.ActivateAt = nil
	cp.Previous, cp.Current, cp.Next = s.Current, s.Next, nil
	cp.Record.Previous, cp.Record.Current, cp.Record.Next = prev, next, nil
	return cp, nil
}

// WithPruneAt returns a copy of s whose Previous CA leaves the bundle at t
// instead of its recorded prune time.
func (s *State) WithPruneAt(t time.Time) (*State, error) {
	if s.Previous == nil || s.Record.Previous == nil {
		return nil, errors.New("set prune time: no previous CA")
	}
	cp := s.Clone()
	cp.Record.Previous.PruneAt = ptr(t.UTC())
	return cp, nil
}

// WithoutPrevious returns a copy of s without the Previous CA: its root
// leaves the bundle.
func (s *State) WithoutPrevious() *State {
	cp := s.Clone()
	cp.Previous, cp.Record.Previous = nil, nil
	return cp
}

// SigningValidity is the period in which leaves signed by c can be valid:
// the latest NotBefore and the earliest NotAfter of its chain and root.
func (c *CA) SigningValidity() (notBefore, notAfter time.Time) {
	notBefore, notAfter = c.Root.NotBefore, c.Root.NotAfter
	certs := c.Chain
	if len(certs) == 0 {
		certs = []*x509.Certificate{c.Intermediate}
	}
	for _, cert := range certs {
		if cert.NotBefore.After(notBefore) {
			notBefore = cert.NotBefore
		}
		if cert.NotAfter.Before(notAfter) {
			notAfter = cert.NotAfter
		}
	}
	return notBefore, notAfter
}

// SuccessorConfig describes a CA to replace c: the same key algorithm,
// trust domain, subject and name constraints, and the same lifetimes as c's
// root and intermediate had (less the default backdate), created on clk.
func SuccessorConfig(c *CA, clk clock.PassiveClock) (Config, error) {
	alg, err := KeyAlgorithmOf(c.Intermediate.PublicKey)
	if err != nil {
		return Config{}, fmt.Errorf("successor of CA %s: %w", c.Fingerprint(), err)
	}
	subj := c.Intermediate.Subject
	subj.CommonName = strings.TrimSuffix(subj.CommonName, " intermediate CA")
	cfg := Config{
		KeyAlgorithm:         alg,
		Subject:              subj,
		RootLifetime:         lifetime(c.Root),
		IntermediateLifetime: lifetime(c.Intermediate),
		PermittedDNSDomains:  c.Intermediate.PermittedDNSDomains,
		Clock:                clk,
	}
	switch {
	case len(c.Intermediate.PermittedURIDomains) > 0:
		cfg.TrustDomain = c.Intermediate.PermittedURIDomains[0]
	case len(subj.OrganizationalUnit) > 0:
		cfg.TrustDomain = subj.OrganizationalUnit[0]
	}
	return cfg, nil
}

func lifetime(c *x509.Certificate) time.Duration {
	d := c.NotAfter.Sub(c.NotBefore)
	if d > 2*caBackdate {
		d -= caBackdate
	}
	return d
}
