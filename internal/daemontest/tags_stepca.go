//go:build stepca

package daemontest

// buildTags: the tests run with -tags stepca, so the meshca they start has
// the stepca issuer backend too.
const buildTags = "stepca"
