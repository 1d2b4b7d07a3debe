package daemontest

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/internal/testpki"
)

// Daemon is one meshca process.
type Daemon struct {
	// Name tells replicas apart in test logs and names the log file.
	Name string
	// WebhookPort, MetricsAddr and HealthAddr are the free ports Start
	// gave the process.
	WebhookPort int
	MetricsAddr string
	HealthAddr  string

	cmd     *exec.Cmd
	log     *testenv.LockedBuffer
	done    chan struct{}
	exitErr error
}

// ServeArgs are the arguments of a `meshca serve` confined to ns: its CA
// Secret, Lease and webhook Secret live there, it watches only ns, and its
// webhook configuration is named after ns, so daemons of parallel tests do
// not meet. Later flags of the same name win for single values; give list
// flags (--watch-namespaces, --webhook-names) through WithFlags to replace
// them.
func ServeArgs(env *testenv.Env, ns string) []string {
	return []string{"serve",
		"--kubeconfig=" + env.Kubeconfig,
		"--namespace=" + ns,
		"--watch-namespaces=" + ns,
		"--webhook-names=127.0.0.1",
		"--webhook-configuration=meshca-" + ns,
	}
}

// WithFlags returns args with every flag named in overrides (--name=value)
// replaced by the override, in both the --name=value and the --name value
// form (every flag it replaces takes a value): pflag appends to list flags
// given twice, so appending alone would not replace --webhook-names.
func WithFlags(args []string, overrides ...string) []string {
	names := map[string]bool{}
	for _, o := range overrides {
		names[strings.SplitN(o, "=", 2)[0]] = true
	}
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if names[a] { // --name value
			i++
			continue
		}
		if names[strings.SplitN(a, "=", 2)[0]] {
			continue
		}
		out = append(out, a)
	}
	return append(out, overrides...)
}

// Start runs `meshca <args>` with free ports for the webhook, metrics and
// health endpoints and JSON logs (replacing those flags in args), in an
// environment without MESHCA_* or POD_NAMESPACE settings and with the race
// detector halting on the first race. The log goes to memory and to a file
// in t.TempDir(), or in $MESHCA_TEST_LOGS (kept) when that is set. The
// process is killed when the test ends if it still runs; its log is
// printed when the test failed.
func Start(t testing.TB, name string, args []string) *Daemon {
	t.Helper()
	return start(t, name, Binary(t), args)
}

// StartRelease is Start with the binary built without -race
// (ReleaseBinary), for tests that measure its memory.
func StartRelease(t testing.TB, name string, args []string) *Daemon {
	t.Helper()
	return start(t, name, ReleaseBinary(t), args)
}

func start(t testing.TB, name, binary string, args []string) *Daemon {
	t.Helper()
	d := &Daemon{
		Name:        name,
		log:         &testenv.LockedBuffer{},
		WebhookPort: testpki.FreePort(t),
		MetricsAddr: fmt.Sprintf("127.0.0.1:%d", testpki.FreePort(t)),
		HealthAddr:  fmt.Sprintf("127.0.0.1:%d", testpki.FreePort(t)),
		done:        make(chan struct{}),
	}
	args = WithFlags(args,
		fmt.Sprintf("--webhook-port=%d", d.WebhookPort),
		"--metrics-address="+d.MetricsAddr,
		"--health-address="+d.HealthAddr,
		"--log-format=json",
	)
	d.cmd = exec.Command(binary, args...)
	dir := os.Getenv("MESHCA_TEST_LOGS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%s.log", strings.ReplaceAll(t.Name(), "/", "_"), name)))
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stdout = io.MultiWriter(d.log, logFile)
	d.cmd.Stderr = d.cmd.Stdout
	// The environment must not set flags behind the test's back.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MESHCA_") && !strings.HasPrefix(kv, "POD_NAMESPACE=") && !strings.HasPrefix(kv, "GORACE=") {
			d.cmd.Env = append(d.cmd.Env, kv)
		}
	}
	d.cmd.Env = append(d.cmd.Env, "GORACE=halt_on_error=1")
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start meshca %s: %v", name, err)
	}
	go func() {
		d.exitErr = d.cmd.Wait()
		logFile.Close()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.Kill()
		if t.Failed() {
			t.Logf("log of meshca %s (%s):\n%s", name, logFile.Name(), Tail(d.Log(), 8000))
		}
	})
	return d
}

// PeakRSS is the process's peak resident set size so far (VmHWM in
// /proc/<pid>/status), in bytes; it fails once the process has exited.
func (d *Daemon) PeakRSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("peak RSS of meshca %s: %w", d.Name, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("peak RSS of meshca %s: %q: %w", d.Name, line, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("peak RSS of meshca %s: no VmHWM in /proc/%d/status", d.Name, d.cmd.Process.Pid)
}

// Log is what the process has written to stdout and stderr so far.
func (d *Daemon) Log() string { return d.log.String() }

// Running reports whether the process still runs.
func (d *Daemon) Running() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// Err is the process's exit error (nil for exit code 0) once it has
// exited, nil before.
func (d *Daemon) Err() error {
	if d.Running() {
		return nil
	}
	return d.exitErr
}

// Wait waits up to timeout for the process to end and returns whether it
// ended and its exit error.
func (d *Daemon) Wait(timeout time.Duration) (exited bool, err error) {
	select {
	case <-d.done:
		return true, d.exitErr
	case <-time.After(timeout):
		return false, nil
	}
}

// Kill ends the process with SIGKILL, as a crash or an OOM kill would, and
// waits for it; it does nothing if the process has ended.
func (d *Daemon) Kill() {
	if !d.Running() {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// Stop sends sig and waits up to timeout for the exit; it returns how long
// the process took and its exit error, or an error if it still runs.
func (d *Daemon) Stop(t testing.TB, sig syscall.Signal, timeout time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to meshca %s: %v", sig, d.Name, err)
	}
	select {
	case <-d.done:
		return time.Since(start), d.exitErr
	case <-time.After(timeout):
		return time.Since(start), fmt.Errorf("meshca %s still runs %s after %v", d.Name, timeout, sig)
	}
}

// Terminate ends the process with SIGTERM and fails the test unless it
// exits cleanly within a minute.
func (d *Daemon) Terminate(t testing.TB) {
	t.Helper()
	if !d.Running() {
		return
	}
	if _, err := d.Stop(t, syscall.SIGTERM, time.Minute); err != nil {
		t.Errorf("meshca %s after SIGTERM: %v", d.Name, err)
		d.Kill()
	}
}

// Tail is the last n bytes of s.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}
