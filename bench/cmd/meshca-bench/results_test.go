package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCheckGoals(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		op         string
		value      float64
		lowerBound bool
		want       string
	}{
		"measured, met":                  {">=", 60, false, "met"},
		"measured, missed":               {">=", 5, false, "missed"},
		"lower bound at target settles":  {">=", 60, true, "met"},
		"lower bound below target":       {">=", 5, true, "not shown"},
		"lower bound above a ceiling":    {"<=", 60, true, "missed"},
		"lower bound under a ceiling":    {"<=", 5, true, "not shown"},
		"measured under a ceiling, met":  {"<=", 5, false, "met"},
		"measured above a ceiling, miss": {"<=", 60, false, "missed"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := &Results{Goals: []*Goal{{Figure: "f", Op: tc.op, Target: 50}}}
			r.add("s", "f", "x", tc.value).LowerBound = tc.lowerBound
			r.add("s", "f (projected)", "x", 100).Projected = true
			r.checkGoals()
			g := r.Goals[0]
			if got := g.verdict(); got != tc.want {
				t.Errorf("verdict %q, want %q", got, tc.want)
			}
			if g.Projected == nil || *g.Projected != 100 {
				t.Errorf("projection %v, want 100", g.Projected)
			}
		})
	}
}

func TestProjectAllReady(t *testing.T) {
	t.Parallel()
	s := time.Second
	cases := map[string]struct {
		run    readyRun
		n      int
		want   time.Duration
		wantOK bool
	}{
		"not capped": {readyRun{Total: 30 * s, Ready: 2, ReadyAt: []time.Duration{10 * s, 30 * s}}, 2, 0, false},
		"none ready": {readyRun{Total: 30 * s, Capped: true}, 10, 0, false},
		"none ready in the last third": {
			readyRun{Total: 30 * s, Capped: true, Ready: 1, ReadyAt: []time.Duration{5 * s}}, 10, 0, false,
		},
		// 4 ready in the last 10 s: 0.4/s; 6 to go take 15 s more.
		"steady rate of the last third": {
			readyRun{Total: 30 * s, Capped: true, Ready: 4, ReadyAt: []time.Duration{21 * s, 23 * s, 25 * s, 29 * s}}, 10, 45 * s, true,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, _, ok := projectAllReady(tc.run, tc.n)
			if ok != tc.wantOK || (ok && got.Round(time.Millisecond) != tc.want) {
				t.Errorf("projectAllReady = %s, %v; want %s, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestFoldGoBench(t *testing.T) {
	t.Parallel()
	out := `goos: linux
BenchmarkIssue/ecdsa-p256-2   1137   563856 ns/op   250000 floor-ns/op   0.80 floor/issue   312500 issue-ns/op
BenchmarkIssue/ecdsa-p256-2   1158   568490 ns/op   240000 floor-ns/op   0.75 floor/issue   320000 issue-ns/op
BenchmarkIssue/ecdsa-p256-2   1021   591250 ns/op   260000 floor-ns/op   0.90 floor/issue   288888 issue-ns/op
BenchmarkServeHTTP-2   15000   80300 ns/op   24500 B/op   142 allocs/op
PASS
`
	path := filepath.Join(t.TempDir(), "gobench.txt")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &Results{}
	if err := foldGoBench(r, path); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"floor ecdsa-p256":               250,
		"issue ecdsa-p256":               312.5,
		"issue/floor speed ecdsa-p256":   0.8,
		"webhook handler (Go benchmark)": 80.3,
	} {
		f := r.figure(name)
		if f == nil {
			t.Fatalf("no figure %q in %+v", name, r.Figures)
		}
		if f.Median != want {
			t.Errorf("%s: median %v, want %v (values %v)", name, f.Median, want, f.Values)
		}
	}
}
