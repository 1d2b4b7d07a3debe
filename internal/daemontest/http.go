package daemontest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Get fetches http://addr/path and returns the status code and body.
func Get(ctx context.Context, addr, path string) (int, string, error) {
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

// WaitReady waits until /readyz answers 200, failing early if the process
// exits.
func (d *Daemon) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, "meshca "+d.Name+" /readyz 200", func(ctx context.Context) (bool, error) {
		if !d.Running() {
			return false, fmt.Errorf("%w: meshca %s exited: %v", ErrGiveUp, d.Name, d.Err())
		}
		code, _, err := Get(ctx, d.HealthAddr, "/readyz")
		return err == nil && code == http.StatusOK, nil
	})
}

// MetricsText is the body of /metrics.
//
// It waits for the endpoint to listen: a daemon that finds its work done
// may be asked before it has opened the port.
func (d *Daemon) MetricsText(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		code, body, err := Get(ctx, d.MetricsAddr, "/metrics")
		if err == nil && code == http.StatusOK {
			return body
		}
		if ctx.Err() != nil || !d.Running() {
			t.Fatalf("GET /metrics of meshca %s: %d %v", d.Name, code, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Metrics returns the samples on /metrics.
func (d *Daemon) Metrics(t testing.TB) Samples {
	t.Helper()
	return ParseSamples(d.MetricsText(t))
}

// Sample is one line of the Prometheus text format.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Samples are the samples of one scrape.
type Samples []Sample

// ParseSamples reads the Prometheus text format, enough for meshca's own
// metrics: label values without escaped quotes or commas.
func ParseSamples(text string) Samples {
	var out Samples
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
		s := Sample{Name: line[:sp], Labels: map[string]string{}, Value: v}
		if i := strings.IndexByte(s.Name, '{'); i >= 0 {
			for _, kv := range strings.Split(strings.TrimSuffix(s.Name[i+1:], "}"), ",") {
				if k, val, ok := strings.Cut(kv, "="); ok {
					s.Labels[k] = strings.Trim(val, `"`)
				}
			}
			s.Name = s.Name[:i]
		}
		out = append(out, s)
	}
	return out
}

// Find returns the samples named name whose labels include want
// (label=value pairs).
func (ss Samples) Find(name string, want ...string) []Sample {
	var out []Sample
next:
	for _, s := range ss {
		if s.Name != name {
			continue
		}
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			if s.Labels[k] != v {
				continue next
			}
		}
		out = append(out, s)
	}
	return out
}

// Value is the single sample named name with labels want, and whether
// there is exactly one.
func (ss Samples) Value(name string, want ...string) (float64, bool) {
	found := ss.Find(name, want...)
	if len(found) != 1 {
		return 0, false
	}
	return found[0].Value, true
}

// Sum adds up the samples named name with labels want.
func (ss Samples) Sum(name string, want ...string) float64 {
	var sum float64
	for _, s := range ss.Find(name, want...) {
		sum += s.Value
	}
	return sum
}

// ErrGiveUp, wrapped in a condition's error, ends Eventually at once.
var ErrGiveUp = errors.New("giving up")

// Eventually polls cond every 100ms until it reports done, returns an
// error wrapping ErrGiveUp (fatal), or timeout passes (fatal, with the last
// error cond returned). cond's context ends at the timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var lastErr error
	for {
		done, err := cond(ctx)
		if done {
			return
		}
		if err != nil && ctx.Err() == nil {
			lastErr = err
			if errors.Is(err, ErrGiveUp) {
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
