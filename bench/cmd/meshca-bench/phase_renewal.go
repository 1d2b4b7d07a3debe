package main

import (
	"context"
	"fmt"
	"log"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// prepLeaf is the --leaf-duration of the certificates a renewal round
// starts from, and the meshca.io/renew-before that then makes all of them
// due at once: with the 1m backdating their lifetime is prepLeaf+1m, so
// renewing prepLeaf before NotAfter is due from issuance. Long enough that
// nothing renews while 10,000 are being issued; the renewed certificates
// (24h) are next due about 23h later, so nothing renews twice.
const prepLeaf = time.Hour

// patchWorkers is how many renew-before annotations are sent at once.
const patchWorkers = 48

// phaseRenewal: renewal at scale. For each N and each limit setting, a
// preparation run (meshca at lifted limits, --leaf-duration=prepLeaf)
// issues N certificates and stops; the harness then annotates every
// TLSContext with meshca.io/renew-before=prepLeaf, which makes every
// certificate due at once (what a long outage, or a change of policy,
// leaves behind), starts meshca with the setting under test and the
// default 24h leaf lifetime and times it from process start to the moment
// every Secret holds a new certificate. The API server's resource request
// count (apiserver_request_total) is read before the start and after the
// last renewal.
func (b *bench) phaseRenewal(ctx context.Context) error {
	for _, n := range b.o.renewN {
		settings := []limits{meshcaLifted}
		if n <= b.o.renewRatedN {
			settings = append(settings, meshcaDefaults)
		}
		for k, lim := range settings {
			// The last round of each N also measures memory at N managed.
			last := k == len(settings)-1
			// Nothing follows the run's very last round when renewal is
			// the last phase: the control plane goes, so its objects
			// need no deleting (a minute at N=10,000).
			keep := last && n == b.o.renewN[len(b.o.renewN)-1] && b.lastPhase
			if err := b.renewRound(ctx, n, lim, last, keep); err != nil {
				return err
			}
		}
		if n > b.o.renewRatedN {
			b.res.Skipped = append(b.res.Skipped, fmt.Sprintf("renewal N=%d at --max-issuance-rate=50 (would take >= %ds of rate limit alone)", n, n/50))
		}
	}
	return nil
}

// makeDue annotates every TLSContext of ns with
// meshca.io/renew-before=prepLeaf, patchWorkers at a time (nothing is timed
// here, and small patches go faster with more in flight).
func (b *bench) makeDue(ctx context.Context, ns string, n int) error {
	dyn, err := dynamic.NewForConfig(b.cfg)
	if err != nil {
		return err
	}
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{"meshca.io/renew-before":%q}}}`, prepLeaf))
	return parallelN(n, patchWorkers, func(i int) error {
		_, err := dyn.Resource(tlsContextGVR).Namespace(ns).Patch(ctx, tcName(i), types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	})
}

func (b *bench) renewRound(ctx context.Context, n int, lim limits, measureMemory, keep bool) error {
	ns := fmt.Sprintf("renew-%d-%s", n, lim.name)
	prepLimits := limits{name: "prep", args: append([]string{"--leaf-duration=" + prepLeaf.String()}, meshcaLifted.args...)}
	t := time.Now()
	prepTimeout := max(5*time.Minute, time.Duration(n)*60*time.Millisecond)
	prep, err := b.meshcaReady(ctx, ns, n, prepLimits, prepTimeout)
	if err != nil {
		return err
	}
	if prep.Capped {
		return fmt.Errorf("renewal N=%d: preparation issued %d of %d in %s", n, prep.Ready, n, prepTimeout)
	}
	log.Printf("renewal N=%d %s: %d certificates issued in %s (%s from the first create)", n, lim.name, n, time.Since(t).Round(time.Second), prep.Total.Round(time.Millisecond))
	b.res.add("2 time to ready", fmt.Sprintf("ready N=%d total (renewal preparation)", n), "s", secs(prep.Total)).Note = "lifted limits, one run per renewal round"
	list, err := b.cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	old := map[string]string{}
	now := time.Now()
	for _, s := range list.Items {
		if serial, ok := validTLS(s.Data["tls.crt"], s.Data["tls.key"], now); ok {
			old[s.Name] = serial
		}
	}
	if len(old) < n {
		return fmt.Errorf("renewal N=%d: %d valid certificates after the preparation", n, len(old))
	}
	t = time.Now()
	if err := b.makeDue(ctx, ns, n); err != nil {
		return fmt.Errorf("renewal N=%d: annotate renew-before: %w", n, err)
	}
	log.Printf("renewal N=%d %s: every TLSContext annotated meshca.io/renew-before=%s in %s", n, lim.name, prepLeaf, time.Since(t).Round(time.Second))
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
	werr := w.wait(ctx, max(10*time.Minute, time.Duration(n)*60*time.Millisecond))
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
	if measureMemory && n > b.o.memFreshMax {
		// The renewal run held all N and renewed them: its peak stands
		// for memory at N managed, labelled as what it is.
		b.res.add("5 memory", fmt.Sprintf("peak RSS, %d managed (renewing all)", n), "MiB", float64(rss)/(1<<20)).Note =
			fmt.Sprintf("the renewal run's peak; a fresh start with every Secret valid is measured up to -mem-fresh-max=%d", b.o.memFreshMax)
	}
	if measureMemory && n <= b.o.memFreshMax {
		v, err := b.settledRSS(ctx, fmt.Sprintf("mem-%d", n), n)
		if err != nil {
			return err
		}
		log.Printf("peak RSS with %d managed (fresh start, every Secret valid): %.1f MiB", n, v)
		b.res.add("5 memory", fmt.Sprintf("peak RSS, %d managed", n), "MiB", v).Note = "fresh start, every Secret valid"
	}
	if keep {
		return nil
	}
	return b.emptyNamespace(ctx, ns)
}
