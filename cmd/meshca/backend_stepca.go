//go:build stepca

package main

import (
	"fmt"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/controller"
	"github.com/meshca/meshca/issuer"
	"github.com/meshca/meshca/issuer/stepca"
)

// stepcaBuilt: this meshca carries the stepca issuer backend.
const stepcaBuilt = true

// newStepCAIssuer is the stepca backend configured by the --stepca-* flags
// that validateIssuer has read. It does not contact step-ca: a step-ca that
// is down fails the Issue calls made while it is, which the controllers
// retry like any signing failure.
func newStepCAIssuer(o *serveOptions, policy issuer.Policy, alg ca.KeyAlgorithm) (controller.Issuer, error) {
	s, err := stepca.New(stepca.Config{
		URL:                 o.stepca.url,
		Root:                o.stepca.rootPEM,
		Provisioner:         o.stepca.provisioner,
		ProvisionerKey:      o.stepca.key,
		ProvisionerPassword: o.stepca.password,
		Policy:              policy,
		DefaultDuration:     o.leafDuration,
		DefaultKeyAlgorithm: alg,
	})
	if err != nil {
		return nil, fmt.Errorf("--issuer=stepca: %w", err)
	}
	return s, nil
}
