// Package examples holds the manifests `make run` applies, and the test that
// runs `make run`'s script end to end in its non-interactive mode.
package examples
