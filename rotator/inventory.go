package rotator

import (
	"context"
	"crypto/x509"
	"time"
)

// LeafInventory tells the CA rotator which leaves are still out there. The
// rotator asks it before a retired CA leaves the bundle, and keeps that CA
// until the last leaf it signed has expired.
type LeafInventory interface {
	// LatestNotAfter returns the latest NotAfter of the leaves that meshca
	// manages and that signer (a CA's signing certificate) signed, or the
	// zero time when there are none. Only a leaf whose signature verifies
	// counts: a tenant's Secret that merely claims the CA must not keep
	// it in the bundles. An error means the answer is unknown: the
	// rotator then keeps the CA and asks again later.
	LatestNotAfter(ctx context.Context, signer *x509.Certificate) (time.Time, error)
}
