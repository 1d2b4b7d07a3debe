package main

import (
	"context"
	"fmt"
	"log"
	"slices"
	"strings"
	"time"
)

// readyRun is one "N objects created at once -> every Secret valid" run.
type readyRun struct {
	Total    time.Duration
	P50, P99 time.Duration
	PeakRSS  int64
	Ready    int
	Capped   bool
	// ReadyAt is when each ready Secret became valid, from the first
	// create, sorted.
	ReadyAt []time.Duration
	// Requests is the API server's resource request count over the run,
	// where measured.
	Requests float64
}

// timeline is how many were ready at each tenth of the run, for the log:
// "15s:0 30s:12 ...".
func timeline(r readyRun, parts int) string {
	var b strings.Builder
	for k := 1; k <= parts; k++ {
		at := r.Total * time.Duration(k) / time.Duration(parts)
		n, _ := slices.BinarySearch(r.ReadyAt, at+1)
		fmt.Fprintf(&b, "%s:%d ", at.Round(time.Second), n)
	}
	return strings.TrimSpace(b.String())
}

// projectAllReady estimates, for a run capped before all n were ready,
// when the last would have been: the cap plus the ones still missing at
// the rate of the run's last third. It is an extrapolation, reported as
// one; ok is false when nothing was ready in that last third.
func projectAllReady(r readyRun, n int) (total time.Duration, rate float64, ok bool) {
	if !r.Capped || r.Ready == 0 {
		return 0, 0, false
	}
	from := r.Total * 2 / 3
	i, _ := slices.BinarySearch(r.ReadyAt, from)
	k := len(r.ReadyAt) - i
	if k == 0 {
		return 0, 0, false
	}
	rate = float64(k) / (r.Total - from).Seconds()
	return r.Total + time.Duration(float64(n-r.Ready)/rate*float64(time.Second)), rate, true
}

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// summarise turns creation times and first-valid times into a run.
func summarise(created, ready map[string]time.Time) readyRun {
	var first, last time.Time
	var lat []time.Duration
	for name, c := range created {
		if first.IsZero() || c.Before(first) {
			first = c
		}
		r, ok := ready[name]
		if !ok {
			continue
		}
		if r.After(last) {
			last = r
		}
		lat = append(lat, r.Sub(c))
	}
	slices.Sort(lat)
	var at []time.Duration
	for name := range created {
		if r, ok := ready[name]; ok {
			at = append(at, r.Sub(first))
		}
	}
	slices.Sort(at)
	return readyRun{Total: last.Sub(first), P50: percentile(lat, 0.5), P99: percentile(lat, 0.99), Ready: len(lat), ReadyAt: at}
}

// meshcaReady runs meshca fresh, creates n TLSContexts in ns at once and
// waits until every Secret holds a valid certificate.
func (b *bench) meshcaReady(ctx context.Context, ns string, n int, lim limits, timeout time.Duration) (readyRun, error) {
	if err := b.ensureNamespace(ctx, ns, nil); err != nil {
		return readyRun{}, err
	}
	p, err := b.startMeshca(ctx, ns, lim.args...)
	if err != nil {
		return readyRun{}, err
	}
	defer p.stop()
	w, err := newReadyWatch(ctx, b.cs, ns, n, nil)
	if err != nil {
		return readyRun{}, err
	}
	created, err := b.createTLSContexts(ctx, ns, n)
	if err != nil {
		return readyRun{}, err
	}
	werr := w.wait(ctx, timeout)
	if werr != nil {
		if err := p.exited(); err != nil {
			return readyRun{}, err
		}
	}
	ready, _ := w.snapshot()
	r := summarise(created, ready)
	r.Capped = werr != nil
	if r.Capped {
		r.Total = timeout
	}
	r.PeakRSS, _ = p.peakRSS()
	return r, nil
}

// phaseReady: time to ready for each N, each run paired with an API write
// floor run in the same minute so their ratio shares the machine's load.
func (b *bench) phaseReady(ctx context.Context) error {
	for _, n := range b.o.readyN {
		var total, p50, p99, floor, rss []float64
		for run := range b.o.readyRuns {
			fns := fmt.Sprintf("floor-%d-%d", n, run)
			if err := b.ensureNamespace(ctx, fns, nil); err != nil {
				return err
			}
			fl, err := b.apiWriteFloor(ctx, fns, n)
			if err != nil {
				return err
			}
			ns := fmt.Sprintf("ready-%d-%d", n, run)
			r, err := b.meshcaReady(ctx, ns, n, meshcaLifted, 5*time.Minute)
			if err != nil {
				return err
			}
			if r.Capped {
				return fmt.Errorf("time to ready with N=%d: only %d of %d Secrets ready in 5m", n, r.Ready, n)
			}
			log.Printf("ready N=%d run %d: meshca %s (p50 %s p99 %s, peak RSS %d MiB), API write floor %s",
				n, run, r.Total.Round(time.Millisecond), r.P50.Round(time.Millisecond), r.P99.Round(time.Millisecond), r.PeakRSS>>20, fl.Round(time.Millisecond))
			total = append(total, secs(r.Total))
			p50 = append(p50, secs(r.P50)*1000)
			p99 = append(p99, secs(r.P99)*1000)
			floor = append(floor, secs(fl))
			rss = append(rss, float64(r.PeakRSS)/(1<<20))
			for _, ns := range []string{fns, ns} {
				if err := b.emptyNamespace(ctx, ns); err != nil {
					return err
				}
			}
		}
		sec := "2 time to ready"
		b.res.add(sec, fmt.Sprintf("ready N=%d total", n), "s", total...)
		b.res.add(sec, fmt.Sprintf("ready N=%d p50 per object", n), "ms", p50...)
		b.res.add(sec, fmt.Sprintf("ready N=%d p99 per object", n), "ms", p99...)
		b.res.add(sec, fmt.Sprintf("ready N=%d peak RSS", n), "MiB", rss...)
		b.res.add("7 API write floor", fmt.Sprintf("API write floor N=%d (serial creates)", n), "s", floor...)
		b.res.add("7 API write floor", fmt.Sprintf("ready N=%d / API write floor", n), "x", ratios(total, floor)...)
	}
	return nil
}
