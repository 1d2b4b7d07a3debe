//go:build tools

// Package tools pins cert-manager's controller so hack/build-certmanager.sh
// can build it from the Go module proxy for the side-by-side benchmark.
package certmanager

import _ "github.com/cert-manager/cert-manager/cmd/controller"
