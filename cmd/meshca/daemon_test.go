package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/internal/testpki"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := testenv.Run(m)
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// meshcaBinary builds the meshca binary once per test run (with -race when
// the tests run with it) and returns its path.
func meshcaBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "meshca-bin-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "meshca")
		args := []string{"build", "-o", binPath}
		if raceBuild {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, ".")...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// syncBuffer is a log sink safe for the process's writers and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// daemon is one `meshca serve` subprocess against the test control plane.
type daemon struct {
	cmd         *exec.Cmd
	log         *syncBuffer
	metricsAddr string
	done        chan struct{}
	waitErr     error
}

// daemonArgs are the flags every test daemon gets: its own namespace (CA
// Secret, Lease, webhook Secret), its own webhook configuration name and
// free ports, so daemons of parallel tests do not meet.
func daemonArgs(t *testing.T, env *testenv.Env, ns string) []string {
	return []string{"serve",
		"--kubeconfig", env.Kubeconfig,
		"--namespace", ns,
		"--webhook-names", "127.0.0.1",
		"--webhook-port", fmt.Sprint(testpki.FreePort(t)),
		"--webhook-configuration", "meshca-" + ns,
		"--health-address", "0",
		"--log-format", "json",
	}
}

// startDaemon runs meshca serve with daemonArgs, --watch-namespaces ns and
// extra flags (later flags win), logging into memory. It is killed when the
// test ends.
func startDaemon(t *testing.T, env *testenv.Env, ns string, extra ...string) *daemon {
	t.Helper()
	d := &daemon{log: &syncBuffer{}, done: make(chan struct{})}
	d.metricsAddr = fmt.Sprintf("127.0.0.1:%d", testpki.FreePort(t))
	args := append(daemonArgs(t, env, ns), "--metrics-address", d.metricsAddr, "--watch-namespaces", ns)
	args = append(args, extra...)
	d.cmd = exec.Command(meshcaBinary(t), args...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	// The environment must not leak MESHCA_* settings of the developer.
	d.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "GORACE=halt_on_error=1"}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start meshca: %v", err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.kill()
		if t.Failed() {
			t.Logf("meshca log (last 6000 bytes):\n%s", tail(d.log.String(), 6000))
		}
	})
	return d
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// exited reports whether the process has ended.
func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// wait waits up to timeout for the process to end and returns its error
// (nil for exit code 0); ok is false if it is still running.
func (d *daemon) wait(timeout time.Duration) (err error, ok bool) {
	select {
	case <-d.done:
		return d.waitErr, true
	case <-time.After(timeout):
		return nil, false
	}
}

// kill ends the process with SIGKILL, as a crash or an OOM kill would.
func (d *daemon) kill() {
	if d.exited() {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// stop ends the process with SIGTERM and waits for a clean exit.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if d.exited() {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if err, ok := d.wait(60 * time.Second); !ok {
		t.Errorf("meshca did not stop within 60s of SIGTERM")
		d.kill()
	} else if err != nil {
		t.Errorf("meshca exited with %v after SIGTERM", err)
	}
}

// metrics scrapes /metrics, waiting for the endpoint to listen: a daemon
// that finds its work done may be asked before it has opened the port.
func (d *daemon) metrics(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var resp *http.Response
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.metricsAddr+"/metrics", nil)
		var err error
		if resp, err = http.DefaultClient.Do(req); err == nil {
			break
		}
		if ctx.Err() != nil || d.exited() {
			t.Fatalf("scrape metrics: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
