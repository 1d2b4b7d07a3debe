package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/meshca/meshca/internal/check"
	"github.com/meshca/meshca/internal/daemontest"
	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/internal/testpki"
)

// checkRun is one `meshca check -o json` of the real binary.
type checkRun struct {
	Results  []check.Result `json:"results"`
	ExitCode int            `json:"exitCode"`
	code     int
	text     string
}

func (c checkRun) status(name string) check.Status {
	for _, r := range c.Results {
		if r.Name == name {
			return r.Status
		}
	}
	return ""
}

func runCheck(t *testing.T, args ...string) checkRun {
	t.Helper()
	out, errOut, code := runBinary(t, nil, append([]string{"check", "-o", "json"}, args...)...)
	var c checkRun
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("check -o json: %v (exit %d)\nstdout: %s\nstderr: %s", err, code, out, errOut)
	}
	c.code, c.text = code, out
	if c.ExitCode != code {
		t.Errorf("check says exitCode %d in JSON but exits %d", c.ExitCode, code)
	}
	return c
}

// TestCheck runs `meshca check` (the real binary) against a healthy
// install (a real `meshca serve` leading, its url-based webhook
// configuration synced, a TLSContext's Secret issued): exit 0. Thresholds
// that put the CA and the Secrets near expiry: exit 2 with WARN lines.
// Then the install breaks (meshca stopped, so no leader and the webhook
// down; the caBundle replaced with a foreign root): exit 1 with those
// lines FAIL. A webhook behind a Service is SKIP from outside the cluster
// when the Service has ready endpoints and FAIL when it has none.
func TestCheck(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	ctx := t.Context()
	mwcName := "meshca-" + ns
	d := startDaemon(t, env, ns) // leader election on: check wants the Lease
	url := fmt.Sprintf("https://127.0.0.1:%d/mutate", d.WebhookPort)
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: mwcName},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "inject.meshca.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url},
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			FailurePolicy:           ptr.To(admissionregistrationv1.Ignore),
			// A namespace that matches nothing: the webhook must not
			// touch other tests' workloads.
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"meshca-check-test": ns}},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments"}},
			}},
		}},
	}
	if _, err := env.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), mwcName, metav1.DeleteOptions{})
	})
	createTLSContexts(t, env, ns, "gw", 1, nil)
	waitValidSecrets(t, env, ns, "gw", 1, nil)

	args := []string{"--kubeconfig=" + env.Kubeconfig, "-n", ns, "--webhook-configuration=" + mwcName,
		"--namespace-selector=kubernetes.io/metadata.name=" + ns}
	var healthy checkRun
	daemontest.Eventually(t, 2*time.Minute, "check to pass", func(context.Context) (bool, error) {
		healthy = runCheck(t, args...)
		return healthy.code == check.ExitHealthy, nil
	})
	for _, r := range healthy.Results {
		if r.Status != check.OK {
			t.Errorf("healthy install: %s is %s: %s", r.Name, r.Status, r.Message)
		}
	}
	text, errOut, code := runBinary(t, nil, append([]string{"check"}, args...)...)
	t.Logf("healthy, exit %d:\n%s%s", code, text, errOut)

	warned := runCheck(t, append(args, "--ca-expiry-threshold=87600h", "--secret-expiry-threshold=48h")...)
	if warned.code != check.ExitWarnings || warned.status("ca") != check.Warn || warned.status("secrets") != check.Warn {
		t.Errorf("thresholds past the CA's and the Secrets' expiry: exit %d, want 2 with ca and secrets WARN\n%s", warned.code, warned.text)
	}
	text, errOut, code = runBinary(t, nil, append([]string{"check", "--ca-expiry-threshold=87600h", "--secret-expiry-threshold=48h"}, args...)...)
	t.Logf("CA and Secrets within the thresholds, exit %d:\n%s%s", code, text, errOut)

	// Break it: meshca stops (releasing the Lease, closing the webhook
	// port), and the caBundle no longer holds meshca's root.
	if _, err := d.Stop(t, syscall.SIGTERM, time.Minute); err != nil {
		t.Fatalf("stop meshca: %v", err)
	}
	foreign := testpki.New(t)
	patch := fmt.Sprintf(`[{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":%q}]`, base64.StdEncoding.EncodeToString(foreign.RootPEM))
	if _, err := env.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, mwcName, "application/json-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	broken := runCheck(t, args...)
	if broken.code != check.ExitFailed {
		t.Errorf("broken install: exit %d, want 1\n%s", broken.code, broken.text)
	}
	for name, want := range map[string]check.Status{
		"crd": check.OK, "ca": check.OK, "leader": check.Fail, "webhook-config": check.Fail,
		"webhook-reachable": check.Fail, "trust-bundles": check.OK, "secrets": check.OK,
	} {
		if got := broken.status(name); got != want {
			t.Errorf("broken install: %s is %s, want %s\n%s", name, got, want, broken.text)
		}
	}
	text, errOut, code = runBinary(t, nil, append([]string{"check"}, args...)...)
	t.Logf("broken, exit %d:\n%s%s", code, text, errOut)

	// A webhook behind a Service, checked from outside the cluster.
	svcMWC := mwc.DeepCopy()
	svcMWC.ObjectMeta = metav1.ObjectMeta{Name: mwcName + "-svc"}
	svcMWC.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{
		Service:  &admissionregistrationv1.ServiceReference{Namespace: ns, Name: "meshca", Path: ptr.To("/mutate")},
		CABundle: foreign.RootPEM,
	}
	if _, err := env.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, svcMWC, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), svcMWC.Name, metav1.DeleteOptions{})
	})
	svcArgs := append(args[:len(args):len(args)], "--webhook-configuration="+svcMWC.Name)
	if got := runCheck(t, svcArgs...); got.status("webhook-reachable") != check.Fail {
		t.Errorf("Service without endpoints: webhook-reachable %s, want FAIL\n%s", got.status("webhook-reachable"), got.text)
	}
	if _, err := env.Clientset.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "meshca-1", Labels: map[string]string{discoveryv1.LabelServiceName: "meshca"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Port: ptr.To[int32](9443), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := runCheck(t, svcArgs...)
	if got.status("webhook-reachable") != check.Skipped || !strings.Contains(got.text, "not dialled") {
		t.Errorf("Service with a ready endpoint, from outside: webhook-reachable %s, want SKIP\n%s", got.status("webhook-reachable"), got.text)
	}
}
