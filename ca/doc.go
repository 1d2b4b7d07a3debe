// Package ca is meshca's internal certificate authority: it creates, loads and
// persists a root and an intermediate (in Kubernetes Secret meshca-ca or in a
// folder for the CLI), accepts a bring-your-own CA in cert-manager's or Istio's
// Secret shape, keeps the current, next and previous CA slots used during
// rotation, and produces the trust bundle.
//
// It must not sign leaf certificates (that is package issuer), decide when to
// rotate (package rotator), or ever replace a CA it found but could not read.
package ca
