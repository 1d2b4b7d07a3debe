package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// foldGoBench reads `go test -bench -count N` output and adds, per key
// algorithm, the floor's and the full issuance's ns/op and their ratio
// (floor time / issue time: the fraction of the floor's speed issuance
// reaches), pairing the k-th floor with the k-th issue result (the same
// pass of -count), plus the webhook handler's time per request.
func foldGoBench(res *Results, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	nsop := map[string][]float64{}
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
		for i := 2; i+1 < len(fields); i++ {
			if fields[i+1] == "ns/op" {
				v, err := strconv.ParseFloat(fields[i], 64)
				if err == nil {
					if _, seen := nsop[name]; !seen {
						order = append(order, name)
					}
					nsop[name] = append(nsop[name], v)
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	for _, name := range order {
		alg, ok := strings.CutPrefix(name, "BenchmarkIssue/")
		if !ok || !strings.HasSuffix(alg, "/floor") {
			continue
		}
		alg = strings.TrimSuffix(alg, "/floor")
		floor, issue := nsop[name], nsop["BenchmarkIssue/"+alg+"/issue"]
		sec := "1 issuance"
		res.add(sec, "floor "+alg, "µs/op", scale(floor, 1e-3)...)
		res.add(sec, "issue "+alg, "µs/op", scale(issue, 1e-3)...)
		res.add(sec, "issue/floor speed "+alg, "x", ratios(floor, issue)...)
	}
	if v := nsop["BenchmarkServeHTTP"]; len(v) > 0 {
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
