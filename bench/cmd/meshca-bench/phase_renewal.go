package main

import (
	"context"
	"fmt"
	"log"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// shortLeaf is the --leaf-duration of the certificates a renewal round
// starts from. With the 1m backdating their lifetime is 2m and meshca
// renews at 2/3 of it (minus up to 5% jitter): about 20s after issuance.
const shortLeaf = "1m"

// phaseRenewal: renewal at scale. For each N and each limit setting, a
// preparation run (meshca at lifted limits, --leaf-duration=1m) issues N
// short-lived certificates and stops; the harness waits until the last
// meshca.io/renew-at has passed, so every certificate is due (the earliest
// may have expired), then starts meshca with the setting under test and the
// default 24h leaf lifetime and times it from process start to the moment
// every Secret holds a new certificate. The API server's resource request
// count (apiserver_request_total) is read before the start and after the
// last renewal.
func (b *bench) phaseRenewal(ctx context.Context) error {
	for i, n := range b.o.renewN {
		settings := []limits{meshcaLifted}
		if n <= b.o.renewRatedN {
			settings = append(settings, meshcaDefaults)
		}
		for _, lim := range settings {
			last := i == len(b.o.renewN)-1 && lim.name == settings[len(settings)-1].name
			if err := b.renewRound(ctx, n, lim, last); err != nil {
				return err
			}
		}
		if n > b.o.renewRatedN {
			b.res.Skipped = append(b.res.Skipped, fmt.Sprintf("renewal N=%d at --max-issuance-rate=50 (would take >= %ds of rate limit alone; does not fit the 20-minute budget)", n, n/50))
		}
	}
	return nil
}

func (b *bench) renewRound(ctx context.Context, n int, lim limits, measureMemory bool) error {
	ns := fmt.Sprintf("renew-%d-%s", n, lim.name)
	prepLimits := limits{name: "prep", args: append([]string{"--leaf-duration=" + shortLeaf}, meshcaLifted.args...)}
	t := time.Now()
	prep, err := b.meshcaReady(ctx, ns, n, prepLimits, 10*time.Minute)
	if err != nil {
		return err
	}
	if prep.Capped {
		return fmt.Errorf("renewal N=%d: preparation issued %d of %d in 10m", n, prep.Ready, n)
	}
	log.Printf("renewal N=%d %s: %d short-lived certificates issued in %s", n, lim.name, n, time.Since(t).Round(time.Second))
	b.res.add("2 time to ready", fmt.Sprintf("ready N=%d total (renewal preparation)", n), "s", secs(prep.Total)).Note = "one run, lifted limits"
	list, err := b.cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	old := map[string]string{}
	var due time.Time
	for _, s := range list.Items {
		at, err := time.Parse(time.RFC3339, s.Annotations["meshca.io/renew-at"])
		if err != nil {
			continue
		}
		if at.After(due) {
			due = at
		}
		if serial, ok := validTLS(s.Data["tls.crt"], s.Data["tls.key"], due); ok {
			old[s.Name] = serial
		} else {
			old[s.Name] = "expired"
		}
	}
	if wait := time.Until(due) + 2*time.Second; wait > 0 {
		log.Printf("renewal N=%d %s: waiting %s until every certificate is due", n, lim.name, wait.Round(time.Second))
		time.Sleep(wait)
	}
	w, err := newReadyWatch(ctx, b.cs, ns, n, old)
	if err != nil {
		return err
	}
	before, err := b.apiRequests(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	p, err := b.startMeshca(ctx, ns+"-renew", lim.args...)
	if err != nil {
		return err
	}
	werr := w.wait(ctx, 10*time.Minute)
	took := time.Since(start)
	after, aerr := b.apiRequests(ctx)
	rss, _ := p.peakRSS()
	p.stop()
	if werr != nil {
		return fmt.Errorf("renewal N=%d %s: %w", n, lim.name, werr)
	}
	if aerr != nil {
		return aerr
	}
	perCert := (after - before) / float64(n)
	log.Printf("renewal N=%d %s: all renewed in %s, %.1f API requests per certificate, peak RSS %d MiB", n, lim.name, took.Round(time.Millisecond), perCert, rss>>20)
	sec := "3 renewal"
	what := "--max-issuance-rate=50 (default)"
	if lim.name == "lifted" {
		what = "limits lifted"
	}
	b.res.add(sec, fmt.Sprintf("renew N=%d, %s", n, what), "s", secs(took)).Note = "from meshca start to the last new certificate written"
	b.res.add(sec, fmt.Sprintf("renew N=%d, %s: API requests/cert", n, what), "req", perCert)
	b.res.add(sec, fmt.Sprintf("renew N=%d, %s: peak RSS", n, what), "MiB", float64(rss)/(1<<20))
	if measureMemory {
		v, err := b.settledRSS(ctx, fmt.Sprintf("mem-%d", n), n)
		if err != nil {
			return err
		}
		b.res.add("5 memory", fmt.Sprintf("peak RSS, %d managed", n), "MiB", v).Note = "fresh start, every Secret valid"
	}
	return b.emptyNamespace(ctx, ns)
}
