package docs

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// root is the module root, relative to this package's folder.
const root = ".."

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return string(b)
}

// tableRows returns the Markdown table rows of doc whose first cell starts
// with prefix, keyed by the first cell's backticked text, as their cells.
func tableRows(doc, prefix string) map[string][]string {
	rows := map[string][]string{}
	for _, line := range strings.Split(doc, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "| "+prefix) {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows[strings.Trim(cells[0], "`")] = cells
	}
	return rows
}

var backticked = regexp.MustCompile("`([^`]+)`")

// helpFlag is one flag as `meshca serve --help` prints it.
type helpFlag struct {
	name, env, def string
}

var (
	helpLine    = regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9-]+)(?: [a-z0-9]+)?\s{2,}(.*)$`)
	helpEnv     = regexp.MustCompile(`\(env (MESHCA_[A-Z0-9_]+)\)`)
	helpDefault = regexp.MustCompile(`\(default ("[^"]*"|[^)]*)\)$`)
)

// serveFlags builds the binary and parses `meshca serve --help`.
func serveFlags(t *testing.T) []helpFlag {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build meshca: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "meshca")
	build := exec.Command(goBin, "build", "-o", bin, "./cmd/meshca")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/meshca: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "serve", "--help").Output()
	if err != nil {
		t.Fatalf("meshca serve --help: %v", err)
	}
	var flags []helpFlag
	for _, line := range strings.Split(string(out), "\n") {
		m := helpLine.FindStringSubmatch(line)
		if m == nil || m[1] == "help" {
			continue
		}
		f := helpFlag{name: m[1]}
		if e := helpEnv.FindStringSubmatch(m[2]); e != nil {
			f.env = e[1]
		}
		if d := helpDefault.FindStringSubmatch(m[2]); d != nil {
			f.def = strings.Trim(d[1], `"`)
		}
		flags = append(flags, f)
	}
	if len(flags) < 20 {
		t.Fatalf("parsed only %d flags from meshca serve --help; has its format changed?\n%s", len(flags), out)
	}
	return flags
}

// sameDefault reports whether a documented default matches the printed one;
// durations compare by value (24h is 24h0m0s).
func sameDefault(documented, printed string) bool {
	if documented == printed {
		return true
	}
	a, aerr := time.ParseDuration(documented)
	b, berr := time.ParseDuration(printed)
	return aerr == nil && berr == nil && a == b
}

// TestServeFlagsInReference fails when a `meshca serve` flag is missing from
// the flag table of reference.md, when its row names another environment
// variable or default, or when the table lists a flag serve does not have.
func TestServeFlagsInReference(t *testing.T) {
	rows := tableRows(readDoc(t, "reference.md"), "`--")
	seen := map[string]bool{}
	for _, f := range serveFlags(t) {
		seen[f.name] = true
		row, ok := rows["--"+f.name]
		if !ok {
			t.Errorf("reference.md: no row for --%s (env %s, default %q)", f.name, f.env, f.def)
			continue
		}
		if len(row) < 4 {
			t.Errorf("reference.md: row of --%s has %d cells, want flag | env | default | Helm value | meaning", f.name, len(row))
			continue
		}
		if f.env == "" || !strings.Contains(row[1], f.env) {
			t.Errorf("reference.md: row of --%s names env %q, serve --help says %q", f.name, row[1], f.env)
		}
		if f.def != "" {
			var docDefaults []string
			for _, m := range backticked.FindAllStringSubmatch(row[2], -1) {
				docDefaults = append(docDefaults, m[1])
			}
			if !slices.ContainsFunc(docDefaults, func(d string) bool { return sameDefault(d, f.def) }) {
				t.Errorf("reference.md: default of --%s is %q, serve --help says %q", f.name, row[2], f.def)
			}
		}
	}
	for name := range rows {
		if !seen[strings.TrimPrefix(name, "--")] {
			t.Errorf("reference.md lists %s, which meshca serve does not have", name)
		}
	}
}

// goFiles parses the non-test Go files of a package folder.
func goFiles(t *testing.T, dir string) []*ast.File {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(root, dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", p, err)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return files
}

// stringConsts returns the string constants of a package folder whose name
// and value keep returns true for, by name.
func stringConsts(t *testing.T, dir string, keep func(name, value string) bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range goFiles(t, dir) {
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					v, err := strconv.Unquote(lit.Value)
					if err == nil && keep(name.Name, v) {
						out[name.Name] = v
					}
				}
			}
		}
	}
	return out
}

// metric is one Prometheus collector as the Go source declares it.
type metric struct {
	name   string
	labels []string
}

