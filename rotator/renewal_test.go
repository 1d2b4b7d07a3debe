package rotator

import (
	"fmt"
	"testing"
	"time"
)

func TestRenewalTime(t *testing.T) {
	t.Parallel()
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	noJitter := -1.0
	cases := map[string]struct {
		notAfter time.Time
		policy   Policy
		want     time.Time
	}{
		"default two thirds":           {nb.Add(day), Policy{Jitter: noJitter}, nb.Add(16 * time.Hour)},
		"renew before":                 {nb.Add(day), Policy{RenewBefore: 2 * time.Hour, Jitter: noJitter}, nb.Add(22 * time.Hour)},
		"renew before beyond lifetime": {nb.Add(day), Policy{RenewBefore: 48 * time.Hour, Jitter: noJitter}, nb.Add(16 * time.Hour)},
		"fraction":                     {nb.Add(day), Policy{Fraction: 0.5, Jitter: noJitter}, nb.Add(12 * time.Hour)},
		"fraction out of range":        {nb.Add(day), Policy{Fraction: 1.5, Jitter: noJitter}, nb.Add(16 * time.Hour)},
		"empty lifetime":               {nb, Policy{}, nb},
		"inverted lifetime":            {nb.Add(-time.Hour), Policy{}, nb},
		"90 seconds":                   {nb.Add(90 * time.Second), Policy{Jitter: noJitter}, nb.Add(60 * time.Second)},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := RenewalTime(nb, tc.notAfter, tc.policy, []byte("serial")); !got.Equal(tc.want) {
				t.Errorf("RenewalTime = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestRenewalJitterBounds checks that jitter only moves renewal earlier, stays
// within its share of the lifetime, is deterministic per seed and spreads.
func TestRenewalJitterBounds(t *testing.T) {
	t.Parallel()
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	na := nb.Add(24 * time.Hour)
	base := nb.Add(16 * time.Hour)
	for _, share := range []float64{0, 0.1, MaxJitter, 0.9} {
		t.Run(fmt.Sprint(share), func(t *testing.T) {
			t.Parallel()
			bound := share
			if bound == 0 {
				bound = DefaultJitter
			}
			if bound > MaxJitter {
				bound = MaxJitter
			}
			earliest := base.Add(-time.Duration(bound * float64(24*time.Hour)))
			seen := map[time.Time]bool{}
			for i := range 1000 {
				seed := []byte(fmt.Sprint(i))
				at := RenewalTime(nb, na, Policy{Jitter: share}, seed)
				if at.After(base) || at.Before(earliest) {
					t.Fatalf("seed %d: %s outside [%s, %s]", i, at, earliest, base)
				}
				if again := RenewalTime(nb, na, Policy{Jitter: share}, seed); !again.Equal(at) {
					t.Fatalf("seed %d: not deterministic: %s then %s", i, at, again)
				}
				seen[at] = true
			}
			if len(seen) < 990 {
				t.Errorf("1000 seeds gave only %d distinct renewal times", len(seen))
			}
		})
	}
}
