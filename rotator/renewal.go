package rotator

import (
	"crypto/sha256"
	"encoding/binary"
	"time"
)

// DefaultRenewFraction is the point of a certificate's lifetime at which it
// is renewed when a policy names none: two thirds, as cert-manager and SPIRE do.
const DefaultRenewFraction = 2.0 / 3.0

// DefaultJitter is the share of the lifetime by which a renewal may come
// early, so certificates issued together do not renew together.
const DefaultJitter = 0.05

// MaxJitter bounds Policy.Jitter: more would renew some certificates so early
// that renewal itself becomes the load.
const MaxJitter = 0.25

// Policy says when a certificate is renewed. The zero value renews at
// DefaultRenewFraction of the lifetime with DefaultJitter.
type Policy struct {
	// RenewBefore, when positive, renews this long before NotAfter. A value
	// at or beyond the lifetime falls back to the fraction.
	RenewBefore time.Duration
	// Fraction, when in (0, 1), renews at this share of the lifetime.
	// Ignored when RenewBefore applies.
	Fraction float64
	// Jitter is the largest share of the lifetime by which renewal is moved
	// earlier. Zero means DefaultJitter; negative means none; values above
	// MaxJitter are capped.
	Jitter float64
}

// RenewalTime returns when a certificate valid from notBefore to notAfter
// should be renewed. seed (for example the serial number) spreads the jitter
// deterministically: the same certificate always gets the same time, and
// certificates issued at the same moment get different ones. The result is
// never before notBefore and never after notAfter.
func RenewalTime(notBefore, notAfter time.Time, p Policy, seed []byte) time.Time {
	lifetime := notAfter.Sub(notBefore)
	if lifetime <= 0 {
		return notBefore
	}
	var at time.Time
	switch {
	case p.RenewBefore > 0 && p.RenewBefore < lifetime:
		at = notAfter.Add(-p.RenewBefore)
	case p.Fraction > 0 && p.Fraction < 1:
		at = notBefore.Add(time.Duration(float64(lifetime) * p.Fraction))
	default:
		at = notBefore.Add(time.Duration(float64(lifetime) * DefaultRenewFraction))
	}
	at = at.Add(-jitter(lifetime, p.Jitter, seed))
	if at.Before(notBefore) {
		at = notBefore
	}
	if at.After(notAfter) {
		at = notAfter
	}
	return at
}

// jitter maps seed to a duration in [0, share*lifetime).
func jitter(lifetime time.Duration, share float64, seed []byte) time.Duration {
	switch {
	case share < 0:
		return 0
	case share == 0:
		share = DefaultJitter
	case share > MaxJitter:
		share = MaxJitter
	}
	sum := sha256.Sum256(seed)
	u := float64(binary.BigEndian.Uint64(sum[:8])>>11) / float64(1<<53) // [0, 1)
	return time.Duration(u * share * float64(lifetime))
}
