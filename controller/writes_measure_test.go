package controller

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/internal/testenv"
)

// countingTransport counts the requests that reach the API server.
type countingTransport struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// TestMeasureSecretWrites compares the two ways a write can remove what
// meshca no longer sets (issue #17 item 4): (a) the explicit diff meshca
// uses (mergeSecret, then Update with the observed resourceVersion) and (b)
// server-side apply with field manager meshca, force and the observed
// resourceVersion. Each writes N certificate Secrets created as meshca
// creates them (Create, so their fields belong to an Update manager) with
// a new certificate, ROUNDS times, 16 at a time (a reconciler's workers);
// it logs API requests per write, the time of each round and whether the
// first write removed a stale meshca.io/ annotation. It only measures, so
// it runs only with MESHCA_MEASURE_WRITES=N[,ROUNDS].
func TestMeasureSecretWrites(t *testing.T) {
	spec := os.Getenv("MESHCA_MEASURE_WRITES")
	if spec == "" {
		t.Skip("a measurement: set MESHCA_MEASURE_WRITES=N[,ROUNDS]")
	}
	n, rounds := 500, 3
	if _, err := fmt.Sscanf(spec, "%d,%d", &n, &rounds); err != nil {
		if n, err = strconv.Atoi(spec); err != nil {
			t.Fatalf("MESHCA_MEASURE_WRITES=%q: %v", spec, err)
		}
	}
	env := testenv.Get(t)
	ctx := context.Background()
	var count atomic.Int64
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = -1, 0
	cfg.UserAgent = "meshca"
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return countingTransport{rt, &count} }
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	certData := func(round int) map[string][]byte {
		pem := []byte(fmt.Sprintf("-----BEGIN CERTIFICATE-----\nround %d %0900d\n-----END CERTIFICATE-----\n", round, round))
		return map[string][]byte{"tls.crt": pem, "tls.key": pem[:300], "ca.crt": pem[:600]}
	}
	annotations := func(round int) map[string]string {
		return map[string]string{meta.AnnotationSerial: fmt.Sprint(round), meta.AnnotationNotAfter: "2026-12-03T12:00:00Z",
			meta.AnnotationRenewAt: "2026-12-03T04:00:00Z", meta.AnnotationSource: "TLSContext/x/y", meta.AnnotationIssuer: "ab",
			meta.AnnotationSPIFFEID: "spiffe://cluster.local/ns/x/sa/y", meta.AnnotationReason: "NearExpiry"}
	}
	type strategy struct {
		name  string
		write func(s *corev1.Secret, round int) (*corev1.Secret, error)
	}
	strategies := []strategy{
		{"update (explicit diff)", func(s *corev1.Secret, round int) (*corev1.Secret, error) {
			d := desiredSecret{typ: corev1.SecretTypeTLS, data: certData(round), annotations: annotations(round)}
			return cs.CoreV1().Secrets(s.Namespace).Update(ctx, mergeSecret(s, d), metav1.UpdateOptions{})
		}},
		{"server-side apply", func(s *corev1.Secret, round int) (*corev1.Secret, error) {
			ac := corev1ac.Secret(s.Name, s.Namespace).WithResourceVersion(s.ResourceVersion).
				WithType(corev1.SecretTypeTLS).WithLabels(managedLabels(nil)).
				WithAnnotations(annotations(round)).WithData(certData(round))
			return cs.CoreV1().Secrets(s.Namespace).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: "meshca", Force: true})
		}},
	}
	objs := make([][]*corev1.Secret, len(strategies))
	for i := range strategies {
		ns := env.Namespace(t)
		for j := range n {
			ann := annotations(0)
			ann[staleAnnotation] = "old"
			s := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("s-%d", j), Labels: managedLabels(nil), Annotations: ann},
				Type:       corev1.SecretTypeTLS,
				Data:       certData(0),
			}
			got, err := cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			objs[i] = append(objs[i], got)
		}
	}
	for round := 1; round <= rounds; round++ {
		for k := range strategies {
			// Alternate which goes first, so neither always meets the
			// other's leftovers (compaction, garbage collection).
			i := (k + round) % len(strategies)
			st := strategies[i]
			count.Store(0)
			start := time.Now()
			var wg sync.WaitGroup
			var failed atomic.Int64
			sem := make(chan struct{}, 16)
			for j := range objs[i] {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer func() { <-sem; wg.Done() }()
					got, err := st.write(objs[i][j], round)
					if err != nil {
						failed.Add(1)
						return
					}
					objs[i][j] = got
				}()
			}
			wg.Wait()
			took := time.Since(start)
			stale := 0
			for _, s := range objs[i] {
				if _, ok := s.Annotations[staleAnnotation]; ok {
					stale++
				}
			}
			t.Logf("%s round %d: %d writes in %s (%.2f ms/write), %.2f requests/write, %d failed, stale annotation on %d of %d",
				st.name, round, n, took.Round(time.Millisecond), float64(took.Microseconds())/1000/float64(n),
				float64(count.Load())/float64(n), failed.Load(), stale, n)
		}
	}
}
