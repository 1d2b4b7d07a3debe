package charts_test

import (
	"bytes"
	"flag"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshca/meshca/internal/testenv"
)

// The lint, golden and schema tests do not need the control plane, but they
// share the package with the apply test, and testenv starts one per package.
func TestMain(m *testing.M) { testenv.Main(m) }

var update = flag.Bool("update", false, "rewrite testdata/*.golden and charts/meshca/README.md")

const (
	releaseName = "meshca"
	// goldenNamespace is the release namespace of the golden renders.
	goldenNamespace = "meshca-system"
)

var (
	chartDir = filepath.Join(testenv.RepoRoot(), "charts", "meshca")

	helmPath = testenv.Helm

	// readChart reads every file of the chart once in this process. helm
	// reads them in a subprocess, which go test's result cache cannot see;
	// reading them here makes an edited template invalidate cached results.
	readChart = sync.OnceValue(func() error {
		return filepath.WalkDir(chartDir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			_, err = os.ReadFile(path)
			return err
		})
	})
)

// renderCase is one set of values the chart is rendered, linted and applied
// with. valuesFile is relative to testdata; empty means the defaults.
type renderCase struct {
	valuesFile string
}

var renderCases = map[string]renderCase{
	// The defaults: cluster-wide RBAC, CRD installed, failurePolicy Fail.
	"default": {},
	// Every daemon flag away from its default, rbac.namespaces, a
	// ServiceMonitor, no CRD, failurePolicy Ignore, scheduling overrides.
	"custom": {valuesFile: "custom.values.yaml"},
	// One replica without leader election, and nothing optional created.
	"minimal": {valuesFile: "minimal.values.yaml"},
}

func (c renderCase) args() []string {
	if c.valuesFile == "" {
		return nil
	}
	return []string{"--values", filepath.Join("testdata", c.valuesFile)}
}

// runHelm runs helm with its state folders inside the test's temp folder, so
// the tests neither read nor write the user's helm configuration.
func runHelm(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	bin, err := helmPath()
	if err != nil {
		t.Fatalf("build helm (tests need it and never skip without it): %v", err)
	}
	if err := readChart(); err != nil {
		t.Fatalf("read the chart: %v", err)
	}
	home := t.TempDir()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		"KUBECONFIG="+filepath.Join(home, "no-kubeconfig"),
	)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// render runs helm template for the chart and fails the test on error.
func render(t *testing.T, namespace string, args ...string) string {
	t.Helper()
	all := append([]string{"template", releaseName, chartDir, "--namespace", namespace}, args...)
	out, stderr, err := runHelm(t, all...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(all, " "), err, stderr)
	}
	return out
}

// object is one rendered manifest, decoded loosely.
type object struct {
	Kind     string
	Name     string
	Raw      string
	Contents map[string]any
}

// splitManifests splits helm template output into its documents.
func splitManifests(t *testing.T, out string) []object {
	t.Helper()
	var objs []object
	for _, doc := range strings.Split(out, "\n---\n") {
		doc = strings.TrimPrefix(doc, "---\n")
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("rendered document is not YAML: %v\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		kind, _ := m["kind"].(string)
		meta, _ := m["metadata"].(map[string]any)
		name, _ := meta["name"].(string)
		objs = append(objs, object{Kind: kind, Name: name, Raw: doc, Contents: m})
	}
	return objs
}

// compareGolden compares got with testdata/name, or rewrites it with -update.
func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./charts -update to create it)", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < len(gl) || i < len(wl); i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Fatalf("%s is stale (run go test ./charts -update and review the diff); first difference at line %d:\n got: %q\nwant: %q", path, i+1, g, w)
		}
	}
}

func TestLint(t *testing.T) {
	t.Parallel()
	for name, c := range renderCases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"lint", "--strict", chartDir, "--namespace", goldenNamespace}, c.args()...)
			out, stderr, err := runHelm(t, args...)
			if err != nil {
				t.Fatalf("helm lint --strict: %v\n%s%s", err, out, stderr)
			}
		})
	}
}

func TestGolden(t *testing.T) {
	t.Parallel()
	for name, c := range renderCases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out := render(t, goldenNamespace, c.args()...)
			compareGolden(t, filepath.Join("testdata", name+".golden"), []byte(out))
		})
	}
}
