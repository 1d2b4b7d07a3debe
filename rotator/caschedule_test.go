package rotator

import (
	"testing"
	"time"
)

func TestNextCAStep(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := func(n float64) time.Time { return t0.Add(time.Duration(n * float64(time.Hour))) }
	tp := func(n float64) *time.Time { v := h(n); return &v }
	// The current CA lives 100h from t0; its schedule with a 10h leaf
	// lifetime: prepare at 50h, activate at 83h20m.
	cur := CASlotView{NotBefore: h(0), NotAfter: h(100)}
	p := CAPolicy{MaxLeafLifetime: 10 * time.Hour}
	next := &CASlotView{NotBefore: h(50), NotAfter: h(150)}
	cases := map[string]struct {
		now    time.Time
		view   CAView
		policy CAPolicy
		step   CAStep
		at     time.Time
	}{
		"fresh CA prepares at half its life":      {h(1), CAView{Current: cur}, p, CAStepPrepareNext, h(50)},
		"prepare is due once half is past":        {h(60), CAView{Current: cur}, p, CAStepPrepareNext, h(50)},
		"expired CA prepares at once":             {h(200), CAView{Current: cur}, p, CAStepPrepareNext, h(50)},
		"next activates at five sixths":           {h(51), CAView{Current: cur, Next: next}, p, CAStepActivateNext, h(0).Add(83*time.Hour + 20*time.Minute)},
		"forced activation time wins":             {h(51), CAView{Current: cur, Next: &CASlotView{NotBefore: h(50), NotAfter: h(150), ActivateAt: tp(55)}}, p, CAStepActivateNext, h(55)},
		"forced activation before prepare point":  {h(10), CAView{Current: cur, Next: &CASlotView{NotBefore: h(9), NotAfter: h(109), ActivateAt: tp(12)}}, p, CAStepActivateNext, h(12)},
		"long leaves move activation earlier":     {h(51), CAView{Current: cur, Next: next}, CAPolicy{MaxLeafLifetime: 40 * time.Hour}, CAStepActivateNext, h(60)},
		"activation never before prepare point":   {h(51), CAView{Current: cur, Next: next}, CAPolicy{MaxLeafLifetime: 70 * time.Hour}, CAStepActivateNext, h(50)},
		"prepare never after activation":          {h(1), CAView{Current: cur}, CAPolicy{PrepareAt: 0.5, ActivateAt: 0.9, MaxLeafLifetime: 70 * time.Hour}, CAStepPrepareNext, h(50)},
		"custom fractions":                        {h(1), CAView{Current: cur}, CAPolicy{PrepareAt: 0.25, ActivateAt: 0.5, MaxLeafLifetime: time.Hour}, CAStepPrepareNext, h(25)},
		"default leaf lifetime caps activation":   {h(51), CAView{Current: cur, Next: next}, CAPolicy{}, CAStepActivateNext, h(76)},
		"previous pruned at recorded time":        {h(101), CAView{Current: CASlotView{NotBefore: h(80), NotAfter: h(180)}, Previous: &CASlotView{NotBefore: h(0), NotAfter: h(100), RetiredAt: tp(83), PruneAt: tp(93)}}, p, CAStepPrunePrevious, h(93)},
		"prune derived from retirement":           {h(84), CAView{Current: CASlotView{NotBefore: h(80), NotAfter: h(180)}, Previous: &CASlotView{NotBefore: h(0), NotAfter: h(100), RetiredAt: tp(83)}}, p, CAStepPrunePrevious, h(93)},
		"prune never after the old CA expires":    {h(96), CAView{Current: CASlotView{NotBefore: h(80), NotAfter: h(180)}, Previous: &CASlotView{NotBefore: h(0), NotAfter: h(100), RetiredAt: tp(95)}}, p, CAStepPrunePrevious, h(100)},
		"prune of an unrecorded previous: expiry": {h(84), CAView{Current: CASlotView{NotBefore: h(80), NotAfter: h(180)}, Previous: &CASlotView{NotBefore: h(0), NotAfter: h(100)}}, p, CAStepPrunePrevious, h(100)},
		"prune comes before the next prepare":     {h(84), CAView{Current: CASlotView{NotBefore: h(80), NotAfter: h(180)}, Previous: &CASlotView{NotBefore: h(0), NotAfter: h(100), PruneAt: tp(93)}}, p, CAStepPrunePrevious, h(93)},
		"both due: prune first":                   {h(200), CAView{Current: CASlotView{NotBefore: h(80), NotAfter: h(180)}, Previous: &CASlotView{NotBefore: h(0), NotAfter: h(100), PruneAt: tp(193)}}, p, CAStepPrunePrevious, h(193)},
		"due step beats a later earlier-due one":  {h(140), CAView{Current: CASlotView{NotBefore: h(80), NotAfter: h(180)}, Previous: &CASlotView{NotBefore: h(0), NotAfter: h(100), PruneAt: tp(150)}}, p, CAStepPrepareNext, h(130)},
		"activation waits for the previous prune": {h(84), CAView{Current: CASlotView{NotBefore: h(80), NotAfter: h(180)}, Next: &CASlotView{NotBefore: h(84), NotAfter: h(184), ActivateAt: tp(85)}, Previous: &CASlotView{NotBefore: h(0), NotAfter: h(100), PruneAt: tp(93)}}, p, CAStepPrunePrevious, h(93)},
		"expiring current does not wait":          {h(84), CAView{Current: CASlotView{NotBefore: h(0), NotAfter: h(90)}, Next: &CASlotView{NotBefore: h(84), NotAfter: h(184), ActivateAt: tp(85)}, Previous: &CASlotView{NotBefore: h(0), NotAfter: h(100), PruneAt: tp(95)}}, p, CAStepActivateNext, h(90)},
		"bring-your-own CA is not rotated":        {h(99), CAView{Current: CASlotView{NotBefore: h(0), NotAfter: h(100), External: true}}, p, CAStepNone, time.Time{}},
		"bring-your-own CA with a forced next":    {h(99), CAView{Current: CASlotView{NotBefore: h(0), NotAfter: h(100), External: true}, Next: &CASlotView{NotBefore: h(98), NotAfter: h(198), ActivateAt: tp(99)}}, p, CAStepActivateNext, h(99)},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			step, at := NextCAStep(tc.now, tc.view, tc.policy)
			if step != tc.step || !at.Equal(tc.at) {
				t.Errorf("NextCAStep = %v at %s, want %v at %s", step, at.Sub(t0), tc.step, tc.at.Sub(t0))
			}
		})
	}
}

