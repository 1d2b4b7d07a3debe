package controller

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/internal/testenv"
)

// TestShortLivedRenewal (issue 5): certificates issued with a 90-second
// lifetime, for a TLSContext and for a Deployment, are renewed before they
// expire; each Secret's serial changes, and polling each Secret about every
// 100ms never finds a certificate outside its validity. It ends once every
// Secret holds a renewed certificate (due at about two thirds of the
// lifetime, some 40 s in) and fails if one is still the first when the
// first would have expired. The renewal timing itself is proven in
// milliseconds on a fake clock (TestCertKeeperDecisions); this proves the
// real requeue and write against the API server.
func TestShortLivedRenewal(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	h := startHarness(t, harnessOptions{namespaces: []string{ns}, workloads: true})
	short := map[string]string{meta.AnnotationDuration: "90s"}
	h.create(t,
		tlsContext(ns, "short", map[string]string{meta.AnnotationIssue: "true", meta.AnnotationDuration: "90s"},
			map[string]any{"secret": "short-gateway"}),
		workload("Deployment", ns, "short", "", certAnn(meta.AnnotationDuration, short[meta.AnnotationDuration])))

	secrets := []string{"short-gateway", "short-meshca-tls"}
	firstNotAfter := map[string]time.Time{}
	serials := map[string]map[string]bool{}
	for _, name := range secrets {
		leaf := leafOf(t, h.waitSecret(t, ns, name, nil))
		if got := leaf.NotAfter.Sub(leaf.NotBefore); got > 3*time.Minute {
			t.Fatalf("Secret %s: lifetime %s, want 90s plus the backdate", name, got)
		}
		firstNotAfter[name] = leaf.NotAfter
		serials[name] = map[string]bool{}
	}
	end := firstNotAfter[secrets[0]]
	if firstNotAfter[secrets[1]].After(end) {
		end = firstNotAfter[secrets[1]]
	}
	end = end.Add(3 * time.Second)

	renewed := func() bool {
		for _, name := range secrets {
			if len(serials[name]) < 2 {
				return false
			}
		}
		return true
	}
	polls := 0
	for time.Now().Before(end) && !renewed() {
		for _, name := range secrets {
			s := &corev1.Secret{}
			if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, s); err != nil {
				t.Fatalf("Secret %s: %v", name, err)
			}
			leaf := leafOf(t, s)
			now := time.Now()
			if now.Before(leaf.NotBefore) || !now.Before(leaf.NotAfter) {
				t.Fatalf("Secret %s at %s holds serial %s valid only %s to %s",
					name, now.UTC().Format(time.RFC3339Nano), serialHex(leaf), leaf.NotBefore, leaf.NotAfter)
			}
			if !serials[name][serialHex(leaf)] {
				serials[name][serialHex(leaf)] = true
				opensslVerify(t, s)
			}
		}
		polls++
		time.Sleep(100 * time.Millisecond)
	}
	for _, name := range secrets {
		t.Logf("Secret %s: %d certificates seen in %d polls", name, len(serials[name]), polls)
		if len(serials[name]) < 2 {
			t.Errorf("Secret %s: the serial never changed", name)
		}
	}
}
