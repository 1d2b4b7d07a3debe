package controller

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"sync/atomic"

	"github.com/meshca/meshca/ca"
)

// Trust is the current trust bundle: the roots every consumer should trust.
// The CA manager replaces it on rotation; readers always see a whole bundle.
type Trust struct {
	v atomic.Pointer[trustSnapshot]
}

type trustSnapshot struct {
	pem  []byte
	pool *x509.CertPool
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
	t.v.Store(&trustSnapshot{pem: bytes.Clone(pemBundle), pool: pool})
	return nil
}

// PEM returns the bundle, or nil before the first Set.
func (t *Trust) PEM() []byte {
	if s := t.v.Load(); s != nil {
		return s.pem
	}
	return nil
}

func (t *Trust) snapshot() *trustSnapshot { return t.v.Load() }