func TestCAPolicyWithDefaults(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		in      CAPolicy
		want    CAPolicy
		wantErr bool
	}{
		"zero":                    {CAPolicy{}, CAPolicy{PrepareAt: 0.5, ActivateAt: 5.0 / 6.0, MaxLeafLifetime: 24 * time.Hour}, false},
		"kept":                    {CAPolicy{PrepareAt: 0.3, ActivateAt: 0.6, MaxLeafLifetime: time.Hour}, CAPolicy{PrepareAt: 0.3, ActivateAt: 0.6, MaxLeafLifetime: time.Hour}, false},
		"activate before prepare": {CAPolicy{PrepareAt: 0.7, ActivateAt: 0.6}, CAPolicy{}, true},
		"activate at end":         {CAPolicy{ActivateAt: 1}, CAPolicy{}, true},
		"negative prepare":        {CAPolicy{PrepareAt: -0.1}, CAPolicy{}, true},
		"negative leaf lifetime":  {CAPolicy{MaxLeafLifetime: -time.Hour}, CAPolicy{}, true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := tc.in.WithDefaults()
			if (err != nil) != tc.wantErr {
				t.Fatalf("WithDefaults error = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != tc.want {
				t.Errorf("WithDefaults = %+v, want %+v", got, tc.want)
			}
		})
	}
}
