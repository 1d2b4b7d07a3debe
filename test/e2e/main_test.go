package e2e

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/meshca/meshca/internal/daemontest"
	"github.com/meshca/meshca/internal/testenv"
)

const helmVersion = "v3.22.0"

func TestMain(m *testing.M) { daemontest.Main(m) }

var (
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
