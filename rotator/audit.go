package rotator

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"k8s.io/utils/clock"
)

// Audit runs a sweep on a cron schedule until its context ends. Each sweep
// re-checks every managed certificate and repairs what drifted; the schedule
// only decides when, the sweep decides what.
type Audit struct {
	schedule cron.Schedule
	clock    clock.Clock
	sweep    func(context.Context)
}

// AuditConfig configures an Audit.
type AuditConfig struct {
	// Schedule is a cron spec: five fields, or a descriptor such as
	// "@hourly" or "@every 5m". Empty means "@every 5m".
	Schedule string
	// Clock is the time source; nil means the real clock.
	Clock clock.Clock
	// Sweep is called once per tick; it must return when its context ends.
	Sweep func(context.Context)
}

// NewAudit parses the schedule. An invalid spec is an error naming it.
func NewAudit(cfg AuditConfig) (*Audit, error) {
	if cfg.Schedule == "" {
		cfg.Schedule = "@every 5m"
	}
	if cfg.Sweep == nil {
		return nil, fmt.Errorf("audit: no sweep function")
	}
	if rest, ok := strings.CutPrefix(cfg.Schedule, "@every "); ok {
		// robfig/cron accepts a negative interval and rounds it up to a
		// second; a typo like that should be refused, not run every second.
		if d, err := time.ParseDuration(strings.TrimSpace(rest)); err == nil && d < time.Second {
			return nil, fmt.Errorf("audit schedule %q: interval must be at least 1s", cfg.Schedule)
		}
	}
	sched, err := cron.ParseStandard(cfg.Schedule)
	if err != nil {
		return nil, fmt.Errorf("audit schedule %q: %w", cfg.Schedule, err)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	return &Audit{schedule: sched, clock: cfg.Clock, sweep: cfg.Sweep}, nil
}

// Next returns the first sweep time after t.
func (a *Audit) Next(t time.Time) time.Time { return a.schedule.Next(t) }

// Start runs sweeps on schedule and blocks until ctx is done. Sweeps never
// overlap: a sweep that overruns its slot delays the next one.
func (a *Audit) Start(ctx context.Context) error {
	for {
		now := a.clock.Now()
		next := a.schedule.Next(now)
		if next.IsZero() {
			<-ctx.Done()
			return nil
		}
		t := a.clock.NewTimer(next.Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
			a.sweep(ctx)
		}
	}
}
