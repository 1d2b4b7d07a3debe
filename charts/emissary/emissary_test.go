// Package emissary_test installs the meshca chart beside Emissary-ingress's
// TLSContext CRD on a real API server, in both orders: Emissary's CRD first,
// then the chart; and the chart first, then Emissary's CRD applied over the
// one the chart installed. Its control plane starts without meshca's CRDs.
package emissary_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/internal/testenv"
)

func TestMain(m *testing.M) { testenv.MainWithoutCRDs(m) }

const crdName = "tlscontexts.getambassador.io"

var (
	chartDir    = filepath.Join(testenv.RepoRoot(), "charts", "meshca")
	emissaryCRD = filepath.Join("testdata", "emissary-tlscontexts-crd.yaml")
)

// helm runs helm against the test API server with its state folders in the
// test's temp folder, and fails the test when it fails.
func helm(t *testing.T, env *testenv.Env, ns string, args ...string) string {
	t.Helper()
	bin, err := testenv.Helm()
	if err != nil {
		t.Fatalf("build helm (tests need it and never skip without it): %v", err)
	}
	home := t.TempDir()
	cmd := exec.Command(bin, append(args, "--kubeconfig", env.Kubeconfig, "--namespace", ns)...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), stderr.String())
	}
	return out.String()
}

// install installs the chart with its defaults (crds.install is true) as
// release meshca in ns; the webhook configuration is named after ns so the
// two orders' releases never share one.
func install(t *testing.T, env *testenv.Env, ns string, verb string) string {
	t.Helper()
	args := []string{verb, "meshca", chartDir, "--set", "webhook.configurationName=meshca-" + ns}
	if verb == "upgrade" {
		args = append(args, "--reuse-values")
	}
	return helm(t, env, ns, args...)
}

func getCRD(t *testing.T, env *testenv.Env) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	var crd apiextensionsv1.CustomResourceDefinition
	if err := env.Client.Get(context.Background(), client.ObjectKey{Name: crdName}, &crd); err != nil {
		t.Fatalf("get CRD %s: %v", crdName, err)
	}
	return &crd
}

// applyEmissaryCRD applies Emissary's CRD with kubectl, as Emissary's docs
// install it, and waits until the API server serves it.
func applyEmissaryCRD(t *testing.T, env *testenv.Env) {
	t.Helper()
	out, err := env.Kubectl(t, "apply", "-f", emissaryCRD)
	if err != nil {
		t.Fatalf("kubectl apply -f %s: %v\n%s", emissaryCRD, err, out)
	}
	t.Logf("kubectl apply -f %s:\n%s", emissaryCRD, out)
	if out, err := env.Kubectl(t, "wait", "--for=condition=Established", "--timeout=60s", "crd/"+crdName); err != nil {
		t.Fatalf("Emissary's CRD not established: %v\n%s", err, out)
	}
}

// checkEmissarys fails unless the CRD in the cluster is still Emissary's as
// applied: conversion through emissary-apiext, v2 stored, v1 not served.
func checkEmissarys(t *testing.T, crd *apiextensionsv1.CustomResourceDefinition) {
	t.Helper()
	conv := crd.Spec.Conversion
	if conv == nil || conv.Strategy != apiextensionsv1.WebhookConverter || conv.Webhook == nil ||
		conv.Webhook.ClientConfig == nil || conv.Webhook.ClientConfig.Service == nil ||
		conv.Webhook.ClientConfig.Service.Name != "emissary-apiext" {
		t.Errorf("the CRD's conversion is no longer Emissary's webhook: %+v", conv)
	}
	var versions []string
	for _, v := range crd.Spec.Versions {
		versions = append(versions, v.Name)
		if v.Storage && v.Name != "v2" {
			t.Errorf("the CRD stores %s; Emissary's stores v2", v.Name)
		}
	}
	if !slices.Equal(versions, []string{"v2", "v3alpha1", "v1"}) {
		t.Errorf("the CRD's versions are %v, want Emissary's v2, v3alpha1, v1", versions)
	}
	if crd.Labels["app.kubernetes.io/part-of"] != "emissary-apiext" {
		t.Errorf("the CRD's part-of label is %q, want Emissary's", crd.Labels["app.kubernetes.io/part-of"])
	}
}

