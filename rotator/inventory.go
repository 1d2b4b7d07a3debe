package rotator

import (
	"context"
	"time"
)

// LeafInventory tells the CA rotator which leaves are still out there. The
// rotator asks it before a retired CA leaves the bundle, and keeps that CA
// until the last leaf it signed has expired.
type LeafInventory interface {
	// LatestNotAfter returns the latest NotAfter of the leaves signed by
	// the CA whose signing certificate has fingerprint issuerFingerprint
	// (see ca.CA.Fingerprint) that meshca manages, or the zero time when
	// there are none. An error means the answer is unknown: the rotator
	// then keeps the CA and asks again later.
	LatestNotAfter(ctx context.Context, issuerFingerprint string) (time.Time, error)
}
