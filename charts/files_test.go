package charts_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshca/meshca/charts/internal/readme"
	"github.com/meshca/meshca/internal/testenv"
)

const crdFile = "getambassador.io_tlscontexts.yaml"

// TestCRDCopyMatchesConfig keeps the chart's TLSContext CRD from drifting
// from config/crd, the copy the tests' control plane installs.
func TestCRDCopyMatchesConfig(t *testing.T) {
	t.Parallel()
	want, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "crd", crdFile))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(chartDir, "files", "crds", crdFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("charts/meshca/files/crds/%s differs from config/crd/%s: copy it over (cp config/crd/%s charts/meshca/files/crds/)", crdFile, crdFile, crdFile)
	}

	// The rendered CRD is the same object plus the keep policy.
	var wantObj map[string]any
	if err := yaml.Unmarshal(want, &wantObj); err != nil {
		t.Fatal(err)
	}
	var rendered map[string]any
	for _, o := range splitManifests(t, render(t, goldenNamespace)) {
		if o.Kind == "CustomResourceDefinition" {
			rendered = o.Contents
		}
	}
	if rendered == nil {
		t.Fatal("the default render has no CustomResourceDefinition (crds.install defaults to true)")
	}
	meta := rendered["metadata"].(map[string]any)
	ann, _ := meta["annotations"].(map[string]any)
	if ann["helm.sh/resource-policy"] != "keep" {
		t.Errorf("rendered CRD annotations = %v, want helm.sh/resource-policy: keep", ann)
	}
	delete(ann, "helm.sh/resource-policy")
	if len(ann) == 0 {
		delete(meta, "annotations")
	}
	if !reflect.DeepEqual(rendered, wantObj) {
		t.Errorf("rendered CRD differs from config/crd/%s beyond the keep annotation", crdFile)
	}
}

// TestREADME fails when charts/meshca/README.md no longer matches
// README.md.gotmpl and the comments of values.yaml; -update rewrites it.
func TestREADME(t *testing.T) {
	t.Parallel()
	got, err := readme.Generate(chartDir)
	if err != nil {
		t.Fatalf("generate README: %v", err)
	}
	compareGolden(t, filepath.Join(chartDir, "README.md"), got)
}
