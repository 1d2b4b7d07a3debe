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
	"github.com/meshca/meshca/ca/castore"
	"github.com/meshca/meshca/internal/daemontest"
	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/internal/stepcatest"
	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/internal/testpki"
)

// TestServeStepCA runs a meshca built with -tags stepca against a real
// step-ca, through a cluster's move from local to stepca and back. With
// --issuer=stepca, TLSContext and workload certificates come from step-ca;
// every ca.crt and the trust bundle hold meshca's roots and step-ca's, so
// the local certificate from before stays trusted and is not reissued; the
// webhook stays on meshca's CA; nothing is reissued over and over; with
// step-ca down a new TLSContext gets a Warning Event while nothing existing
// changes. Back on local with --stepca-root-file, step-ca's certificates
// stay as they are.
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
	ctx := context.Background()
	secrets := env.Clientset.CoreV1().Secrets(ns)
	get := func(t *testing.T, name string) *corev1.Secret {
		t.Helper()
		s, err := secrets.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// The audit sweep re-evaluates every Secret each second, so a wrong
	// renewal decision would show as a reissue loop within the test.
	audit := "--audit-schedule=@every 1s"

	// Before: a certificate of meshca's own CA.
	local := startDaemon(t, env, ns, audit)
	createTLSContexts(t, env, ns, "old", 1, nil)
	waitValidSecrets(t, env, ns, "old", 1, nil)
	old := get(t, "old-0-certs")
	local.Terminate(t)
	st, err := castore.Secret{Client: env.Clientset, Namespace: ns}.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bundle := append(st.Roots(), srv.PKI.Root)

	d := startDaemon(t, env, ns, "--issuer=stepca", "--stepca-url="+srv.URL, "--stepca-root-file="+rootFile,
		"--stepca-provisioner="+stepcatest.Provisioner, "--stepca-provisioner-password-file="+passwordFile, audit)
	createTLSContexts(t, env, ns, "up", 1, nil)
	if _, err := env.Clientset.AppsV1().Deployments(ns).Create(ctx, certDeployment(ns, "api"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitValidSecrets(t, env, ns, "up", 1, nil)
	daemontest.Eventually(t, time.Minute, "workload Secret api-meshca-tls", func(ctx context.Context) (bool, error) {
		s, err := secrets.Get(ctx, "api-meshca-tls", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		_, err = checkTLSSecret(s)
		return err == nil, err
	})
	// The old certificate's ca.crt follows the bundle; the certificate stays.
	daemontest.Eventually(t, time.Minute, "old-0-certs ca.crt with step-ca's root", func(ctx context.Context) (bool, error) {
		s, err := secrets.Get(ctx, "old-0-certs", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return bytes.Equal(s.Data[corev1.ServiceAccountRootCAKey], get(t, "up-0-certs").Data[corev1.ServiceAccountRootCAKey]), nil
	})
	names := []string{"old-0-certs", "up-0-certs", "api-meshca-tls"}
	before := map[string]*corev1.Secret{}
	for _, n := range names {
		before[n] = get(t, n)
	}

	t.Run("signed by step-ca", func(t *testing.T) {
		for _, name := range []string{"up-0-certs", "api-meshca-tls"} {
			s := before[name]
			certs, err := ca.ParseCertificatesPEM(s.Data[corev1.TLSCertKey])
			if err != nil || len(certs) < 2 {
				t.Fatalf("%s tls.crt: %v (%d certificates, want leaf and intermediate)", name, err, len(certs))
			}
			leafFile := testpki.WriteFile(t, dir, name+"-leaf.crt", testpki.CertPEM(certs[0]))
			chainFile := testpki.WriteFile(t, dir, name+"-tls.crt", s.Data[corev1.TLSCertKey])
			testpki.Verify(t, rootFile, chainFile, leafFile)
			if got, want := s.Annotations[meta.AnnotationIssuer], ca.Fingerprint(srv.PKI.Intermediate); got != want {
				t.Errorf("%s: %s = %s, want step-ca's intermediate %s", name, meta.AnnotationIssuer, got, want)
			}
		}
		wantURI := "spiffe://cluster.local/ns/" + ns + "/sa/ambassador"
		if leaf, _ := checkTLSSecret(before["up-0-certs"]); len(leaf.URIs) != 1 || leaf.URIs[0].String() != wantURI {
			t.Errorf("up-0-certs URIs %v, want [%s]", leaf.URIs, wantURI)
		}
		if got := before["old-0-certs"].Annotations[meta.AnnotationSerial]; got != old.Annotations[meta.AnnotationSerial] {
			t.Errorf("the local certificate was reissued (serial %s -> %s, reason %s)", old.Annotations[meta.AnnotationSerial], got,
				before["old-0-certs"].Annotations[meta.AnnotationReason])
		}
	})

	t.Run("bundle is meshca's roots and step-ca's", func(t *testing.T) {
		for _, n := range names {
			sameRoots(t, n+" ca.crt", before[n].Data[corev1.ServiceAccountRootCAKey], bundle)
		}
		daemontest.Eventually(t, time.Minute, "trust bundle ConfigMap", func(ctx context.Context) (bool, error) {
			cm, err := env.Clientset.CoreV1().ConfigMaps(ns).Get(ctx, meta.TrustBundleConfigMap, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			return cm.Data[corev1.ServiceAccountRootCAKey] == string(before["up-0-certs"].Data[corev1.ServiceAccountRootCAKey]), nil
		})
		// The webhook's serving certificate stays on meshca's CA, and its
		// Secret's bundle (what the caBundle follows) without step-ca.
		wh := get(t, "meshca-webhook-tls")
		sameRoots(t, "webhook Secret ca.crt", wh.Data[corev1.ServiceAccountRootCAKey], st.Roots())
		if got, want := wh.Annotations[meta.AnnotationIssuer], st.Get(ca.SlotCurrent).Fingerprint(); got != want {
			t.Errorf("webhook certificate issued by %s, want meshca's CA %s", got, want)
		}
	})

	unchanged := func(t *testing.T, when string) {
		t.Helper()
		for _, n := range names {
			now := get(t, n)
			if now.ResourceVersion != before[n].ResourceVersion {
				t.Errorf("%s %s: resourceVersion %s -> %s, serial %s -> %s (reason %s)", n, when, before[n].ResourceVersion, now.ResourceVersion,
					before[n].Annotations[meta.AnnotationSerial], now.Annotations[meta.AnnotationSerial], now.Annotations[meta.AnnotationReason])
			}
		}
	}

	t.Run("no reissue loop", func(t *testing.T) {
		time.Sleep(5 * time.Second) // five audit sweeps
		unchanged(t, "changed after it was ready")
		if n := daemontest.ParseSamples(d.MetricsText(t)).Sum("meshca_certificates_issued_total"); n != 2 {
			t.Errorf("meshca_certificates_issued_total = %v, want 2 (up-0 and api)", n)
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
		unchanged(t, "changed while step-ca was down")
		if !d.Running() {
			t.Fatalf("meshca exited: %v", d.Err())
		}
		if strings.Contains(d.Log(), stepcatest.Password) {
			t.Error("meshca's log holds the provisioner password")
		}
	})

	t.Run("back to local", func(t *testing.T) {
		d.Terminate(t)
		startDaemon(t, env, ns, "--stepca-root-file="+rootFile, audit)
		// down-0 gets its certificate from meshca's CA; by then the new
		// leader has looked at every Secret, and sweeps go on.
		waitValidSecrets(t, env, ns, "down", 1, nil)
		time.Sleep(3 * time.Second)
		unchanged(t, "changed after the move back to local")
		sameRoots(t, "down-0-certs ca.crt", get(t, "down-0-certs").Data[corev1.ServiceAccountRootCAKey], bundle)
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
