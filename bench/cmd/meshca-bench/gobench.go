package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// foldGoBench reads `go test -bench -count N` output and adds, per key
// algorithm, the floor's and the full issuance's time per operation and
// their ratio (floor time / issue time: the fraction of the floor's speed
// issuance reaches), one value per pass of -count. BenchmarkIssue measures
// both interleaved in one sub-benchmark and reports them as the
// floor-ns/op, issue-ns/op and floor/issue metrics. It also adds the
// webhook handler's time per request.
func foldGoBench(res *Results, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// metrics[name][unit] holds one value per pass of -count.
	metrics := map[string]map[string][]float64{}
	var order []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		name := fields[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i] // drop the -GOMAXPROCS suffix
			}
		}
		if _, seen := metrics[name]; !seen {
			order = append(order, name)
			metrics[name] = map[string][]float64{}
		}
		// After the iteration count come value-unit pairs.
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				break
			}
			metrics[name][fields[i+1]] = append(metrics[name][fields[i+1]], v)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	for _, name := range order {
		alg, ok := strings.CutPrefix(name, "BenchmarkIssue/")
		if !ok {
			continue
		}
		m := metrics[name]
		sec := "1 issuance"
		res.add(sec, "floor "+alg, "µs/op", scale(m["floor-ns/op"], 1e-3)...)
		res.add(sec, "issue "+alg, "µs/op", scale(m["issue-ns/op"], 1e-3)...)
		res.add(sec, "issue/floor speed "+alg, "x", m["floor/issue"]...)
	}
	if v := metrics["BenchmarkServeHTTP"]["ns/op"]; len(v) > 0 {
		res.add("4 webhook", "webhook handler (Go benchmark)", "µs/op", scale(v, 1e-3)...)
	}
	return nil
}

func scale(v []float64, k float64) []float64 {
	out := make([]float64, len(v))
	for i := range v {
		out[i] = v[i] * k
	}
	return out
}
