package metricdecl

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDir reads every form meshca declares metrics in, from a package
// written for the test.
func TestDir(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	src := `package p

import "github.com/prometheus/client_golang/prometheus"

var (
	a = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total"}, []string{"l1", "l2"})
	b = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "n", Subsystem: "s", Name: "d_seconds"}, []string{"kind"})
	c = prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"})
	d = prometheus.NewDesc("c_seconds", "help", []string{"slot"}, nil)
	e = prometheus.NewGauge(prometheus.GaugeOpts{Name: name})
)
`
	if err := os.MkdirAll(filepath.Join(root, "p"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "p", "p.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Module(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []Metric{
		{Name: "x_total", Kind: Counter, Labels: []string{"l1", "l2"}, Dir: "p"},
		{Name: "n_s_d_seconds", Kind: Histogram, Labels: []string{"kind"}, Dir: "p"},
		{Name: "g", Kind: Gauge, Dir: "p"},
		{Name: "c_seconds", Kind: Desc, Labels: []string{"slot"}, Dir: "p"},
		{Name: "", Kind: Gauge, Dir: "p"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d metrics %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.Kind != w.Kind || g.Dir != w.Dir || len(g.Labels) != len(w.Labels) {
			t.Errorf("metric %d = %+v, want %+v", i, g, w)
			continue
		}
		for j := range w.Labels {
			if g.Labels[j] != w.Labels[j] {
				t.Errorf("metric %d labels = %v, want %v", i, g.Labels, w.Labels)
			}
		}
	}
	h := want[1]
	for name, ok := range map[string]bool{
		"n_s_d_seconds": true, "n_s_d_seconds_bucket": true, "n_s_d_seconds_sum": true,
		"n_s_d_seconds_count": true, "n_s_d_seconds_total": false, "n_s_d": false,
	} {
		if h.Series(name) != ok {
			t.Errorf("histogram Series(%q) = %v, want %v", name, !ok, ok)
		}
	}
	if want[0].Series("x_total_count") {
		t.Error("a counter claims a _count series")
	}
}
