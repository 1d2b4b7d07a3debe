package e2e

import (
	"testing"

	"github.com/meshca/meshca/internal/daemontest"
)

func TestMain(m *testing.M) { daemontest.Main(m) }

func mustBinary(t *testing.T, build func() (string, error)) string {
	t.Helper()
	path, err := build()
	if err != nil {
		t.Fatal(err)
	}
	return path
}
