package daemontest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/meshca/meshca/internal/testenv"
)

var (
	binMu  sync.Mutex
	binDir string
	// binary builds cmd/meshca on first use, so runs that start no daemon
	// (-short, a -run of pure tests) build nothing.
	binary = sync.OnceValues(func() (string, error) { return build("meshca", raceBuild) })
	// releaseBinary is cmd/meshca built without -race, as it ships.
	releaseBinary = sync.OnceValues(func() (string, error) { return build("meshca-release", false) })
)

// build builds cmd/meshca into the package's temporary folder, with the
// race detector when race is set and with the tests' build tags.
func build(name string, race bool) (string, error) {
	binMu.Lock()
	if binDir == "" {
		dir, err := os.MkdirTemp("", "meshca-bin-")
		if err != nil {
			binMu.Unlock()
			return "", err
		}
		binDir = dir
	}
	out := filepath.Join(binDir, name)
	binMu.Unlock()
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	if buildTags != "" {
		args = append(args, "-tags", buildTags)
	}
	cmd := exec.Command("go", append(args, "./cmd/meshca")...)
	cmd.Dir = testenv.RepoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/meshca: %w\n%s", err, b)
	}
	return out, nil
}

// Main runs the package's tests on the shared control plane (testenv.Run),
// removes the meshca binary it built and exits. Call it from TestMain.
func Main(m *testing.M) {
	code := testenv.Run(m)
	binMu.Lock()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	binMu.Unlock()
	os.Exit(code)
}

// Binary returns the path of the meshca binary, building it once per test
// binary (with -race and -tags stepca when the tests run with them).
func Binary(t testing.TB) string {
	t.Helper()
	path, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// ReleaseBinary returns the path of a meshca binary built without -race,
// as it ships, for tests that measure the process's memory: the race
// detector's shadow memory would multiply it. Built once per test binary.
func ReleaseBinary(t testing.TB) string {
	t.Helper()
	path, err := releaseBinary()
	if err != nil {
		t.Fatal(err)
	}
	return path
}
