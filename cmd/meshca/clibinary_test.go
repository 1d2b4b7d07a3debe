package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/meshca/meshca/internal/daemontest"
)

// runBinary runs the meshca binary once with args, in an environment that
// holds only PATH, HOME and the extra settings in env (KEY=VALUE), so no
// kubeconfig of the machine running the tests leaks in. It returns stdout,
// stderr and the exit code.
func runBinary(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), daemontest.Binary(t), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "GORACE=halt_on_error=1"}, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("run meshca %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), code
}
