package charts_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/testenv"
)

// TestHelmInstall installs the chart the way users do, with helm itself,
// which also renders NOTES.txt, then uninstalls it. The control plane
// installed the TLSContext CRD from config/crd before any test, as a
// helm-less install (make run) leaves it: the chart, with its default
// crds.install=true, must find it, leave it alone (neither fail on it nor
// adopt it) and say so; uninstalling must not delete it. The orders beside
// Emissary's CRD are charts/emissary's tests.
func TestHelmInstall(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	kube := []string{"--kubeconfig", env.Kubeconfig, "--namespace", ns}
	// The webhook configuration gets its own name so it cannot meet
	// TestApply's.
	install := append([]string{"install", "meshca", chartDir, "--set", "webhook.configurationName=meshca-helm-install"}, kube...)
	out, stderr, err := runHelm(t, install...)
	if err != nil {
		t.Fatalf("helm install: %v\n%s%s", err, out, stderr)
	}
	uninstalled := false
	t.Cleanup(func() {
		if !uninstalled {
			runHelm(t, append([]string{"uninstall", "meshca"}, kube...)...)
		}
	})
	for _, want := range []string{
		"kubectl annotate tlscontext <name> meshca.io/issue=true",
		"Secret " + ns + "/meshca-ca",
		"failurePolicy is Fail",
		"tlscontexts.getambassador.io was already there (owner: meshca)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("helm install output lacks %q:\n%s", want, out)
		}
	}

	var crd apiextensionsv1.CustomResourceDefinition
	if err := env.Client.Get(context.Background(), client.ObjectKey{Name: "tlscontexts.getambassador.io"}, &crd); err != nil {
		t.Fatal(err)
	}
	if owner, ok := crd.Annotations["meta.helm.sh/release-name"]; ok {
		t.Errorf("helm install adopted the CRD it found (release %q)", owner)
	}

	// meshca fills the webhook configuration's caBundle at run time; the
	// chart leaves the field out so that helm upgrade keeps it.
	ctx := context.Background()
	bundle := testCABundle(t)
	mwc, err := env.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "meshca-helm-install", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mwc.Webhooks[0].ClientConfig.CABundle = bundle
	if _, err := env.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(ctx, mwc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	upgrade := append([]string{"upgrade", "meshca", chartDir, "--reuse-values", "--set", "webhook.timeoutSeconds=7"}, kube...)
	if out, stderr, err := runHelm(t, upgrade...); err != nil {
		t.Fatalf("helm upgrade: %v\n%s%s", err, out, stderr)
	}
	mwc, err = env.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "meshca-helm-install", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := mwc.Webhooks[0].TimeoutSeconds; got == nil || *got != 7 {
		t.Errorf("helm upgrade did not apply webhook.timeoutSeconds=7 (got %v)", got)
	}
	if !bytes.Equal(mwc.Webhooks[0].ClientConfig.CABundle, bundle) {
		t.Errorf("helm upgrade changed the caBundle meshca wrote (%d bytes, want %d)", len(mwc.Webhooks[0].ClientConfig.CABundle), len(bundle))
	}

	out, stderr, err = runHelm(t, append([]string{"uninstall", "meshca"}, kube...)...)
	if err != nil {
		t.Fatalf("helm uninstall: %v\n%s%s", err, out, stderr)
	}
	uninstalled = true
	if err := env.Client.Get(context.Background(), client.ObjectKey{Name: "tlscontexts.getambassador.io"}, &crd); err != nil {
		t.Fatalf("the TLSContext CRD is gone after helm uninstall: %v", err)
	}
	if crd.DeletionTimestamp != nil {
		t.Fatal("helm uninstall is deleting the TLSContext CRD")
	}
}

// testCABundle is the PEM root of a fresh CA, standing in for the bundle
// meshca writes into the webhook configuration.
func testCABundle(t *testing.T) []byte {
	t.Helper()
	c, err := ca.New(ca.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return ca.EncodeCertificatesPEM(c.Root)
}
