package ca

import (
	"bytes"
	"crypto/x509"
	"time"
)

// Slot names a place for a CA in a State.
type Slot string

// The three slots. Only Current signs; Next is published in the bundle
// before it becomes Current; Previous stays in the bundle until every leaf
// it signed has expired.
const (
	SlotCurrent  Slot = "current"
	SlotNext     Slot = "next"
	SlotPrevious Slot = "previous"
)

// Slots lists the slots in bundle order.
var Slots = []Slot{SlotCurrent, SlotNext, SlotPrevious}

// Sources of a CA, recorded in SlotRecord.Source.
const (
	// SourceGenerated: meshca created the CA (first start or rotation).
	SourceGenerated = "generated"
	// SourceCertManager and SourceIstio: `meshca ca import` copied it from
	// a Secret in that shape.
	SourceCertManager = "cert-manager"
	SourceIstio       = "istio"
	// SourceDir: read from a folder (`meshca issue --ca-dir`).
	SourceDir = "dir"
)

// StateRecordVersion is the version of the JSON state record meshca writes.
const StateRecordVersion = 1

// SlotRecord is the bookkeeping of one slot, kept for rotation.
type SlotRecord struct {
	// Fingerprint of the slot's signing certificate, see CA.Fingerprint.
	Fingerprint string `json:"fingerprint"`
	// Source says where the CA came from: "generated", "cert-manager",
	// "istio" or "dir".
	Source string `json:"source,omitempty"`
	// CreatedAt is when meshca stored the CA in this state.
	CreatedAt time.Time `json:"createdAt"`
	// ActivatedAt is when the CA became Current; nil if it never was.
	ActivatedAt *time.Time `json:"activatedAt,omitempty"`
	// RetiredAt is when the CA left Current; nil while it is Current or Next.
	RetiredAt *time.Time `json:"retiredAt,omitempty"`
	// ActivateAt, on the Next slot only, is a forced activation time set by
	// `meshca ca rotate`; nil means the rotator's schedule decides.
	ActivateAt *time.Time `json:"activateAt,omitempty"`
	// PruneAt, on the Previous slot only, is when the CA leaves the bundle:
	// when every leaf it signed has expired. It is recorded on retirement;
	// nil (a record written before this field existed) means the rotator
	// derives it from RetiredAt or the CA's expiry.
	PruneAt *time.Time `json:"pruneAt,omitempty"`
}

// External reports whether the slot holds a bring-your-own CA: one that
// meshca did not generate. Only a record whose Source is SourceGenerated is
// meshca's own; every other source, and none at all (a slot written by hand,
// as with a CA Secret without state.json, or a nil record), is external.
// meshca never replaces an external CA with one it generates unless told
// to.
func (r *SlotRecord) External() bool { return r == nil || r.Source != SourceGenerated }

// StateRecord is the JSON document stored next to the CAs (key state.json).
type StateRecord struct {
	Version  int         `json:"version"`
	Current  *SlotRecord `json:"current,omitempty"`
	Next     *SlotRecord `json:"next,omitempty"`
	Previous *SlotRecord `json:"previous,omitempty"`
}

// State is every CA meshca knows: the current one, and the next and previous
// during a rotation (nil otherwise).
type State struct {
	Current  *CA
	Next     *CA
	Previous *CA
	Record   StateRecord
	// ResourceVersion is that of the Secret the state was read from or last
	// written to; castore.Secret.Save uses it to refuse lost updates. Empty for
	// a state that was never stored.
	ResourceVersion string
}

// NewState wraps a single CA as the current one.
func NewState(c *CA, source string, now time.Time) *State {
	return &State{
		Current: c,
		Record: StateRecord{
			Version: StateRecordVersion,
			Current: &SlotRecord{Fingerprint: c.Fingerprint(), Source: source, CreatedAt: now.UTC(), ActivatedAt: ptr(now.UTC())},
		},
	}
}

func ptr[T any](v T) *T { return &v }

// slotField picks the field of slot among a struct's three slot fields,
// or nil for an unknown slot. State and StateRecord share it.
func slotField[T any](slot Slot, current, next, previous *T) *T {
	switch slot {
	case SlotCurrent:
		return current
	case SlotNext:
		return next
	case SlotPrevious:
		return previous
	}
	return nil
}

// Get returns the CA in a slot, or nil.
func (s *State) Get(slot Slot) *CA {
	if f := slotField(slot, &s.Current, &s.Next, &s.Previous); f != nil {
		return *f
	}
	return nil
}

func (s *State) set(slot Slot, c *CA) {
	if f := slotField(slot, &s.Current, &s.Next, &s.Previous); f != nil {
		*f = c
	}
}

// Roots returns the distinct roots of all slots, in slot order (current,
// next, previous).
func (s *State) Roots() []*x509.Certificate {
	var roots []*x509.Certificate
	for _, slot := range Slots {
		c := s.Get(slot)
		if c == nil || c.Root == nil {
			continue
		}
		dup := false
		for _, r := range roots {
			if bytes.Equal(r.Raw, c.Root.Raw) {
				dup = true
				break
			}
		}
		if !dup {
			roots = append(roots, c.Root)
		}
	}
	return roots
}

// Bundle is the trust bundle: the PEM of Roots, in the same order.
func (s *State) Bundle() []byte { return EncodeCertificatesPEM(s.Roots()...) }
