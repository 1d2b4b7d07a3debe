package main

import (
	"context"
	"fmt"
	"log"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

var (
	certificateGVR = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"}
	issuerGVR      = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "issuers"}
	crGVR          = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificaterequests"}
	// cmLifted lifts cert-manager's client limits as meshcaLifted lifts
	// meshca's (cert-manager has no issuance rate limit).
	cmLifted = limits{name: "lifted", args: []string{"--kube-api-qps=5000", "--kube-api-burst=10000"}}
)

// phaseCertManager: N cert-manager Certificates (ECDSA P-256, CA Issuer)
// against N meshca TLSContexts on the same API server in the same run, once
// with both daemons at their default client limits and once with both lifted.
// The daemons never run at the same time.
func (b *bench) phaseCertManager(ctx context.Context) error {
	if b.o.certManager == "" {
		b.res.Skipped = append(b.res.Skipped, "cert-manager side by side (no -cert-manager folder)")
		return nil
	}
	t := time.Now()
	if _, err := envtest.InstallCRDs(b.cfg, envtest.CRDInstallOptions{Paths: []string{filepath.Join(b.o.certManager, "crds")}, ErrorIfPathMissing: true}); err != nil {
		return fmt.Errorf("install cert-manager CRDs: %w", err)
	}
	log.Printf("cert-manager CRDs installed in %s", time.Since(t).Round(time.Second))
	if err := b.ensureNamespace(ctx, "cert-manager", nil); err != nil {
		return err
	}
	if v, err := exec1(filepath.Join(b.o.certManager, "controller"), "--version"); err == nil {
		b.res.Versions["cert-manager"] = strings.TrimSpace(v)
	} else {
		b.res.Versions["cert-manager"] = "v1.11.5 (CRDs from v1.20.3)"
	}
	n := b.o.cmN
	sec := "6 vs cert-manager"
	type pairRun struct {
		name   string
		meshca readyRun
		cm     readyRun
	}
	var runs []pairRun
	// Defaults run once: cert-manager is capped there in make bench (a
	// lower bound and a projection), and run to completion it takes ~15
	// minutes. The lifted pair runs -cm-lifted-runs times; its ratio is
	// the median of the pairs' ratios.
	type pairLimits struct {
		m, c limits
		run  int
	}
	pairs := []pairLimits{{meshcaDefaults, limits{name: "defaults"}, 0}}
	for i := range max(b.o.cmLiftedRuns, 1) {
		pairs = append(pairs, pairLimits{meshcaLifted, cmLifted, i})
	}
	for _, pair := range pairs {
		suffix := pair.m.name
		if pair.run > 0 {
			suffix = fmt.Sprintf("%s-%d", pair.m.name, pair.run+1)
		}
		mr, err := b.meshcaReady(ctx, "cmp-meshca-"+suffix, n, pair.m, b.o.cmTimeout)
		if err != nil {
			return err
		}
		log.Printf("side by side %s: meshca %d/%d ready in %s, peak RSS %d MiB", suffix, mr.Ready, n, mr.Total.Round(time.Millisecond), mr.PeakRSS>>20)
		if err := b.emptyNamespace(ctx, "cmp-meshca-"+suffix); err != nil {
			return err
		}
		cr, err := b.certManagerReady(ctx, "cmp-cm-"+suffix, n, pair.c)
		if err != nil {
			return err
		}
		log.Printf("side by side %s: cert-manager %d/%d ready in %s (capped: %v), peak RSS %d MiB", suffix, cr.Ready, n, cr.Total.Round(time.Millisecond), cr.Capped, cr.PeakRSS>>20)
		runs = append(runs, pairRun{pair.m.name, mr, cr})
		note := ""
		if cr.Capped {
			note = fmt.Sprintf("cert-manager capped at %s with %d of %d ready: a lower bound", cr.Total.Round(time.Second), cr.Ready, n)
		}
		ms, cs := secs(mr.Total), secs(cr.Total)
		b.res.add(sec, fmt.Sprintf("meshca all-ready N=%d, %s", n, pair.m.name), "s", ms)
		f := b.res.add(sec, fmt.Sprintf("cert-manager all-ready N=%d, %s", n, pair.c.name), "s", cs)
		f.LowerBound, f.Note = cr.Capped, note
		f = b.res.add(sec, "cert-manager/meshca all-ready, "+pair.m.name, "x", cs/ms)
		f.LowerBound, f.Note = cr.Capped, note
		b.res.add(sec, fmt.Sprintf("cert-manager ready at the end, N=%d, %s", n, pair.c.name), "objects", float64(cr.Ready)).Note = note
		b.res.add(sec, fmt.Sprintf("cert-manager API requests/s, %s", pair.c.name), "req/s", cmRequestRate(cr, n)).Note =
			"apiserver_request_total over the run, less the harness's creates; at defaults cert-manager's client allows 20/s"
		if !cr.Capped {
			b.res.add(sec, fmt.Sprintf("cert-manager API requests/cert, %s", pair.c.name), "req", cmRequestsPerCert(cr, n)).Note =
				"apiserver_request_total over the run, less the harness's creates, / N"
		}
		b.res.add(sec, fmt.Sprintf("meshca peak RSS N=%d, %s", n, pair.m.name), "MiB", float64(mr.PeakRSS)/(1<<20))
		b.res.add(sec, fmt.Sprintf("cert-manager peak RSS N=%d, %s", n, pair.c.name), "MiB", float64(cr.PeakRSS)/(1<<20))
		b.res.add(sec, "cert-manager/meshca peak RSS, "+pair.m.name, "x", float64(cr.PeakRSS)/float64(mr.PeakRSS))
	}
	// Projections for capped runs, never measurements. cert-manager's time
	// is its API request budget (at defaults it runs at its 20 QPS limit
	// throughout): N x requests per Certificate / this run's request rate.
	// Requests per Certificate come from the run that got furthest:
	// exact for a finished run; for a capped one the requests spent on
	// Certificates not yet ready make it too high, which overstates
	// cert-manager's time. Without any ready Certificate there is no
	// projection.
	best := -1
	for i, r := range runs {
		if best < 0 || r.cm.Ready > runs[best].cm.Ready {
			best = i
		}
	}
	for _, r := range runs {
		if !r.cm.Capped || best < 0 {
			continue
		}
		src := runs[best]
		rpc, rate := cmRequestsPerCert(src.cm, n), cmRequestRate(r.cm, n)
		if rpc <= 0 || rate <= 0 {
			continue
		}
		total := max(r.cm.Total, time.Duration(float64(n)*rpc/rate*float64(time.Second)))
		how := fmt.Sprintf("N x %.1f API requests per Certificate (at %s limits, %d of %d ready) / %.1f requests/s (this run's rate)", rpc, src.name, src.cm.Ready, n, rate)
		if src.cm.Capped {
			how += "; from a capped run, so an overestimate"
		}
		pnote := fmt.Sprintf("PROJECTED, not measured (%d of %d ready at the %s cap): %s", r.cm.Ready, n, r.cm.Total.Round(time.Second), how)
		if t, readyRate, ok := projectAllReady(r.cm, n); ok {
			log.Printf("side by side %s: cert-manager's ready rate in the last third, %.2f/s, would project %s", r.name, readyRate, t.Round(time.Second))
		}
		log.Printf("side by side %s: cert-manager all-ready projected at %s: %s", r.name, total.Round(time.Second), pnote)
		f := b.res.add(sec, fmt.Sprintf("cert-manager all-ready N=%d, %s (projected)", n, r.name), "s", secs(total))
		f.Projected, f.Note = true, pnote
		f = b.res.add(sec, "cert-manager/meshca all-ready, "+r.name+" (projected)", "x", secs(total)/secs(r.meshca.Total))
		f.Projected, f.Note = true, pnote
	}
	return nil
}