// manifestHasCRD reports whether the release's manifest holds the CRD.
func manifestHasCRD(t *testing.T, env *testenv.Env, ns string) bool {
	t.Helper()
	return strings.Contains(helm(t, env, ns, "get", "manifest", "meshca"), "kind: CustomResourceDefinition")
}

func tlsContext(ns, name, version string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("getambassador.io/" + version)
	u.SetKind("TLSContext")
	u.SetNamespace(ns)
	u.SetName(name)
	u.SetAnnotations(map[string]string{"meshca.io/issue": "true"})
	_ = unstructured.SetNestedField(u.Object, name+"-tls", "spec", "secret")
	return u
}

// deleteCRD removes the CRD and waits until it is gone, so the next order
// starts from a cluster without one.
func deleteCRD(t *testing.T, env *testenv.Env) {
	t.Helper()
	ctx := context.Background()
	crd := &apiextensionsv1.CustomResourceDefinition{}
	crd.Name = crdName
	if err := env.Client.Delete(ctx, crd); err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("delete CRD: %v", err)
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKey{Name: crdName}, &apiextensionsv1.CustomResourceDefinition{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("CRD %s not gone: %v", crdName, err)
	}
}

// TestBesideEmissary runs the two orders one after the other on one control
// plane (each starts without the CRD), with install, upgrade and uninstall.
func TestBesideEmissary(t *testing.T) {
	env := testenv.Get(t)
	t.Run("EmissaryFirst", func(t *testing.T) { emissaryFirst(t, env) })
	deleteCRD(t, env)
	t.Run("MeshcaFirst", func(t *testing.T) { meshcaFirst(t, env) })
}

// emissaryFirst: Emissary's CRD is there; the chart with its defaults must
// install, upgrade and uninstall without failing and without touching it.
func emissaryFirst(t *testing.T, env *testenv.Env) {
	ctx := context.Background()
	applyEmissaryCRD(t, env)
	before := getCRD(t, env)
	ns := env.Namespace(t)

	notes := install(t, env, ns, "install")
	for _, want := range []string{
		"tlscontexts.getambassador.io was already there (owner: its conversion webhook emissary-system/emissary-apiext)",
		"this release leaves it alone",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("helm install output lacks %q:\n%s", want, notes)
		}
	}
	if manifestHasCRD(t, env, ns) {
		t.Error("the release's manifest holds the CRD although Emissary's was there")
	}
	install(t, env, ns, "upgrade")
	if manifestHasCRD(t, env, ns) {
		t.Error("after helm upgrade the release's manifest holds the CRD")
	}
	after := getCRD(t, env)
	if after.Generation != before.Generation || after.ResourceVersion != before.ResourceVersion {
		t.Errorf("install and upgrade changed Emissary's CRD: generation %d -> %d, resourceVersion %s -> %s",
			before.Generation, after.Generation, before.ResourceVersion, after.ResourceVersion)
	}
	if _, ok := after.Annotations["meta.helm.sh/release-name"]; ok {
		t.Errorf("the release adopted Emissary's CRD: %v", after.Annotations)
	}
	checkEmissarys(t, after)

	// Emissary's CRD stores v2, so every read or write of a v3alpha1
	// TLSContext (what meshca watches) goes through Emissary's conversion
	// webhook: without emissary-apiext running the API server refuses it.
	err := env.Client.Create(ctx, tlsContext(ns, "gw", "v3alpha1"))
	if err == nil || !strings.Contains(err.Error(), "conversion webhook") {
		t.Errorf("creating a v3alpha1 TLSContext without Emissary's conversion webhook: err = %v, want a conversion webhook error", err)
	}

	helm(t, env, ns, "uninstall", "meshca")
	checkEmissarys(t, getCRD(t, env))
	if got := getCRD(t, env); got.ResourceVersion != before.ResourceVersion {
		t.Errorf("helm uninstall changed Emissary's CRD (resourceVersion %s -> %s)", before.ResourceVersion, got.ResourceVersion)
	}
}

