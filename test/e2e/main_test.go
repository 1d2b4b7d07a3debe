package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/meshca/meshca/internal/testenv"
)

const helmVersion = "v3.22.0"

// binDir holds the meshca binary built for this test binary.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "meshca-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := testenv.Run(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	// meshcaBinary builds cmd/meshca once per test binary, on first use, so
	// that -short runs (which start no control plane) build nothing.
	meshcaBinary = sync.OnceValues(func() (string, error) {
		out := filepath.Join(binDir, "meshca")
		cmd := exec.Command("go", "build", "-o", out, "./cmd/meshca")
		cmd.Dir = testenv.RepoRoot()
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build ./cmd/meshca: %w\n%s", err, b)
		}
		return out, nil
	})

	// helmBinary builds helm through hack/go-tool.sh, the cached recipe the
	// chart tests use too.
	helmBinary = sync.OnceValues(func() (string, error) {
		cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", "go-tool.sh"), "helm", "helm.sh/helm/v3/cmd/helm", helmVersion)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("hack/go-tool.sh helm: %w\n%s", err, stderr.String())
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return lines[len(lines)-1], nil
	})
)

func mustBinary(t *testing.T, build func() (string, error)) string {
	t.Helper()
	path, err := build()
	if err != nil {
		t.Fatal(err)
	}
	return path
}
