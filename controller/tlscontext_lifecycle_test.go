package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/rotator"
)

// TestReissueOnDrift: deleting, corrupting or mismatching the Secret, or
// changing the names asked for, gets a new certificate with the reason
// recorded; the serial changes each time.
func TestReissueOnDrift(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	h := startHarness(t, harnessOptions{namespaces: []string{ns}})
	ctx := context.Background()
	tc := tlsContext(ns, "drift", issue, map[string]any{"hosts": []any{"a." + ns + ".svc"}, "secret": "drift-certs"})
	h.create(t, tc)
	s := h.waitSecret(t, ns, "drift-certs", nil)
	serial := s.Annotations[meta.AnnotationSerial]

	newSerial := func(reason string) {
		t.Helper()
		s = h.waitSecret(t, ns, "drift-certs", func(s *corev1.Secret) bool {
			return s.Annotations[meta.AnnotationSerial] != serial && s.Annotations[meta.AnnotationReason] == reason
		})
		serial = s.Annotations[meta.AnnotationSerial]
		if err := emissaryCheck(s, false); err != nil {
			t.Fatalf("after %s: %v", reason, err)
		}
	}

	t.Log("corrupt tls.crt")
	s.Data[corev1.TLSCertKey] = []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
	if err := env.Client.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	newSerial(rotator.ReasonUnparsable)

	t.Log("swap in the key of another certificate")
	other := h.waitSecret(t, ns, "drift-certs", nil)
	key := other.Data[corev1.TLSPrivateKeyKey]
	b := issueFor(t, h, ns)
	other.Data[corev1.TLSPrivateKeyKey] = b.PrivateKeyPEM
	if err := env.Client.Update(ctx, other); err != nil {
		t.Fatal(err)
	}
	newSerial(rotator.ReasonKeyMismatch)
	if string(s.Data[corev1.TLSPrivateKeyKey]) == string(key) {
		t.Error("the key was not replaced")
	}

	t.Log("change the hosts")
	if err := env.Client.Get(ctx, keyOf(tc), tc); err != nil {
		t.Fatal(err)
	}
	tc.Object["spec"].(map[string]any)["hosts"] = []any{"a." + ns + ".svc", "b." + ns + ".svc"}
	if err := env.Client.Update(ctx, tc); err != nil {
		t.Fatal(err)
	}
	newSerial(rotator.ReasonNamesChanged)
	if got := joined(leafOf(t, s).DNSNames); got != "a."+ns+".svc,b."+ns+".svc" {
		t.Errorf("names after change: %s", got)
	}

	t.Log("delete the Secret")
	if err := env.Client.Delete(ctx, s); err != nil {
		t.Fatal(err)
	}
	newSerial(rotator.ReasonMissing)
}

// TestSteadyStateNoWrites: re-syncing 100 unchanged TLSContexts performs no
// Secret write, counted by a watch on the API server.
func TestSteadyStateNoWrites(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	h := startHarness(t, harnessOptions{namespaces: []string{ns}})
	const n = 100
	for i := range n {
		h.create(t, tlsContext(ns, fmt.Sprintf("tc-%03d", i), issue, map[string]any{
			"hosts": []any{fmt.Sprintf("svc-%03d.%s.svc", i, ns)}, "secret": fmt.Sprintf("certs-%03d", i), "ca_secret": "bundle"}))
	}
	for i := range n {
		h.waitSecret(t, ns, fmt.Sprintf("certs-%03d", i), nil)
	}
	h.waitSecret(t, ns, "bundle", nil)
	h.settle(t) // let the first round's follow-ups finish

	list := &corev1.SecretList{}
	if err := env.Client.List(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	w, err := env.Clientset.CoreV1().Secrets(ns).Watch(context.Background(), metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	before := counter(t, h.metrics.Writes.WithLabelValues("update")) + counter(t, h.metrics.Writes.WithLabelValues("create"))
	h.settle(t)
	h.settle(t)
	// Drain what the watch saw; a write would arrive within milliseconds of
	// the reconcile that made it, and the settles above waited for those.
	writes := 0
	timeout := time.After(2 * time.Second)
drain:
	for {
		select {
		case ev := <-w.ResultChan():
			if ev.Type == watch.Added || ev.Type == watch.Modified || ev.Type == watch.Deleted {
				writes++
			}
		case <-timeout:
			break drain
		}
	}
	after := counter(t, h.metrics.Writes.WithLabelValues("update")) + counter(t, h.metrics.Writes.WithLabelValues("create"))
	t.Logf("2 resyncs of %d TLSContexts: %d Secret writes seen by the watch, %v counted", n, writes, after-before)
	if writes != 0 || after != before {
		t.Errorf("steady state wrote: %d watch events, %v counted writes", writes, after-before)
	}
}

// TestCleanup: with the default policy a TLSContext's Secrets stay when it
// goes; with --secret-cleanup=delete they go with it.
func TestCleanup(t *testing.T) {
	env := testenv.Get(t)
	for _, policy := range []SecretCleanup{CleanupKeep, CleanupDelete} {
		t.Run(string(policy), func(t *testing.T) {
			ns := env.Namespace(t)
			h := startHarness(t, harnessOptions{namespaces: []string{ns}, config: TLSContextConfig{Cleanup: policy}})
			tc := tlsContext(ns, "gone", issue, map[string]any{"secret": "gone-certs"})
			optOut := tlsContext(ns, "opt-out", issue, map[string]any{"secret": "opt-out-certs"})
			h.create(t, tc, optOut)
			h.waitSecret(t, ns, "gone-certs", nil)
			h.waitSecret(t, ns, "opt-out-certs", nil)
			ctx := context.Background()
			if err := env.Client.Delete(ctx, tc); err != nil {
				t.Fatal(err)
			}
			if err := env.Client.Get(ctx, keyOf(optOut), optOut); err != nil {
				t.Fatal(err)
			}
			optOut.SetAnnotations(nil)
			if err := env.Client.Update(ctx, optOut); err != nil {
				t.Fatal(err)
			}
			h.settle(t)
			for _, name := range []string{"gone-certs", "opt-out-certs"} {
				if policy == CleanupDelete {
					eventually(t, 30*time.Second, "deletion of "+name, func() bool {
						return h.secretGone(ns, name)
					})
				} else {
					h.waitSecret(t, ns, name, nil)
				}
			}
		})
	}
}
