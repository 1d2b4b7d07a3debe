package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/internal/daemontest"
	"github.com/meshca/meshca/internal/testenv"
)

// The flood of TestServeWebhookFlood (issue 15, item 7).
const (
	floodConns = 150
	floodBody  = 3 << 20 // announced by each connection: the API server's own cap
	floodChunk = 64 << 10
	// floodEvery paces each connection: 48 chunks of 64 KiB, its body in
	// about 6s, within the webhook's ReadTimeout, so a webhook that lets
	// every connection in would hold all of it.
	floodEvery = 125 * time.Millisecond
	// floodRSS is the bound on meshca's peak RSS.
	floodRSS = 200 << 20
	// goodTimeout is the API server's default webhook timeout.
	goodTimeout = 10 * time.Second
)

// TestServeWebhookFlood: 150 connections to the webhook of a real `meshca
// serve` (built without -race, as it ships), each announcing a 3 MiB body
// and sending it slowly, leave meshca running with a peak RSS under 200
// MiB, and a well-formed AdmissionReview sent during the flood is answered
// within the API server's default webhook timeout. Everything stays on
// 127.0.0.1 and ends within a minute. Not parallel: it measures one
// process's memory and wants the cores for its answer.
func TestServeWebhookFlood(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	d := daemontest.StartRelease(t, "meshca", append(daemontest.ServeArgs(env, ns), "--leader-elect=false"))
	d.WaitReady(t, 2*time.Minute)
	roots := webhookRoots(t, env, ns)
	addr := fmt.Sprintf("127.0.0.1:%d", d.WebhookPort)
	before, err := d.PeakRSS()
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var (
		wg       sync.WaitGroup
		started  sync.WaitGroup
		mu       sync.Mutex
		outcomes = map[string]int{}
	)
	started.Add(floodConns)
	for range floodConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := floodOne(ctx, addr, roots, started.Done)
			mu.Lock()
			outcomes[out]++
			mu.Unlock()
		}()
	}
	started.Wait()
	// Every connection has announced its body; some are sending it.
	time.Sleep(time.Second)
	took, status, answer := sendReview(t, addr, roots)
	wg.Wait()

	peak, err := d.PeakRSS()
	if err != nil {
		t.Fatalf("meshca gone after the flood: %v (exit %v)", err, d.Err())
	}
	keys := make([]string, 0, len(outcomes))
	for k := range outcomes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var summary []string
	for _, k := range keys {
		summary = append(summary, fmt.Sprintf("%s: %d", k, outcomes[k]))
	}
	t.Logf("flood of %d x %d MiB: %s", floodConns, floodBody>>20, strings.Join(summary, ", "))
	t.Logf("peak RSS %.1f MiB before the flood, %.1f MiB after (bound %d MiB); good request answered %d in %v",
		float64(before)/(1<<20), float64(peak)/(1<<20), floodRSS>>20, status, took.Round(time.Millisecond))

	if !d.Running() {
		t.Fatalf("meshca exited during the flood: %v", d.Err())
	}
	if peak >= floodRSS {
		t.Errorf("peak RSS %d MiB, want under %d MiB", peak>>20, floodRSS>>20)
	}
	if status != http.StatusOK || answer == nil || !answer.Allowed || len(answer.Patch) == 0 {
		t.Errorf("good request during the flood: status %d, response %+v; want 200 with a patch", status, answer)
	}
	if took > goodTimeout {
		t.Errorf("good request answered after %v, past the API server's %v", took, goodTimeout)
	}
	if busy := d.Metrics(t).Sum("meshca_webhook_rejected_total", "reason=busy"); busy == 0 {
		t.Error("no request refused as busy: the flood never reached the in-flight cap")
	}
}

// webhookRoots is the CA bundle in meshca's webhook Secret in ns.
func webhookRoots(t *testing.T, env *testenv.Env, ns string) *x509.CertPool {
	t.Helper()
	s, err := env.Clientset.CoreV1().Secrets(ns).Get(context.Background(), "meshca-webhook-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(s.Data["ca.crt"]) {
		t.Fatal("webhook Secret has no ca.crt")
	}
	return roots
}

// floodOne opens a connection, announces a floodBody body, calls announced,
// and sends the body in floodChunk pieces every floodEvery until it is
// sent, the webhook stops reading, or ctx ends. It returns what became of
// it: the status of the answer, or why there was none.
func floodOne(ctx context.Context, addr string, roots *x509.CertPool, announced func()) string {
	once := sync.OnceFunc(announced)
	defer once()
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: &tls.Config{RootCAs: roots}}
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "dial failed"
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if _, err := fmt.Fprintf(c, "POST /mutate HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", addr, floodBody); err != nil {
		return "refused the header"
	}
	once()
	chunk := bytes.Repeat([]byte("a"), floodChunk)
	tick := time.NewTicker(floodEvery)
	defer tick.Stop()
	for sent := 0; sent < floodBody; sent += floodChunk {
		if _, err := c.Write(chunk); err != nil {
			break // the webhook answered and closed, or cut us off
		}
		select {
		case <-ctx.Done():
			return "still sending at the end"
		case <-tick.C:
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "no answer"
	}
	resp.Body.Close()
	return fmt.Sprint(resp.StatusCode)
}

// sendReview posts a well-formed AdmissionReview of an annotated Deployment
// as the API server would, with its default timeout, and returns how long
// the answer took, its status and its response.
func sendReview(t *testing.T, addr string, roots *x509.CertPool) (time.Duration, int, *admissionv1.AdmissionResponse) {
	t.Helper()
	object := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"team-a","annotations":{"meshca.io/inject-trust-bundle":"true"}},` +
		`"spec":{"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"app","image":"registry.example/app:1"}]}}}}`
	body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"0f4e1c8a-flood","kind":{"group":"apps","version":"v1","kind":"Deployment"},` +
		`"resource":{"group":"apps","version":"v1","resource":"deployments"},"name":"web","namespace":"team-a","operation":"CREATE","object":` + object + `}}`
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Timeout: goodTimeout, Transport: tr}
	start := time.Now()
	resp, err := client.Post("https://"+addr+"/mutate", "application/json", strings.NewReader(body))
	took := time.Since(start)
	if err != nil {
		t.Errorf("good request during the flood: %v after %v", err, took)
		return took, 0, nil
	}
	defer resp.Body.Close()
	var review admissionv1.AdmissionReview
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&review); err != nil {
			t.Errorf("good request: decode answer: %v", err)
		}
	}
	return took, resp.StatusCode, review.Response
}
