package controller

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

// Trust is the current trust bundle: the roots every consumer should trust.
// The CA manager replaces it on rotation; readers always see a whole bundle.
// The zero value holds no bundle: readers that need one wait for the first
// Set.
type Trust struct {
	// Extra are roots published beside the CA's in every bundle Set makes:
	// those of another issuer (step-ca) whose certificates consumers must
	// trust and renewal must not take for a stranger's. They follow the
	// CA's roots, once each. Set it before the first Set; nil means none.
	Extra []*x509.Certificate

	v atomic.Pointer[trustSnapshot]

	once  sync.Once
	isSet chan struct{} // closed by the first Set
}

type trustSnapshot struct {
	pem  []byte
	pool *x509.CertPool
}

func (t *Trust) setCh() chan struct{} {
	t.once.Do(func() { t.isSet = make(chan struct{}) })
	return t.isSet
}

// Set replaces the bundle with pemBundle (the CA's roots) followed by Extra.
// It refuses PEM without a certificate, so a broken CA never empties every
// Secret's ca.crt: Extra alone is never a bundle.
func (t *Trust) Set(pemBundle []byte) error {
	certs, err := ca.ParseCertificatesPEM(pemBundle)
	if err != nil {
		return fmt.Errorf("trust bundle: %w", err)
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
	if t.v.Swap(&trustSnapshot{pem: out, pool: pool}) == nil {
		close(t.setCh())
	}
	return nil
}

// PEM returns the bundle, or nil before the first Set.
func (t *Trust) PEM() []byte {
	if s := t.v.Load(); s != nil {
		return s.pem
	}
	return nil
}

// Wait blocks until the first Set or until ctx is done (returning its
// error).
func (t *Trust) Wait(ctx context.Context) error {
	_, err := t.wait(ctx)
	return err
}

// wait returns the bundle, waiting for the first Set if need be.
func (t *Trust) wait(ctx context.Context) (*trustSnapshot, error) {
	if s := t.v.Load(); s != nil {
		return s, nil
	}
	select {
	case <-t.setCh():
		return t.v.Load(), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for the trust bundle: %w", ctx.Err())
	}
}
