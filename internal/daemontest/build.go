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
	binary = sync.OnceValues(func() (string, error) {
		dir, err := os.MkdirTemp("", "meshca-bin-")
		if err != nil {
			return "", err
		}
		binMu.Lock()
		binDir = dir
		binMu.Unlock()
		out := filepath.Join(dir, "meshca")
		args := []string{"build", "-o", out}
		if raceBuild {
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
	})
)

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
