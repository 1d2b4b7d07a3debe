//go:build race

package daemontest

// raceBuild: the tests run with -race, so the meshca they start is built
// with -race too (and shares the build cache with the test binary).
const raceBuild = true
