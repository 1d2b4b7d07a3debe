//go:build stepca

package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/daemontest"
	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/internal/stepcatest"
	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/internal/testpki"
)

// TestServeStepCA runs a meshca built with -tags stepca and --issuer=stepca
// against a real step-ca: a TLSContext's certificate comes from step-ca
// under the namespace policy, every ca.crt and the trust bundle hold
// meshca's roots and step-ca's, the webhook stays on meshca's CA, the
// certificate is not reissued over and over, and with step-ca down a new
// TLSContext gets a Warning Event while nothing existing changes.
func TestServeStepCA(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a step-ca and the control plane")
	}
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	srv := stepcatest.Start(t)
	dir := t.TempDir()
	rootFile := testpki.WriteFile(t, dir, "step-root.crt", srv.PKI.RootPEM)
	passwordFile := testpki.WriteFile(t, dir, "password", []byte(stepcatest.Password+"\n"))
	// The audit sweep re-evaluates every Secret each second, so a wrong
	// renewal decision would show as a reissue loop within the test.
	d := startDaemon(t, env, ns, "--issuer=stepca", "--stepca-url="+srv.URL, "--stepca-root-file="+rootFile,
		"--stepca-provisioner="+stepcatest.Provisioner, "--stepca-provisioner-password-file="+passwordFile,
		"--audit-schedule=@every 1s")
	ctx := context.Background()
	secrets := env.Clientset.CoreV1().Secrets(ns)

	createTLSContexts(t, env, ns, "up", 1, nil)
	waitValidSecrets(t, env, ns, "up", 1, nil)
	s, err := secrets.Get(ctx, "up-0-certs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("signed by step-ca", func(t *testing.T) {
		certs, err := ca.ParseCertificatesPEM(s.Data[corev1.TLSCertKey])
		if err != nil || len(certs) < 2 {
			t.Fatalf("tls.crt: %v (%d certificates, want leaf and intermediate)", err, len(certs))
		}
		leafFile := testpki.WriteFile(t, dir, "leaf.crt", testpki.CertPEM(certs[0]))
		chainFile := testpki.WriteFile(t, dir, "tls.crt", s.Data[corev1.TLSCertKey])
		testpki.Verify(t, rootFile, chainFile, leafFile)
		if got, want := s.Annotations[meta.AnnotationIssuer], ca.Fingerprint(srv.PKI.Intermediate); got != want {
			t.Errorf("%s = %s, want step-ca's intermediate %s", meta.AnnotationIssuer, got, want)
		}
		wantURI := "spiffe://cluster.local/ns/" + ns + "/sa/ambassador"
		if len(certs[0].URIs) != 1 || certs[0].URIs[0].String() != wantURI {
			t.Errorf("URIs %v, want [%s]", certs[0].URIs, wantURI)
		}
	})

	t.Run("bundle is meshca's roots and step-ca's", func(t *testing.T) {
		st, err := ca.SecretStore{Client: env.Clientset, Namespace: ns}.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := append(st.Roots(), srv.PKI.Root)
		sameRoots(t, "Secret ca.crt", s.Data[corev1.ServiceAccountRootCAKey], want)
		daemontest.Eventually(t, time.Minute, "trust bundle ConfigMap", func(ctx context.Context) (bool, error) {
			cm, err := env.Clientset.CoreV1().ConfigMaps(ns).Get(ctx, meta.TrustBundleConfigMap, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			return bytes.Equal([]byte(cm.Data[corev1.ServiceAccountRootCAKey]), s.Data[corev1.ServiceAccountRootCAKey]), nil
		})
		// The webhook's serving certificate stays on meshca's CA, and its
		// Secret's bundle (what the caBundle follows) without step-ca.
		var wh *corev1.Secret
		daemontest.Eventually(t, time.Minute, "webhook Secret", func(ctx context.Context) (bool, error) {
			wh, err = secrets.Get(ctx, "meshca-webhook-tls", metav1.GetOptions{})
			return err == nil, err
		})
		sameRoots(t, "webhook Secret ca.crt", wh.Data[corev1.ServiceAccountRootCAKey], st.Roots())
		if got, want := wh.Annotations[meta.AnnotationIssuer], st.Get(ca.SlotCurrent).Fingerprint(); got != want {
			t.Errorf("webhook certificate issued by %s, want meshca's CA %s", got, want)
		}
	})

	t.Run("no reissue loop", func(t *testing.T) {
		time.Sleep(5 * time.Second) // five audit sweeps
		again, err := secrets.Get(ctx, "up-0-certs", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if again.ResourceVersion != s.ResourceVersion || again.Annotations[meta.AnnotationSerial] != s.Annotations[meta.AnnotationSerial] {
			t.Errorf("Secret changed: resourceVersion %s -> %s, serial %s -> %s (reason %s)", s.ResourceVersion, again.ResourceVersion,
				s.Annotations[meta.AnnotationSerial], again.Annotations[meta.AnnotationSerial], again.Annotations[meta.AnnotationReason])
		}
		if n := daemontest.ParseSamples(d.MetricsText(t)).Sum("meshca_certificates_issued_total"); n != 1 {
			t.Errorf("meshca_certificates_issued_total = %v, want 1", n)
		}
	})

	t.Run("step-ca down", func(t *testing.T) {
		srv.Stop()
		createTLSContexts(t, env, ns, "down", 1, nil)
		daemontest.Eventually(t, time.Minute, "IssueFailed Event on down-0", func(ctx context.Context) (bool, error) {
			return strings.Contains(eventsText(t, env, ns), "down-0 Warning IssueFailed"), nil
		})
		daemontest.Eventually(t, 30*time.Second, "sign failures in the metrics", func(ctx context.Context) (bool, error) {
			n := daemontest.ParseSamples(d.MetricsText(t)).Sum("meshca_certificate_failures_total", "cause=sign")
			return n >= 1, nil
		})
		time.Sleep(3 * time.Second) // retries and audit sweeps while step-ca is down
		if _, err := secrets.Get(ctx, "down-0-certs", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Secret down-0-certs: %v, want none while step-ca is down", err)
		}
		again, err := secrets.Get(ctx, "up-0-certs", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if again.ResourceVersion != s.ResourceVersion {
			t.Errorf("Secret up-0-certs changed while step-ca was down: resourceVersion %s -> %s", s.ResourceVersion, again.ResourceVersion)
		}
		if !d.Running() {
			t.Fatalf("meshca exited: %v", d.Err())
		}
		if strings.Contains(d.Log(), stepcatest.Password) {
			t.Error("meshca's log holds the provisioner password")
		}
	})
}

// sameRoots fails unless bundle holds exactly want, in order.
func sameRoots(t *testing.T, what string, bundle []byte, want []*x509.Certificate) {
	t.Helper()
	got, err := ca.ParseCertificatesPEM(bundle)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	names := func(cs []*x509.Certificate) string {
		var b strings.Builder
		for _, c := range cs {
			fmt.Fprintf(&b, "[%s %s] ", c.Subject.CommonName, ca.Fingerprint(c)[:12])
		}
		return b.String()
	}
	if len(got) != len(want) {
		t.Fatalf("%s holds %s, want %s", what, names(got), names(want))
	}
	for i := range got {
		if !got[i].Equal(want[i]) {
			t.Fatalf("%s holds %s, want %s", what, names(got), names(want))
		}
	}
}
