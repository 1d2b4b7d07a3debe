package layers_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// module is meshca's module path. In the rules below a pattern that starts
// with "./" names meshca packages relative to the module root; any other
// pattern is an import path. A pattern ending in "/..." also matches every
// package below it, and "./..." matches every meshca package.
const module = "github.com/meshca/meshca"

// A rule forbids some meshca packages to link some others.
//
// A rule is about production code: what the packages' non-test files link,
// directly or through any other package, as the meshca binary would. Tests
// may import more (test helpers, a control plane, the packages above them),
// so their imports are checked only by rules that set tests.
type rule struct {
	// pkgs are the packages the rule is about; except removes some of them.
	pkgs, except []string
	// deny are the packages they must not link. The path to a denied
	// package ends there: what it links in turn is not reported.
	deny []string
	// allow are exceptions to deny; the search goes on through them.
	allow []string
	// tests extends the rule to what the packages' test files link.
	tests bool
	// why is printed with a violation: what the rule protects.
	why string
}

// kube is the Kubernetes API and its clients.
var kube = []string{
	"k8s.io/client-go/...",
	"sigs.k8s.io/controller-runtime/...",
	"k8s.io/api/...",
	"k8s.io/apimachinery/...",
}

// testHelpers are the packages tests share; they start control planes, step-ca
// servers and daemons, and make throwaway PKIs.
var testHelpers = []string{
	"./internal/testenv",
	"./internal/testpki",
	"./internal/daemontest",
	"./internal/stepcatest",
}

// layers is meshca's layering. docs/design.md ("Enforced layers") explains it.
var layers = []rule{
	{
		pkgs:   []string{"./ca/..."},
		except: []string{"./ca/castore"},
		deny:   append(slices.Clone(kube), "./..."),
		allow:  []string{"./ca/..."},
		why:    "the CA is keys, certificates and their state: it talks to no API server (its Secret is kept by ca/castore) and builds on no other part of meshca",
	},
	{
		pkgs:  []string{"./ca/castore"},
		deny:  []string{"sigs.k8s.io/controller-runtime/...", "./..."},
		allow: []string{"./ca", "./ca/castore"},
		why:   "the CA store reads and writes one Secret with client-go; it needs no controller-runtime and no part of meshca but the CA",
	},
	{
		pkgs:  []string{"./rotator/..."},
		deny:  append(slices.Clone(kube), "./..."),
		allow: []string{"./rotator/...", "./ca"},
		why:   "the rotator is time math and a CA rotator that drives interfaces it defines (CAStore, LeafInventory); it writes nothing to Kubernetes itself",
	},
	{
		pkgs:  []string{"./authority/..."},
		deny:  append(slices.Clone(kube), "./..."),
		allow: []string{"./authority/...", "./ca"},
		why:   "the authority orders what a CA change does through subscribers it does not know; it reads and writes nothing in Kubernetes and builds on no part of meshca but the CA",
	},
	{
		pkgs: []string{"./issuer/..."},
		deny: []string{
			"./controller/...", "./webhook/...", "./cmd/...", "./internal/check", "./internal/status", "./ca/castore",
			"k8s.io/client-go/...", "sigs.k8s.io/controller-runtime/...",
		},
		why: "the issuer turns a request into a verified certificate for the controllers and the CLI; it reads no cluster state",
	},
	{
		pkgs: []string{"./webhook/..."},
		deny: []string{"./controller/..."},
		why:  "the webhook serves on every replica and the controllers run on the leader only; cmd/meshca wires the two together",
	},
	{
		pkgs: []string{"./controller/..."},
		deny: []string{"./webhook/..."},
		why:  "the controllers run on the leader only and the webhook on every replica; cmd/meshca wires the two together",
	},
	{
		pkgs: []string{"./..."},
		deny: []string{"./cmd/...", "./hack/...", "./bench/...", "./test/..."},
		why:  "programs, developer tools and end-to-end tests are leaves: nothing builds on them",
	},
	{
		pkgs:   []string{"./..."},
		except: append(slices.Clone(testHelpers), "./hack/...", "./bench/..."),
		deny:   testHelpers,
		why:    "test helpers are for tests and the developer tools under hack/ and bench/; meshca's binary and libraries never link them",
	},
	{
		pkgs:   []string{"./ca/...", "./rotator/...", "./authority/..."},
		except: []string{"./ca/castore"},
		tests:  true,
		deny:   append([]string{"./internal/testenv", "./internal/daemontest", "./internal/stepcatest"}, kube[:2]...),
		why:    "pure logic is tested without the API server (STYLE.md rule 11), so these tests run anywhere, -short or not",
	},
}

// tagSets are the build tags meshca is built with; the rules hold for each.
var tagSets = []string{"", "stepca"}

func TestLayers(t *testing.T) {
	root := moduleRoot(t)
	watchSources(t, root)
	// A violation found with several tag sets is reported once.
	var order []string
	seen := map[string][]string{}
	for _, tags := range tagSets {
		for _, v := range violations(t, loadGraph(t, root, tags)) {
			if _, ok := seen[v]; !ok {
				order = append(order, v)
			}
			seen[v] = append(seen[v], fmt.Sprintf("%q", tags))
		}
	}
	for _, v := range order {
		t.Errorf("%s\n\tbuild tags: %s", v, strings.Join(seen[v], ", "))
	}
}

