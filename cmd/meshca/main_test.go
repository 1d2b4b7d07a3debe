package main

import (
	"testing"

	"github.com/meshca/meshca/internal/daemontest"
	"github.com/meshca/meshca/internal/testenv"
)

func TestMain(m *testing.M) { daemontest.Main(m) }

// startDaemon runs `meshca serve` confined to ns (daemontest.ServeArgs)
// with extra flags after those (a later single-value flag wins).
func startDaemon(t *testing.T, env *testenv.Env, ns string, extra ...string) *daemontest.Daemon {
	t.Helper()
	return daemontest.Start(t, "meshca", append(daemontest.ServeArgs(env, ns), extra...))
}
