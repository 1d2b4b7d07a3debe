package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/internal/daemontest"
	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/rotator"
)

// TestRenew runs `meshca renew` (the real binary) against a real `meshca
// serve` on the real API server: each renewed Secret gets a new serial with
// reason Manual on the Secret, in an Event and in the issued metric; the
// renewals wait for --max-issuance-rate like any other; and once served the
// request stays on the Secret without a second re-issue through several
// audit sweeps. Secrets meshca does not keep are refused with exit code 3.
func TestRenew(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	const n = 3
	// 0.25 per second, burst 1: three renewals take at least 8s when
	// the limiter holds them, well under a second when it does not.
	d := startDaemon(t, env, ns, "--max-issuance-rate=0.25", "--audit-schedule=@every 2s", "--leader-elect=false")
	createTLSContexts(t, env, ns, "gw", n, nil)
	waitValidSecrets(t, env, ns, "gw", n, nil)
	ctx := t.Context()
	get := func(name string) *corev1.Secret {
		t.Helper()
		s, err := env.Clientset.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	kc := "--kubeconfig=" + env.Kubeconfig
	before := map[string]string{}
	for i := range n {
		name := fmt.Sprintf("gw-%d-certs", i)
		before[name] = get(name).Annotations[meta.AnnotationSerial]
		out, errOut, code := runBinary(t, nil, "renew", kc, ns+"/"+name)
		if code != 0 || !strings.Contains(out, before[name]) {
			t.Fatalf("renew %s: exit %d\nstdout: %s\nstderr: %s", name, code, out, errOut)
		}
	}
	// The last one waits for its certificate.
	last := fmt.Sprintf("gw-%d-certs", n-1)
	if out, errOut, code := runBinary(t, nil, "renew", kc, "--wait=90s", ns+"/"+last); code != 0 || !strings.Contains(out, "reason Manual") {
		t.Fatalf("renew --wait: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	var first, latest time.Time
	for name, old := range before {
		var s *corev1.Secret
		daemontest.Eventually(t, time.Minute, name+" renewed", func(context.Context) (bool, error) {
			s = get(name)
			return s.Annotations[meta.AnnotationSerial] != old, nil
		})
		leaf, err := checkTLSSecret(s)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r := s.Annotations[meta.AnnotationReason]; r != rotator.ReasonManual {
			t.Errorf("%s: reason %q, want Manual", name, r)
		}
		if first.IsZero() || leaf.NotBefore.Before(first) {
			first = leaf.NotBefore
		}
		if leaf.NotBefore.After(latest) {
			latest = leaf.NotBefore
		}
	}
	// NotBefore is the signing time, truncated to the second, less a
	// fixed backdate.
	if spread := latest.Sub(first); spread < 7*time.Second {
		t.Errorf("the %d manual renewals were signed within %s: --max-issuance-rate=0.25 did not hold them", n, spread)
	}

	// Steady state: the spent requests stay and nothing is re-issued.
	renewed := map[string]string{}
	for name := range before {
		renewed[name] = get(name).Annotations[meta.AnnotationSerial]
	}
	time.Sleep(7 * time.Second) // three audit sweeps
	for name, serial := range renewed {
		s := get(name)
		if got := s.Annotations[meta.AnnotationSerial]; got != serial {
			t.Errorf("%s re-issued again after the manual renewal (%s, then %s, reason %s)", name, serial, got, s.Annotations[meta.AnnotationReason])
		}
		if s.Annotations[meta.AnnotationRenewRequested] != before[name] {
			t.Errorf("%s: request annotation %q, want the replaced serial %s", name, s.Annotations[meta.AnnotationRenewRequested], before[name])
		}
	}
	if got := d.Metrics(t).Sum("meshca_certificates_issued_total", "reason=Manual"); got != n {
		t.Errorf("meshca_certificates_issued_total{reason=Manual} = %v, want %d", got, n)
	}
	events := eventsText(t, env, ns)
	// The Note reads "Secret ...: certificate renewed (Manual: ...)".
	if got := strings.Count(events, "renewed (Manual:"); got != n {
		t.Errorf("%d Events tell of a Manual renewal, want %d:\n%s", got, n, events)
	}

	// Refusals.
	for name, s := range map[string]*corev1.Secret{
		"foreign":   {ObjectMeta: metav1.ObjectMeta{Name: "foreign"}, StringData: map[string]string{"x": "y"}},
		"no-source": {ObjectMeta: metav1.ObjectMeta{Name: "no-source", Labels: map[string]string{meta.LabelManagedBy: meta.ManagedByValue}, Annotations: map[string]string{meta.AnnotationSerial: "01"}}},
	} {
		if _, err := env.Clientset.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := runBinary(t, nil, "renew", kc, ns+"/"+name)
		if code != exitRenewRefused || !strings.Contains(errOut, "not a certificate Secret meshca keeps") {
			t.Errorf("renew %s: exit %d, want %d with a refusal\nstdout: %s\nstderr: %s", name, code, exitRenewRefused, out, errOut)
		}
		if got := get(name).Annotations[meta.AnnotationRenewRequested]; got != "" {
			t.Errorf("renew %s marked a refused Secret", name)
		}
	}
	if _, errOut, code := runBinary(t, nil, "renew", kc, ns+"/absent"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Errorf("renew of a missing Secret: exit %d, want 1\n%s", code, errOut)
	}
	if _, errOut, code := runBinary(t, nil, "renew", kc, "no-slash"); code != 1 || !strings.Contains(errOut, "NAMESPACE/SECRET") {
		t.Errorf("renew no-slash: exit %d, want 1\n%s", code, errOut)
	}
}