// TestMatch pins the pattern language of the rules.
func TestMatch(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		pattern, path string
		want          bool
	}{
		"meshca exact":            {"./ca", module + "/ca", true},
		"meshca exact, not below": {"./ca", module + "/ca/castore", false},
		"meshca tree":             {"./ca/...", module + "/ca/castore", true},
		"meshca tree, itself":     {"./ca/...", module + "/ca", true},
		"meshca tree, prefix":     {"./ca/...", module + "/cat", false},
		"all of meshca":           {"./...", module + "/webhook", true},
		"all of meshca, not deps": {"./...", "k8s.io/client-go/rest", false},
		"import path tree":        {"k8s.io/client-go/...", "k8s.io/client-go/kubernetes", true},
		"import path, prefix":     {"k8s.io/api/...", "k8s.io/apimachinery/pkg/types", false},
		"import path exact":       {"k8s.io/utils/clock", "k8s.io/utils/clock", true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := match(tc.pattern, tc.path); got != tc.want {
				t.Errorf("match(%q, %q) = %v, want %v", tc.pattern, tc.path, got, tc.want)
			}
		})
	}
}

// pkg is what go list says of one package.
type pkg struct {
	ImportPath   string
	Standard     bool
	Imports      []string
	TestImports  []string
	XTestImports []string
	Error        *struct{ Err string }
}

// graph is meshca's packages and everything they and their tests link.
type graph struct {
	pkgs   map[string]*pkg
	meshca []string // meshca's own packages, sorted
}

// loadGraph runs go list over the module with the given build tags.
func loadGraph(t *testing.T, root, tags string) *graph {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the layering test reads the import graph with the go command: %v", err)
	}
	args := []string{"list", "-e", "-deps", "-test", "-json=ImportPath,Standard,Imports,TestImports,XTestImports,Error"}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	args = append(args, "./...")
	cmd := exec.Command(goTool, args...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	g := &graph{pkgs: map[string]*pkg{}}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		// -test adds test variants ("p [p.test]", "p.test"); the plain
		// package and its TestImports describe the same imports.
		if strings.Contains(p.ImportPath, " ") || strings.HasSuffix(p.ImportPath, ".test") {
			continue
		}
		g.pkgs[p.ImportPath] = &p
		if match("./...", p.ImportPath) {
			if p.Error != nil {
				t.Errorf("go list %s: %s", p.ImportPath, p.Error.Err)
			}
			g.meshca = append(g.meshca, p.ImportPath)
		}
	}
	slices.Sort(g.meshca)
	return g
}

// violations describes every package that links a package a rule denies,
// and every rule that covers no package.
func violations(t *testing.T, g *graph) []string {
	t.Helper()
	var out []string
	for _, r := range layers {
		covered := 0
		for _, p := range g.meshca {
			if !matchAny(r.pkgs, p) || matchAny(r.except, p) {
				continue
			}
			covered++
			what := short(p)
			if r.tests {
				what += " (with its tests)"
			}
			for _, path := range forbidden(g, r, p) {
				out = append(out, fmt.Sprintf("%s must not link %s, but does: %s\n\trule: %s",
					what, short(path[len(path)-1]), strings.Join(shortAll(path), " -> "), r.why))
			}
		}
		if covered == 0 {
			out = append(out, fmt.Sprintf("rule %v covers no package: one was renamed or removed; update the rule (%s)", r.pkgs, r.why))
		}
	}
	return out
}

// forbidden returns, for each denied package that start links, the shortest
// import path from start to it.
func forbidden(g *graph, r rule, start string) [][]string {
	from := map[string]string{start: ""}
	var queue, found []string
	enqueue := func(parent string, imports []string) {
		for _, imp := range imports {
			if _, seen := from[imp]; !seen {
				from[imp] = parent
				queue = append(queue, imp)
			}
		}
	}
	s := g.pkgs[start]
	enqueue(start, s.Imports)
	if r.tests {
		enqueue(start, s.TestImports)
		enqueue(start, s.XTestImports)
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if !matchAny(r.allow, p) && matchAny(r.deny, p) {
			found = append(found, p)
			continue
		}
		if dep, ok := g.pkgs[p]; ok && !dep.Standard {
			enqueue(p, dep.Imports)
		}
	}
	paths := make([][]string, 0, len(found))
	for _, p := range found {
		var path []string
		for at := p; at != ""; at = from[at] {
			path = append(path, at)
		}
		slices.Reverse(path)
		paths = append(paths, path)
	}
	return paths
}

func match(pattern, path string) bool {
	if rel, ok := strings.CutPrefix(pattern, "./"); ok {
		pattern = module
		if rel != "..." {
			pattern += "/" + rel
		} else {
			pattern += "/..."
		}
	}
	if tree, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == tree || strings.HasPrefix(path, tree+"/")
	}
	return path == pattern
}

func matchAny(patterns []string, path string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return match(p, path) })
}

// short drops the module path from a meshca package.
func short(path string) string {
	if rel, ok := strings.CutPrefix(path, module+"/"); ok {
		return rel
	}
	return path
}

func shortAll(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = short(p)
	}
	return out
}

// moduleRoot is the folder of meshca's go.mod, above the test's folder.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's folder")
		}
		dir = parent
	}
}

// watchSources stats every Go file and go.mod of the module. The go command
// caches a test's result until a file the test itself opened changes; the
// import graph is read by a child process, so without this a cached pass
// would hide a forbidden import added later to another package.
func watchSources(t *testing.T, root string) {
	t.Helper()
	for _, f := range []string{"go.mod", "go.sum"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Fatal(err)
		}
	}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path == root {
				return nil
			}
			name := d.Name()
			if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" {
				return filepath.SkipDir
			}
			// Another module (hack/kube, bench/plot, ...) is not meshca's.
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") {
			_, err = os.Stat(path)
		}
		return err
	})
	if err != nil {
		t.Fatalf("walk the module's sources: %v", err)
	}
}
