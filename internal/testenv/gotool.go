package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// goTools memoizes GoTool per binary name for the life of a test binary.
var goTools sync.Map // name -> func() (string, error)

// GoTool returns the path of a Go tool (helm, zlint, step-ca, ...) built
// from the module proxy into the tool cache by hack/go-tool.sh, the locked,
// cached recipe the Makefile uses too. The build runs once per test binary
// and name; env adds variables for it (e.g. CGO_ENABLED=0). A cold build can
// take many minutes, so the only bound is a generous one.
func GoTool(name, pkg, version string, env ...string) (string, error) {
	f, _ := goTools.LoadOrStore(name, sync.OnceValues(func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(RepoRoot(), "hack", "go-tool.sh"), name, pkg, version)
		cmd.Env = append(os.Environ(), env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("hack/go-tool.sh %s: %w\n%s", name, err, stderr.String())
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		path := lines[len(lines)-1]
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("hack/go-tool.sh %s printed %q: %w", name, path, err)
		}
		return path, nil
	}))
	return f.(func() (string, error))()
}

// HelmVersion is the helm the chart tests and hack/run.sh use.
const HelmVersion = "v3.22.0"

// Helm returns the helm binary from the tool cache.
func Helm() (string, error) { return GoTool("helm", "helm.sh/helm/v3/cmd/helm", HelmVersion) }
