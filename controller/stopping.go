package controller

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// stopping wraps a reconciler so that a reconcile cut short by the end of
// its context (the daemon stopping, or this replica losing the lease) ends
// without an error. controller-runtime would otherwise log each one as
// "Reconciler error" and count it in controller_runtime_reconcile_errors_total
// on every rolling upgrade, though nothing failed: the next leader
// reconciles every object when it starts.
type stopping struct{ reconcile.Reconciler }

func (s stopping) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	res, err := s.Reconciler.Reconcile(ctx, req)
	if interrupted(ctx, err) {
		return reconcile.Result{}, nil
	}
	return res, err
}

// interrupted reports whether err came while ctx was ending (the daemon
// stopping, the lease lost), so the caller records no failure (Event,
// metric) for it.
func interrupted(ctx context.Context, err error) bool { return err != nil && ctx.Err() != nil }
