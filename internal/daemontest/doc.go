// Package daemontest runs the meshca binary as a child process against the
// test control plane (internal/testenv): it builds cmd/meshca once per test
// binary, starts `meshca serve` with free ports and a clean environment,
// collects its log, kills it when the test ends and reads its metrics and
// health endpoints. It is for tests only (cmd/meshca and test/e2e) and must
// not hold assertions about meshca's behaviour: those stay in the tests.
package daemontest
