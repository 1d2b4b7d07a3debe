//go:build !stepca

package daemontest

// buildTags: the tests run without build tags, and so does the meshca they
// start.
const buildTags = ""
