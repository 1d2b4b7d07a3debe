package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
)

// webhookWarmup is how long each path is driven at the measured rate before
// its measured run starts, and not counted: a fresh meshca process grows its
// heap, the client and the API server open and reuse their connections.
const webhookWarmup = time.Second

// failedLatency is what a failed webhook request counts as: the timeout of
// the harness's client and of the webhook registration (timeoutSeconds).
const failedLatency = 10 * time.Second

func benchDeployment(ns, name string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
			Annotations: map[string]string{"meshca.io/inject-trust-bundle": "true"}},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}}},
			},
		},
	}
}

// openLoop calls fn(i) for i in [0, rate*d) on a fixed schedule, the i-th
// call at start + i/rate, each on its own goroutine so that a slow answer
// does not delay the next call. A call whose time has passed (the harness
// was not scheduled) starts at once, so the count never shrinks. It returns
// the sorted latencies, each from the start of its call, and the errors.
// A failed call stays in the latencies at failedLatency at least, so
// failures can only raise a percentile, never lower it.
func openLoop(rate int, d time.Duration, fn func(i int) error) ([]time.Duration, []error) {
	n := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	lat := make([]time.Duration, 0, n)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.Now()
			err := fn(i)
			l := time.Since(t)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				l = max(l, failedLatency)
			}
			lat = append(lat, l)
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	return lat, errs
}

// trustBundle waits for meshca's trust bundle ConfigMap in its namespace.
func (b *bench) trustBundle(ctx context.Context) ([]byte, error) {
	for range 300 {
		cm, err := b.cs.CoreV1().ConfigMaps(meshcaNamespace).Get(ctx, "meshca-trust-bundle", metav1.GetOptions{})
		if err == nil && cm.Data["ca.crt"] != "" {
			return []byte(cm.Data["ca.crt"]), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Errorf("no trust bundle ConfigMap in %s", meshcaNamespace)
}

// webhookClient is an HTTPS client set up as the API server's webhook
// client is: one transport kept for the process's lifetime, keep-alive,
// HTTP/2 when the server offers it, HTTP/1.1 otherwise.
func webhookClient(roots *x509.CertPool) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true,
		MaxIdleConnsPerHost: 25, IdleConnTimeout: 90 * time.Second,
	}}
}

// reviewBodies are n AdmissionReviews (one UID each) for an annotated
// Deployment, encoded before any timing starts: the API server has the
// object encoded already when it calls a webhook.
func reviewBodies(n int) [][]byte {
	obj, _ := json.Marshal(benchDeployment("wh-direct", "web"))
	out := make([][]byte, n)
	for i := range out {
		review := admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID: types.UID(fmt.Sprintf("req-%d", i)), Kind: metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
				Resource:  metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"},
				Namespace: "wh-direct", Name: "web", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: obj},
			},
		}
		out[i], _ = json.Marshal(review)
	}
	return out
}

// postReview sends one body and checks that the answer carries a patch.
func postReview(client *http.Client, url string, body []byte) error {
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 || !bytes.Contains(out, []byte(`"patch"`)) {
		return fmt.Errorf("webhook answered %d without a patch", resp.StatusCode)
	}
	return nil
}

// webhookPath is one measured way of reaching the webhook.
type webhookPath struct {
	name string
	fn   func(int) error
}

// webhookLatencies: p50 and p99 of each path name, one value per run, and
// the requests sent and failed over all runs.
type webhookLatencies struct {
	p50, p99     map[string][]float64
	sent, failed map[string]int
}

func (l *webhookLatencies) add(name string, lat []time.Duration) (p50, p99 float64) {
	p50, p99 = secs(percentile(lat, 0.5))*1000, secs(percentile(lat, 0.99))*1000
	l.p50[name] = append(l.p50[name], p50)
	l.p99[name] = append(l.p99[name], p99)
	return p50, p99
}

// measure drives path at the phase's rate: webhookWarmup unmeasured, then
// the measured run.
func (b *bench) measure(path webhookPath, run int, into *webhookLatencies) error {
	warm := int(webhookWarmup.Seconds() * float64(b.o.webhookRate))
	openLoop(b.o.webhookRate, webhookWarmup, func(i int) error { return path.fn(i) })
	d := time.Duration(b.o.webhookSecs) * time.Second
	lat, errs := openLoop(b.o.webhookRate, d, func(i int) error { return path.fn(warm + i) })
	// A few failures on an overloaded machine are a result (counted, and
	// slowest in the percentiles); many mean the setup is broken.
	if len(errs) > len(lat)/10 {
		return fmt.Errorf("webhook %s: %d of %d requests failed, the first: %w", path.name, len(errs), len(lat), errs[0])
	}
	if len(errs) > 0 {
		log.Printf("webhook %s run %d: %d of %d requests failed, the first: %v", path.name, run, len(errs), len(lat), errs[0])
	}
	into.failed[path.name] += len(errs)
	into.sent[path.name] += len(lat)
	p50, p99 := into.add(path.name, lat)
	log.Printf("webhook %s run %d: %d requests at %d/s, p50 %.2f ms p99 %.2f ms", path.name, run, len(lat), b.o.webhookRate, p50, p99)
	return nil
}

