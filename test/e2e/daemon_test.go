package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshca/meshca/internal/testpki"
)

// daemon is one `meshca serve` process.
type daemon struct {
	name        string
	cmd         *exec.Cmd
	logs        *lockedBuffer
	webhookPort int
	metricsAddr string
	healthAddr  string

	exited  chan struct{}
	exitErr error
}

// lockedBuffer collects a process's output; the process writes while the
// test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// withFlags returns args with every flag named in overrides (--name=value)
// replaced by the override: pflag appends to list flags given twice, so
// appending alone would not replace --webhook-names.
func withFlags(args []string, overrides ...string) []string {
	names := map[string]bool{}
	for _, o := range overrides {
		names[strings.SplitN(o, "=", 2)[0]] = true
	}
	var out []string
	for _, a := range args {
		if names[strings.SplitN(a, "=", 2)[0]] {
			continue
		}
		out = append(out, a)
	}
	return append(out, overrides...)
}

// startDaemon runs `meshca <args>` with free ports for the webhook, metrics
// and health endpoints and JSON logs. The process is killed when the test
// ends if it still runs; its log is printed when the test failed.
func startDaemon(t *testing.T, name string, args []string) *daemon {
	t.Helper()
	d := &daemon{
		name:        name,
		logs:        &lockedBuffer{},
		webhookPort: testpki.FreePort(t),
		metricsAddr: fmt.Sprintf("127.0.0.1:%d", testpki.FreePort(t)),
		healthAddr:  fmt.Sprintf("127.0.0.1:%d", testpki.FreePort(t)),
		exited:      make(chan struct{}),
	}
	args = withFlags(args,
		fmt.Sprintf("--webhook-port=%d", d.webhookPort),
		"--metrics-address="+d.metricsAddr,
		"--health-address="+d.healthAddr,
		"--log-format=json",
	)
	d.cmd = exec.Command(mustBinary(t, meshcaBinary), args...)
	logFile, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stdout = io.MultiWriter(d.logs, logFile)
	d.cmd.Stderr = d.cmd.Stdout
	// The environment must not set flags behind the test's back.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MESHCA_") && !strings.HasPrefix(kv, "POD_NAMESPACE=") {
			d.cmd.Env = append(d.cmd.Env, kv)
		}
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start meshca %s: %v", name, err)
	}
	go func() {
		d.exitErr = d.cmd.Wait()
		logFile.Close()
		close(d.exited)
	}()
	t.Cleanup(func() {
		if d.running() {
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			t.Logf("log of meshca %s (%s):\n%s", name, logFile.Name(), tail(d.logs.String(), 8000))
		}
	})
	return d
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

func (d *daemon) running() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// signal sends sig and, unless it is SIGKILL, waits up to timeout for the
// exit; it returns how long the process took to exit.
func (d *daemon) stop(t *testing.T, sig syscall.Signal, timeout time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to meshca %s: %v", sig, d.name, err)
	}
	select {
	case <-d.exited:
		return time.Since(start), d.exitErr
	case <-time.After(timeout):
		return time.Since(start), fmt.Errorf("meshca %s still runs %s after %v", d.name, timeout, sig)
	}
}

// get fetches http://addr/path and returns the status code and body.
func get(ctx context.Context, addr, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitReady waits until /readyz answers 200, failing early if the process
// exits.
func (d *daemon) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "meshca "+d.name+" /readyz 200", func(ctx context.Context) (bool, error) {
		if !d.running() {
			return false, fmt.Errorf("%w: meshca %s exited: %v", errGiveUp, d.name, d.exitErr)
		}
		code, _, err := get(ctx, d.healthAddr, "/readyz")
		return err == nil && code == http.StatusOK, nil
	})
}

// scrape returns the samples on d's /metrics.
func (d *daemon) scrape(t *testing.T) samples {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	code, body, err := get(ctx, d.metricsAddr, "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics of meshca %s: %d %v", d.name, code, err)
	}
	return parseSamples(body)
}

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

type samples []sample

// parseSamples reads the Prometheus text format, enough for meshca's own
// metrics: label values without escaped quotes or commas.
func parseSamples(text string) samples {
	var out samples
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		s := sample{name: line[:sp], labels: map[string]string{}, value: v}
		if i := strings.IndexByte(s.name, '{'); i >= 0 {
			for _, kv := range strings.Split(strings.TrimSuffix(s.name[i+1:], "}"), ",") {
				if k, val, ok := strings.Cut(kv, "="); ok {
					s.labels[k] = strings.Trim(val, `"`)
				}
			}
			s.name = s.name[:i]
		}
		out = append(out, s)
	}
	return out
}

// find returns the samples named name whose labels include want
// (label=value pairs).
func (ss samples) find(name string, want ...string) []sample {
	var out []sample
next:
	for _, s := range ss {
		if s.name != name {
			continue
		}
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			if s.labels[k] != v {
				continue next
			}
		}
		out = append(out, s)
	}
	return out
}

// value is the single sample named name with labels want, and whether
// there is exactly one.
func (ss samples) value(name string, want ...string) (float64, bool) {
	found := ss.find(name, want...)
	if len(found) != 1 {
		return 0, false
	}
	return found[0].value, true
}

// errGiveUp, wrapped in a condition's error, ends eventually at once.
var errGiveUp = errors.New("giving up")

// eventually polls cond every 100ms until it reports done, returns an
// error (fatal), or timeout passes (fatal).
func eventually(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var lastErr error
	for {
		done, err := cond(ctx)
		if done {
			return
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			lastErr = err
			if errors.Is(err, errGiveUp) {
				t.Fatalf("waiting for %s: %v", what, err)
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no %s within %v (last error: %v)", what, timeout, lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
