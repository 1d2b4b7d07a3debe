//go:build !stepca

package main

import (
	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/controller"
	"github.com/meshca/meshca/issuer"
)

// stepcaBuilt: this meshca lacks the stepca issuer backend, whose client
// would add ~58 MB to every binary (measured in docs/design.md).
const stepcaBuilt = false

// newStepCAIssuer refuses: the stepca backend is not in this build.
func newStepCAIssuer(*serveOptions, issuer.Policy, ca.KeyAlgorithm) (controller.Issuer, error) {
	return nil, errStepCANotBuilt
}
