package main

import (
	"context"
	"fmt"
	"log"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// settledRSS starts meshca with the cluster as it is, waits until it has
// reconciled at least n TLSContexts (every managed Secret checked), lets it
// idle a moment and returns its peak RSS in MiB.
func (b *bench) settledRSS(ctx context.Context, tag string, n int) (float64, error) {
	p, err := b.startMeshca(ctx, tag)
	if err != nil {
		return 0, err
	}
	defer p.stop()
	wait := max(3*time.Minute, time.Duration(n)*30*time.Millisecond)
	deadline := time.Now().Add(wait)
	for reconciled() < float64(n) {
		if err := p.exited(); err != nil {
			return 0, err
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("meshca reconciled %.0f of %d TLSContexts in %s", reconciled(), n, wait)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	rss, err := p.peakRSS()
	return float64(rss) / (1 << 20), err
}

// phaseMemory: meshca's peak RSS managing 1,000 Secrets with no other
// Secrets in the cluster, then with mem-unrelated unrelated ones (which its
// label-selected cache should never hold).
func (b *bench) phaseMemory(ctx context.Context) error {
	const managed = 1000
	ns := "mem-managed"
	if _, err := b.meshcaReady(ctx, ns, managed, meshcaLifted, 5*time.Minute); err != nil {
		return err
	}
	var none, some []float64
	for run := range b.o.memRuns {
		v, err := b.settledRSS(ctx, fmt.Sprintf("mem-none-%d", run), managed)
		if err != nil {
			return err
		}
		none = append(none, v)
	}
	if err := b.unrelatedSecrets(ctx, b.o.memUnrelated); err != nil {
		return err
	}
	for run := range b.o.memRuns {
		v, err := b.settledRSS(ctx, fmt.Sprintf("mem-unrelated-%d", run), managed)
		if err != nil {
			return err
		}
		some = append(some, v)
	}
	log.Printf("peak RSS with %d managed: %v MiB; with %d unrelated Secrets too: %v MiB", managed, none, b.o.memUnrelated, some)
	sec := "5 memory"
	b.res.add(sec, "peak RSS, 1000 managed", "MiB", none...)
	b.res.add(sec, fmt.Sprintf("peak RSS, 1000 managed + %d unrelated", b.o.memUnrelated), "MiB", some...)
	b.res.add(sec, fmt.Sprintf("peak RSS %d unrelated / none", b.o.memUnrelated), "x", ratios(some, none)...)
	if err := b.emptyNamespace(ctx, ns); err != nil {
		return err
	}
	// Phases after this one measure in a cluster as it was before it.
	t := time.Now()
	if err := parallelN(10, 10, func(i int) error { return b.emptyNamespace(ctx, fmt.Sprintf("unrelated-%d", i)) }); err != nil {
		return err
	}
	log.Printf("deleted the %d unrelated Secrets in %s", b.o.memUnrelated, time.Since(t).Round(time.Second))
	return nil
}

// unrelatedSecrets creates n Opaque Secrets of about 2 KiB that meshca
// does not manage, spread over 10 namespaces.
func (b *bench) unrelatedSecrets(ctx context.Context, n int) error {
	t := time.Now()
	payload := []byte(strings.Repeat("x", 2048))
	for i := range 10 {
		if err := b.ensureNamespace(ctx, fmt.Sprintf("unrelated-%d", i), nil); err != nil {
			return err
		}
	}
	err := parallel(n, func(i int) error {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("other-%05d", i), Namespace: fmt.Sprintf("unrelated-%d", i%10)},
			Data:       map[string][]byte{"data": payload},
		}
		_, err := b.cs.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
		return err
	})
	log.Printf("created %d unrelated Secrets in %s", n, time.Since(t).Round(time.Second))
	return err
}
