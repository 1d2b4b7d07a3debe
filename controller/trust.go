package controller

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/meshca/meshca/ca"
)

// Trust is the current trust bundle: the roots every consumer should trust.
// The CA manager replaces it on rotation; readers always see a whole bundle.
// The zero value holds no bundle: readers that need one wait for the first
// Set.
type Trust struct {
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

// Set replaces the bundle. It refuses PEM without a certificate, so a broken
// CA never empties every Secret's ca.crt.
func (t *Trust) Set(pemBundle []byte) error {
	certs, err := ca.ParseCertificatesPEM(pemBundle)
	if err != nil {
		return fmt.Errorf("trust bundle: %w", err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	if t.v.Swap(&trustSnapshot{pem: bytes.Clone(pemBundle), pool: pool}) == nil {
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
