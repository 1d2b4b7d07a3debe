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
)

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

// openLoop calls fn rate times a second for d, each call on its own
// goroutine (so a slow answer does not slow the schedule), and returns the
// sorted latencies and the number of failures.
func openLoop(rate int, d time.Duration, fn func(i int) error) ([]time.Duration, int) {
	var mu sync.Mutex
	var lat []time.Duration
	var fails int
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end); i++ {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.Now()
			err := fn(i)
			l := time.Since(t)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				fails++
				return
			}
			lat = append(lat, l)
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	return lat, fails
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

// phaseWebhook: p50/p99 of the admission webhook at a fixed request rate,
// sent directly (HTTPS to meshca) and through the API server (dry-run
// Deployment creates that the API server sends to meshca), with the same
// creates in a namespace the webhook does not select as the baseline.
func (b *bench) phaseWebhook(ctx context.Context) error {
	p, err := b.startMeshca(ctx, "webhook")
	if err != nil {
		return err
	}
	defer p.stop()
	bundle, err := b.trustBundle(ctx)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 256,
	}}
	url := fmt.Sprintf("https://127.0.0.1:%d/mutate", webhookPort)
	obj, _ := json.Marshal(benchDeployment("wh-direct", "web"))
	direct := func(i int) error {
		review := admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID: types.UID(fmt.Sprintf("req-%d", i)), Kind: metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
				Resource:  metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"},
				Namespace: "wh-direct", Name: "web", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: obj},
			},
		}
		body, _ := json.Marshal(review)
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(out), `"patch"`) {
			return fmt.Errorf("webhook answered %d without a patch", resp.StatusCode)
		}
		return nil
	}
	// Warm the connection and the handler.
	for i := range 20 {
		if err := direct(i); err != nil {
			return fmt.Errorf("direct webhook call: %w", err)
		}
	}
	if err := b.registerWebhook(ctx, bundle); err != nil {
		return err
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
	// The API server picks up a new webhook configuration within a second or so.
	deadline := time.Now().Add(30 * time.Second)
	for apiCreate("wh-on")(0) != nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("the API server does not call the webhook: %v", apiCreate("wh-on")(0))
		}
		time.Sleep(200 * time.Millisecond)
	}
	d := time.Duration(b.o.webhookSecs) * time.Second
	paths := []struct {
		name string
		fn   func(int) error
	}{{"direct", direct}, {"through API server", apiCreate("wh-on")}, {"API server baseline (no webhook)", apiCreate("wh-off")}}
	p50s := make([][]float64, len(paths))
	p99s := make([][]float64, len(paths))
	for run := range b.o.webhookRuns {
		for k, path := range paths {
			lat, fails := openLoop(b.o.webhookRate, d, path.fn)
			if fails > 0 {
				return fmt.Errorf("webhook %s: %d of %d requests failed", path.name, fails, fails+len(lat))
			}
			p50s[k] = append(p50s[k], secs(percentile(lat, 0.5))*1000)
			p99s[k] = append(p99s[k], secs(percentile(lat, 0.99))*1000)
			log.Printf("webhook %s run %d: %d requests at %d/s, p50 %.2f ms p99 %.2f ms", path.name, run, len(lat), b.o.webhookRate, p50s[k][run], p99s[k][run])
		}
	}
	sec := "4 webhook"
	for k, path := range paths {
		b.res.add(sec, "webhook p50 "+path.name, "ms", p50s[k]...).Note = fmt.Sprintf("%d req/s for %s", b.o.webhookRate, d)
		b.res.add(sec, "webhook p99 "+path.name, "ms", p99s[k]...).Note = fmt.Sprintf("%d req/s for %s", b.o.webhookRate, d)
	}
	return nil
}

// registerWebhook points the MutatingWebhookConfiguration meshca maintains
// at meshca on 127.0.0.1, for Deployments in namespaces labelled
// meshca-bench-webhook=on.
func (b *bench) registerWebhook(ctx context.Context, bundle []byte) error {
	for _, ns := range []string{"wh-on", "wh-off"} {
		if err := b.ensureNamespace(ctx, ns, map[string]string{"meshca-bench-webhook": strings.TrimPrefix(ns, "wh-")}); err != nil {
			return err
		}
	}
	url := fmt.Sprintf("https://127.0.0.1:%d/mutate", webhookPort)
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
	_, err := b.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
