package metricdecl

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Kind is the Prometheus type of a declared metric.
type Kind string

const (
	Counter   Kind = "counter"
	Gauge     Kind = "gauge"
	Histogram Kind = "histogram"
	Summary   Kind = "summary"
	// Desc is a collector's prometheus.NewDesc: its type is chosen when
	// the collector emits a value, not where the source declares it.
	Desc Kind = "desc"
)

// Metric is one metric as the Go source declares it.
type Metric struct {
	// Name is the full name; empty when it is not made of string literals.
	Name   string
	Kind   Kind
	Labels []string
	// Dir is the package folder, relative to the module root.
	Dir string
}

// Series reports whether a PromQL series name belongs to m: its name, or
// for a histogram or summary one of the series Prometheus scrapes from it
// (_bucket, _sum, _count).
func (m Metric) Series(name string) bool {
	if name == m.Name {
		return true
	}
	switch m.Kind {
	case Histogram:
		return name == m.Name+"_bucket" || name == m.Name+"_sum" || name == m.Name+"_count"
	case Summary:
		return name == m.Name+"_sum" || name == m.Name+"_count"
	}
	return false
}

// Module returns every metric declared by the non-test Go files of the
// module rooted at root (its packages as Packages finds them).
func Module(root string) ([]Metric, error) {
	dirs, err := Packages(root)
	if err != nil {
		return nil, err
	}
	var out []Metric
	for _, dir := range dirs {
		ms, err := Dir(root, dir)
		if err != nil {
			return nil, err
		}
		out = append(out, ms...)
	}
	return out, nil
}

// Packages returns every folder of the module at root, relative to it, that
// holds a non-test Go file: not testdata, not hidden folders, not folders of
// other modules (those with their own go.mod, such as the tool pins under
// hack/).
func Packages(root string) ([]string, error) {
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); path != root && err == nil {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			rel, err := filepath.Rel(root, filepath.Dir(path))
			if err != nil {
				return err
			}
			seen[rel] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", root, err)
	}
	var out []string
	for dir := range seen {
		out = append(out, dir)
	}
	slices.Sort(out)
	return out, nil
}

// Dir returns the metrics declared in one package folder (relative to root):
// calls of prometheus.New<Kind>[Vec](prometheus.<Kind>Opts{...}, labels)
// and prometheus.NewDesc("name", help, labels, ...).
func Dir(root, dir string) ([]Metric, error) {
	paths, err := filepath.Glob(filepath.Join(root, dir, "*.go"))
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	var out []Metric
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", p, err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if m, ok := declared(n); ok {
				m.Dir = dir
				out = append(out, m)
			}
			return true
		})
	}
	return out, nil
}

// declared reads one node as a metric declaration.
func declared(n ast.Node) (Metric, bool) {
	call, ok := n.(*ast.CallExpr)
	if !ok || len(call.Args) == 0 {
		return Metric{}, false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || !strings.HasPrefix(sel.Sel.Name, "New") {
		return Metric{}, false
	}
	if sel.Sel.Name == "NewDesc" {
		lit, ok := call.Args[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING || len(call.Args) < 3 {
			return Metric{}, false
		}
		name, _ := strconv.Unquote(lit.Value)
		return Metric{Name: name, Kind: Desc, Labels: stringList(call.Args[2])}, true
	}
	opts, ok := call.Args[0].(*ast.CompositeLit)
	if !ok {
		return Metric{}, false
	}
	typ, ok := opts.Type.(*ast.SelectorExpr)
	if !ok || !strings.HasSuffix(typ.Sel.Name, "Opts") {
		return Metric{}, false
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
	m := Metric{Name: strings.Join(name, "_"), Kind: Kind(strings.ToLower(strings.TrimSuffix(typ.Sel.Name, "Opts")))}
	if len(call.Args) > 1 {
		m.Labels = stringList(call.Args[1])
	}
	return m, true
}

// stringList returns the string literals of a []string{...} expression.
func stringList(e ast.Expr) []string {
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		return nil
	}
	var out []string
	for _, elt := range lit.Elts {
		if l, ok := elt.(*ast.BasicLit); ok && l.Kind == token.STRING {
			v, _ := strconv.Unquote(l.Value)
			out = append(out, v)
		}
	}
	return out
}