// declaredMetrics finds prometheus.New<Kind>[Vec](prometheus.<Kind>Opts{...},
// []string{...}) calls and builds each full name the way
// prometheus.BuildFQName does (namespace_subsystem_name).
func declaredMetrics(t *testing.T, dir string) []metric {
	t.Helper()
	var out []metric
	for _, f := range goFiles(t, dir) {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !strings.HasPrefix(sel.Sel.Name, "New") {
				return true
			}
			// A collector's prometheus.NewDesc("name", help, labels, ...).
			if lit, ok := call.Args[0].(*ast.BasicLit); ok && sel.Sel.Name == "NewDesc" && lit.Kind == token.STRING && len(call.Args) > 2 {
				m := metric{}
				m.name, _ = strconv.Unquote(lit.Value)
				if labels, ok := call.Args[2].(*ast.CompositeLit); ok {
					for _, elt := range labels.Elts {
						if l, ok := elt.(*ast.BasicLit); ok {
							v, _ := strconv.Unquote(l.Value)
							m.labels = append(m.labels, v)
						}
					}
				}
				out = append(out, m)
				return true
			}
			opts, ok := call.Args[0].(*ast.CompositeLit)
			if !ok {
				return true
			}
			typ, ok := opts.Type.(*ast.SelectorExpr)
			if !ok || !strings.HasSuffix(typ.Sel.Name, "Opts") {
				return true
			}
			parts := map[string]string{}
			for _, elt := range opts.Elts {
				kv, ok := elt.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				key, _ := kv.Key.(*ast.Ident)
				lit, _ := kv.Value.(*ast.BasicLit)
				if key == nil || lit == nil || lit.Kind != token.STRING {
					continue
				}
				parts[key.Name], _ = strconv.Unquote(lit.Value)
			}
			var name []string
			for _, k := range []string{"Namespace", "Subsystem", "Name"} {
				if parts[k] != "" {
					name = append(name, parts[k])
				}
			}
			m := metric{name: strings.Join(name, "_")}
			if len(call.Args) > 1 {
				if labels, ok := call.Args[1].(*ast.CompositeLit); ok {
					for _, elt := range labels.Elts {
						if lit, ok := elt.(*ast.BasicLit); ok {
							l, _ := strconv.Unquote(lit.Value)
							m.labels = append(m.labels, l)
						}
					}
				}
			}
			out = append(out, m)
			return true
		})
	}
	return out
}

// TestMetricsInMetricsDoc fails when a metric registered in controller/,
// webhook/ or cmd/meshca has no row in metrics.md, when its row misses a label, or when
// metrics.md has a row for a metric no longer registered.
func TestMetricsInMetricsDoc(t *testing.T) {
	rows := tableRows(readDoc(t, "metrics.md"), "`meshca_")
	declared := map[string]bool{}
	for _, dir := range []string{"controller", "webhook", "cmd/meshca"} {
		ms := declaredMetrics(t, dir)
		if len(ms) == 0 {
			t.Fatalf("found no metrics in %s; has the way they are declared changed?", dir)
		}
		for _, m := range ms {
			declared[m.name] = true
			if !strings.HasPrefix(m.name, "meshca_") {
				t.Errorf("%s: metric %q does not start with meshca_", dir, m.name)
			}
			row, ok := rows[m.name]
			if !ok {
				t.Errorf("metrics.md: no row for %s (declared in %s)", m.name, dir)
				continue
			}
			line := strings.Join(row, "|")
			for _, l := range m.labels {
				if !strings.Contains(line, "`"+l+"`") {
					t.Errorf("metrics.md: row of %s does not name its label `%s`", m.name, l)
				}
			}
		}
	}
	for name := range rows {
		if !declared[name] {
			t.Errorf("metrics.md has a row for %s, which controller/, webhook/ and cmd/meshca do not register", name)
		}
	}
}

// TestAnnotationsInReference fails when an annotation or label meshca reads
// or writes (named in internal/meta or webhook) is not in reference.md.
func TestAnnotationsInReference(t *testing.T) {
	doc := readDoc(t, "reference.md")
	isMeshca := func(_, v string) bool { return strings.HasPrefix(v, "meshca.io/") }
	for _, dir := range []string{"internal/meta", "webhook"} {
		for name, v := range stringConsts(t, dir, isMeshca) {
			if !strings.Contains(doc, "`"+v+"`") {
				t.Errorf("reference.md does not document %s (%s.%s)", v, dir, name)
			}
		}
	}
}

// TestReasonsInTroubleshooting fails when an Event reason (controller),
// renewal reason (rotator) or policy rule (issuer) is not in
// troubleshooting.md.
func TestReasonsInTroubleshooting(t *testing.T) {
	doc := readDoc(t, "troubleshooting.md")
	for _, c := range []struct{ dir, prefix string }{
		{"controller", "Event"},
		{"rotator", "Reason"},
		{"issuer", "Rule"},
	} {
		consts := stringConsts(t, c.dir, func(name, _ string) bool { return strings.HasPrefix(name, c.prefix) })
		if len(consts) == 0 {
			t.Fatalf("no %s* constants in %s; have they moved?", c.prefix, c.dir)
		}
		for name, v := range consts {
			if !strings.Contains(doc, "`"+v+"`") {
				t.Errorf("troubleshooting.md does not explain `%s` (%s.%s)", v, c.dir, name)
			}
		}
	}
}

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestRelativeLinks fails when a relative link in the docs or the README
// points to a file that does not exist.
func TestRelativeLinks(t *testing.T) {
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join(root, "README.md"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllSubmatch(b, -1) {
			target := string(bytes.SplitN(m[1], []byte("#"), 2)[0])
			if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(f), target)); err != nil {
				t.Errorf("%s links to %s, which does not exist", f, m[1])
			}
		}
	}
}