// cmRequestRate is the API server's request rate over a cert-manager run
// without the harness's n creates: cert-manager's own, as near as the
// server's counter allows (the harness's watch and the server's own
// requests remain, a few per second at most).
func cmRequestRate(r readyRun, n int) float64 {
	if r.Total <= 0 || r.Requests <= float64(n) {
		return 0
	}
	return (r.Requests - float64(n)) / r.Total.Seconds()
}

// cmRequestsPerCert is the same count per ready Certificate (the harness's
// one create each not counted).
func cmRequestsPerCert(r readyRun, n int) float64 {
	if r.Ready == 0 || r.Requests <= float64(n) {
		return 0
	}
	return (r.Requests - float64(n)) / float64(r.Ready)
}

func (b *bench) certManagerReady(ctx context.Context, ns string, n int, lim limits) (readyRun, error) {
	if err := b.ensureNamespace(ctx, ns, nil); err != nil {
		return readyRun{}, err
	}
	dyn, err := dynamic.NewForConfig(b.cfg)
	if err != nil {
		return readyRun{}, err
	}
	if err := b.caIssuer(ctx, dyn, ns); err != nil {
		return readyRun{}, err
	}
	args := append([]string{"--kubeconfig", b.env.Kubeconfig, "--leader-elect=false",
		"--cluster-resource-namespace=cert-manager", fmt.Sprintf("--metrics-listen-address=127.0.0.1:%d", freePort())}, lim.args...)
	p, err := startProc("cert-manager", filepath.Join(b.o.certManager, "controller"), filepath.Join(b.o.workDir, "cert-manager-"+ns+".log"), args...)
	if err != nil {
		return readyRun{}, err
	}
	defer p.stop()
	// Ready when its CA Issuer is.
	deadline := time.Now().Add(90 * time.Second)
	for !issuerReady(ctx, dyn, ns) {
		if err := p.exited(); err != nil {
			return readyRun{}, err
		}
		if time.Now().After(deadline) {
			return readyRun{}, fmt.Errorf("cert-manager's Issuer not ready in 90s (log %s)", p.log.Name())
		}
		time.Sleep(200 * time.Millisecond)
	}
	w, err := newReadyWatch(ctx, b.cs, ns, n, nil)
	if err != nil {
		return readyRun{}, err
	}
	before, err := b.apiRequests(ctx)
	if err != nil {
		return readyRun{}, err
	}
	created := map[string]time.Time{}
	createdCh := make(chan [2]any, n)
	err = parallel(n, func(i int) error {
		name := fmt.Sprintf("cert-%05d", i)
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
			"metadata": map[string]any{"name": name, "namespace": ns},
			"spec": map[string]any{
				"secretName": name + "-tls",
				"dnsNames":   []any{name + "." + ns + ".svc"},
				"issuerRef":  map[string]any{"name": "bench-ca", "kind": "Issuer"},
				"privateKey": map[string]any{"algorithm": "ECDSA", "size": int64(256)},
			},
		}}
		t := time.Now()
		if _, err := dyn.Resource(certificateGVR).Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			return err
		}
		createdCh <- [2]any{name + "-tls", t}
		return nil
	})
	close(createdCh)
	for c := range createdCh {
		created[c[0].(string)] = c[1].(time.Time)
	}
	if err != nil {
		return readyRun{}, err
	}
	werr := w.wait(ctx, b.o.cmTimeout)
	capped := time.Now()
	ready, _ := w.snapshot()
	r := summarise(created, ready)
	if werr != nil {
		if err := p.exited(); err != nil {
			return readyRun{}, err
		}
		// The cap runs from the last create; the lower bound is from the
		// first, as Total is.
		first := capped
		for _, t := range created {
			if t.Before(first) {
				first = t
			}
		}
		r.Capped, r.Total = true, capped.Sub(first)
	}
	if after, err := b.apiRequests(ctx); err == nil {
		r.Requests = after - before
	}
	log.Printf("%s: ready over time %s; %.0f API requests (%.1f/s, the harness's %d creates included)",
		ns, timeline(r, 10), r.Requests, r.Requests/r.Total.Seconds(), n)
	r.PeakRSS, _ = p.peakRSS()
	p.stop()
	for _, gvr := range []schema.GroupVersionResource{certificateGVR, crGVR} {
		_ = dyn.Resource(gvr).Namespace(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	}
	return r, b.cs.CoreV1().Secrets(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
}

func issuerReady(ctx context.Context, dyn dynamic.Interface, ns string) bool {
	u, err := dyn.Resource(issuerGVR).Namespace(ns).Get(ctx, "bench-ca", metav1.GetOptions{})
	if err != nil {
		return false
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Ready" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// caIssuer creates a fresh ECDSA P-256 CA (kept in the test API server
// only) and a cert-manager CA Issuer for it.
func (b *bench) caIssuer(ctx context.Context, dyn dynamic.Interface, ns string) error {
	crt, key, err := selfSignedCA("bench CA", 30*24*time.Hour)
	if err != nil {
		return err
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-ca", Namespace: ns},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			corev1.TLSCertKey:       crt,
			corev1.TLSPrivateKeyKey: key,
		},
	}
	if _, err := b.cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	iss := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
		"metadata": map[string]any{"name": "bench-ca", "namespace": ns},
		"spec":     map[string]any{"ca": map[string]any{"secretName": "bench-ca"}},
	}}
	if _, err := dyn.Resource(issuerGVR).Namespace(ns).Create(ctx, iss, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}
