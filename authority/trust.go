package authority

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/meshca/meshca/ca"
)

// Trust is one published trust bundle: the roots every consumer of it
// should trust. Readers always see a whole bundle. The zero value holds no
// bundle, and readers that need one wait (Snapshot) until it is released:
// by the first Set, or, for a Trust the Authority publishes, at the end of
// the Authority's first Apply, once the signers hold the same CA.
type Trust struct {
	// Extra are roots published beside the CA's in every bundle: those of
	// another issuer (step-ca) whose certificates consumers must trust and
	// renewal must not take for a stranger's. They follow the CA's roots,
	// once each. Set it before the first Set; nil means none.
	Extra []*x509.Certificate

	v atomic.Pointer[Snapshot]

	once, closeOnce sync.Once
	released        chan struct{} // closed when readers may read
}

// Snapshot is one version of a Trust's bundle.
type Snapshot struct {
	// PEM is the bundle as written into ca.crt and the bundle ConfigMaps.
	PEM []byte
	// Pool holds the same roots.
	Pool *x509.CertPool
}

func (t *Trust) releasedCh() chan struct{} {
	t.once.Do(func() { t.released = make(chan struct{}) })
	return t.released
}

// Set replaces the bundle with pemBundle (the CA's roots) followed by Extra
// and lets waiting readers go. It refuses PEM without a certificate, so a
// broken CA never empties every Secret's ca.crt: Extra alone is never a
// bundle.
func (t *Trust) Set(pemBundle []byte) error {
	s, err := t.build(pemBundle)
	if err != nil {
		return err
	}
	t.v.Store(s)
	t.release()
	return nil
}

// build makes the snapshot Set would store.
func (t *Trust) build(pemBundle []byte) (*Snapshot, error) {
	certs, err := ca.ParseCertificatesPEM(pemBundle)
	if err != nil {
		return nil, fmt.Errorf("trust bundle: %w", err)
	}
	out := bytes.Clone(pemBundle)
	for _, e := range t.Extra {
		if !slices.ContainsFunc(certs, e.Equal) {
			if len(out) > 0 && out[len(out)-1] != '\n' {
				out = append(out, '\n')
			}
			certs = append(certs, e)
			out = append(out, ca.EncodeCertificatesPEM(e)...)
		}
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return &Snapshot{PEM: out, Pool: pool}, nil
}

// release lets readers waiting in Snapshot go; later calls do nothing.
func (t *Trust) release() {
	ch := t.releasedCh()
	t.closeOnce.Do(func() { close(ch) })
}

// isReleased reports whether readers may read.
func (t *Trust) isReleased() bool {
	select {
	case <-t.releasedCh():
		return true
	default:
		return false
	}
}

// PEM returns the bundle, or nil before it is released.
func (t *Trust) PEM() []byte {
	if !t.isReleased() {
		return nil
	}
	return t.v.Load().PEM
}

// Wait blocks until the bundle is released or until ctx is done (returning
// its error).
func (t *Trust) Wait(ctx context.Context) error {
	_, err := t.Snapshot(ctx)
	return err
}

// Snapshot returns the bundle, waiting until it is released if need be.
func (t *Trust) Snapshot(ctx context.Context) (*Snapshot, error) {
	select {
	case <-t.releasedCh():
		return t.v.Load(), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for the trust bundle: %w", ctx.Err())
	}
}
