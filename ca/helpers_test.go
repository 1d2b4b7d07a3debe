package ca_test

import (
	"crypto/x509/pkix"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca"
)

func x509Name(cn, org string) pkix.Name {
	return pkix.Name{CommonName: cn, Organization: []string{org}}
}

// newCA is a fresh default CA for tests that do not care about its shape.
func newCA(t testing.TB) *ca.CA {
	t.Helper()
	c, err := ca.New(ca.Config{Clock: clocktesting.NewFakePassiveClock(time.Now())})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}