// meshcaFirst: the chart installs its CRD; Emissary's is then applied over
// it with kubectl; helm upgrade must leave Emissary's CRD as it is (not
// write meshca's back), and uninstall must not delete it.
func meshcaFirst(t *testing.T, env *testenv.Env) {
	ctx := context.Background()
	ns := env.Namespace(t)
	notes := install(t, env, ns, "install")
	if strings.Contains(notes, "was already there") {
		t.Errorf("helm install says a CRD was there on a cluster without one:\n%s", notes)
	}
	crd := getCRD(t, env)
	if crd.Annotations["meta.helm.sh/release-name"] != "meshca" || crd.Annotations["helm.sh/resource-policy"] != "keep" {
		t.Fatalf("the chart did not install its CRD as the release's, kept on uninstall: %v", crd.Annotations)
	}
	if !manifestHasCRD(t, env, ns) {
		t.Fatal("the release's manifest lacks the CRD it installed")
	}
	// An upgrade while the CRD is still meshca's keeps managing it.
	install(t, env, ns, "upgrade")
	if !manifestHasCRD(t, env, ns) {
		t.Fatal("helm upgrade let go of the chart's own CRD")
	}
	// TLSContexts written in both versions while meshca's CRD (no
	// conversion webhook, v3alpha1 stored) is in place.
	for _, v := range []string{"v3alpha1", "v2"} {
		if err := env.Client.Create(ctx, tlsContext(ns, "gw-"+v, v)); err != nil {
			t.Fatalf("create a %s TLSContext under meshca's CRD: %v", v, err)
		}
	}

	// Emissary is installed later: its CRDs are applied over meshca's.
	applyEmissaryCRD(t, env)
	checkEmissarys(t, getCRD(t, env))

	// helm upgrade sees Emissary's CRD and lets go of it: it neither
	// fails nor writes meshca's CRD back over Emissary's.
	notes = install(t, env, ns, "upgrade")
	if !strings.Contains(notes, "owner: its conversion webhook emissary-system/emissary-apiext") {
		t.Errorf("helm upgrade output does not say the CRD is Emissary's now:\n%s", notes)
	}
	if manifestHasCRD(t, env, ns) {
		t.Error("after Emissary took the CRD over, helm upgrade still renders meshca's")
	}
	crd = getCRD(t, env)
	checkEmissarys(t, crd)
	// Objects meshca's CRD stored as v3alpha1 are still there: Emissary's
	// CRD keeps v3alpha1, so the API server still reads them in v3alpha1
	// (meshca's version) without a conversion.
	if !slices.Contains(crd.Status.StoredVersions, "v3alpha1") {
		t.Errorf("storedVersions = %v, want v3alpha1 kept", crd.Status.StoredVersions)
	}
	for _, v := range []string{"v3alpha1", "v2"} {
		got := tlsContext(ns, "gw-"+v, "v3alpha1")
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(got), got); err != nil {
			t.Errorf("read the TLSContext written as %s under meshca's CRD, as v3alpha1, after Emissary's CRD took over: %v", v, err)
		} else if secret, _, _ := unstructured.NestedString(got.Object, "spec", "secret"); secret != "gw-"+v+"-tls" {
			t.Errorf("TLSContext gw-%s reads back with spec.secret %q", v, secret)
		}
	}
	// A second upgrade is as quiet as the first.
	install(t, env, ns, "upgrade")
	checkEmissarys(t, getCRD(t, env))

	helm(t, env, ns, "uninstall", "meshca")
	checkEmissarys(t, getCRD(t, env))
}
