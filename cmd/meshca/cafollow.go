package main

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca"
)

// caFollower keeps the CA state that the CA metrics read (the Authority's) at what the
// CA Secret holds, on a replica that does not hold the Lease: there no CA
// rotator runs, and without it meshca_ca_not_after_timestamp_seconds would
// show the CA as it was when the replica started. It reads the Secret as
// often as the leader's CA rotator does and stops once this replica is
// elected, when the rotator takes the state over. It needs only get on the CA
// Secret, which every replica has already.
type caFollower struct {
	store interface {
		Load(ctx context.Context) (*ca.State, error)
	}
	// observe records each state read (Authority.Observe).
	observe func(*ca.State)
	// elected is closed when this replica becomes the leader.
	elected <-chan struct{}
	// interval is the time between two reads.
	interval time.Duration
	clock    clock.Clock
	log      logr.Logger
}

// Start reads the CA Secret every interval until ctx is done or this
// replica is elected. A failed read keeps the last state and is retried at
// the next interval.
func (f *caFollower) Start(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-f.elected:
			return nil
		case <-f.clock.After(f.interval):
		}
		st, err := f.store.Load(ctx)
		if err != nil {
			if ctx.Err() == nil {
				f.log.Error(err, "read CA Secret for the CA metrics; they keep the last state read")
			}
			continue
		}
		select {
		case <-f.elected:
			// The rotator owns the state now, and may have applied a newer one.
			return nil
		default:
			f.observe(st)
		}
	}
}