// phaseWebhook: p50/p99 of the admission webhook at a fixed request rate,
// sent directly (HTTPS to meshca) and through the API server (dry-run
// Deployment creates that the API server sends to meshca), with the same
// creates in a namespace the webhook does not select as the baseline, and
// the same direct requests to a trivial HTTPS handler (the floor: what the
// machine, TLS and HTTP cost with no work at all). Every run starts a fresh
// meshca; with -webhook-compare another meshca binary is measured the same
// way right after it, in the same run.
func (b *bench) phaseWebhook(ctx context.Context) error {
	for _, ns := range []string{"wh-on", "wh-off"} {
		if err := b.ensureNamespace(ctx, ns, map[string]string{"meshca-bench-webhook": strings.TrimPrefix(ns, "wh-")}); err != nil {
			return err
		}
	}
	floor, err := startFloorServer(b.o.workDir)
	if err != nil {
		return err
	}
	defer floor.stop()
	bins := []struct{ suffix, bin string }{{"", b.o.meshca}}
	if b.o.webhookCompare != "" {
		bins = append(bins, struct{ suffix, bin string }{" [compare]", b.o.webhookCompare})
	}
	n := (b.o.webhookSecs + int(webhookWarmup.Seconds()) + 1) * b.o.webhookRate
	bodies := reviewBodies(n)
	lat := &webhookLatencies{p50: map[string][]float64{}, p99: map[string][]float64{}, sent: map[string]int{}, failed: map[string]int{}}
	var names []string
	for run := range b.o.webhookRuns {
		for _, bin := range bins {
			paths, err := b.webhookRun(ctx, bin.bin, bin.suffix, run, bodies, lat)
			if err != nil {
				return err
			}
			if run == 0 {
				names = append(names, paths...)
			}
		}
		client := webhookClient(floor.roots)
		fp := webhookPath{"HTTPS floor (trivial handler)", func(i int) error { return postReview(client, floor.url, bodies[i%len(bodies)]) }}
		for i := range 20 {
			if err := fp.fn(i); err != nil {
				return fmt.Errorf("floor server: %w", err)
			}
		}
		if err := b.measure(fp, run, lat); err != nil {
			return err
		}
		client.CloseIdleConnections()
		if run == 0 {
			names = append(names, fp.name)
		}
	}
	sec := "4 webhook"
	note := fmt.Sprintf("%d req/s for %ds after %s unmeasured at the same rate; a fresh meshca per run", b.o.webhookRate, b.o.webhookSecs, webhookWarmup)
	for _, name := range names {
		b.res.add(sec, "webhook p50 "+name, "ms", lat.p50[name]...).Note = note
		b.res.add(sec, "webhook p99 "+name, "ms", lat.p99[name]...).Note = note
		if lat.failed[name] > 0 {
			b.res.add(sec, "webhook failed requests "+name, "%", 100*float64(lat.failed[name])/float64(lat.sent[name])).Note =
				fmt.Sprintf("%d of %d over all runs; each counted as %s in the percentiles", lat.failed[name], lat.sent[name], failedLatency)
		}
	}
	return nil
}

// webhookRun starts bin, measures the three meshca paths once and stops it.
// It returns the path names, suffixed.
func (b *bench) webhookRun(ctx context.Context, bin, suffix string, run int, bodies [][]byte, lat *webhookLatencies) ([]string, error) {
	tag := fmt.Sprintf("webhook-%d", run)
	if suffix != "" {
		tag += "-compare"
	}
	p, err := b.startMeshcaBin(ctx, bin, tag)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	bundle, err := b.trustBundle(ctx)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(bundle)
	client := webhookClient(roots)
	defer client.CloseIdleConnections()
	url := fmt.Sprintf("https://127.0.0.1:%d/mutate", webhookPort)
	direct := func(i int) error { return postReview(client, url, bodies[i%len(bodies)]) }
	// The first requests: the TLS handshake and a check that it answers.
	for i := range 20 {
		if err := direct(i); err != nil {
			return nil, fmt.Errorf("direct webhook call: %w", err)
		}
	}
	if err := b.registerWebhook(ctx, bundle, url); err != nil {
		return nil, err
	}
	apiCreate := func(ns string) func(i int) error {
		return func(i int) error {
			d := benchDeployment(ns, fmt.Sprintf("web-%d", i))
			out, err := b.cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				return err
			}
			if ns == "wh-on" && len(out.Spec.Template.Spec.Volumes) == 0 {
				return fmt.Errorf("deployment not mutated")
			}
			return nil
		}
	}
	// The API server picks up a changed webhook configuration within a
	// second or so.
	deadline := time.Now().Add(30 * time.Second)
	for apiCreate("wh-on")(0) != nil {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the API server does not call the webhook: %v", apiCreate("wh-on")(0))
		}
		time.Sleep(200 * time.Millisecond)
	}
	paths := []webhookPath{
		{"direct" + suffix, direct},
		{"through API server" + suffix, apiCreate("wh-on")},
		{"API server baseline (no webhook)" + suffix, apiCreate("wh-off")},
	}
	var names []string
	for _, path := range paths {
		if err := b.measure(path, run, lat); err != nil {
			return nil, err
		}
		names = append(names, path.name)
	}
	return names, nil
}

// registerWebhook points the MutatingWebhookConfiguration meshca maintains
// at url (meshca on 127.0.0.1), for Deployments in namespaces labelled
// meshca-bench-webhook=on.
func (b *bench) registerWebhook(ctx context.Context, bundle []byte, url string) error {
	none := admissionregistrationv1.SideEffectClassNone
	fail := admissionregistrationv1.Fail
	timeout := int32(10)
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "meshca"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "inject.meshca.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: bundle},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"meshca-bench-webhook": "on"}},
			SideEffects:             &none,
			FailurePolicy:           &fail,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	api := b.cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
	_, err := api.Create(ctx, cfg, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	// meshca's caBundle syncer may write it at the same moment.
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		old, err := api.Get(ctx, cfg.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cfg.ResourceVersion = old.ResourceVersion
		_, err = api.Update(ctx, cfg, metav1.UpdateOptions{})
		return err
	})
}
