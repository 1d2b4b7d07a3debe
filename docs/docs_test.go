package docs

import (
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

	"github.com/meshca/meshca/internal/metricdecl"
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
	helpLine    = regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9-]+)(?: [a-zA-Z0-9]+)?\s{2,}(.*)$`)
	helpEnv     = regexp.MustCompile(`\(env (MESHCA_[A-Z0-9_]+)\)`)
	helpDefault = regexp.MustCompile(`\(default ("[^"]*"|[^)]*)\)$`)
)

// buildMeshca builds cmd/meshca into a temporary folder.
func buildMeshca(t *testing.T) string {
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
	return bin
}

// help runs `meshca <args> --help`.
func help(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, append(args, "--help")...).Output()
	if err != nil {
		t.Fatalf("meshca %s --help: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// parseHelpFlags returns the flags a --help output lists, without --help.
func parseHelpFlags(out string) []helpFlag {
	var flags []helpFlag
	for _, line := range strings.Split(out, "\n") {
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
	return flags
}

// serveFlags builds the binary and parses `meshca serve --help`.
func serveFlags(t *testing.T) []helpFlag {
	t.Helper()
	out := help(t, buildMeshca(t), "serve")
	flags := parseHelpFlags(out)
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

var helpCommand = regexp.MustCompile(`^  ([a-z][a-z0-9-]*)\s{2,}`)

// subcommands returns the command paths below path as `--help` lists them
// ("ca rotate", "status", ...), leaves only, without cobra's own help and
// completion.
func subcommands(t *testing.T, bin string, path ...string) [][]string {
	t.Helper()
	var out [][]string
	inList := false
	for _, line := range strings.Split(help(t, bin, path...), "\n") {
		switch {
		case line == "Available Commands:":
			inList = true
			continue
		case strings.TrimSpace(line) == "":
			inList = false
			continue
		}
		m := helpCommand.FindStringSubmatch(line)
		if !inList || m == nil || m[1] == "help" || m[1] == "completion" {
			continue
		}
		sub := append(slices.Clone(path), m[1])
		if below := subcommands(t, bin, sub...); len(below) > 0 {
			out = append(out, below...)
		} else {
			out = append(out, sub)
		}
	}
	return out
}

// TestSubcommandFlagsInReference fails when a command of meshca other than
// serve (whose flags have their own table) has no row in the "Other
// commands" table of reference.md, or when its row does not name one of its
// flags as --flag.
func TestSubcommandFlagsInReference(t *testing.T) {
	bin := buildMeshca(t)
	rows := tableRows(readDoc(t, "reference.md"), "`meshca ")
	cmds := subcommands(t, bin)
	if len(cmds) < 7 {
		t.Fatalf("found only %v below meshca --help; has its format changed?", cmds)
	}
	for _, cmd := range cmds {
		name := "meshca " + strings.Join(cmd, " ")
		if name == "meshca serve" {
			continue
		}
		var row []string
		for first, cells := range rows {
			if first == name || strings.HasPrefix(first, name+" ") {
				row = cells
			}
		}
		if row == nil {
			t.Errorf("reference.md: no row in Other commands for %s", name)
			continue
		}
		line := strings.Join(row, "|")
		for _, f := range parseHelpFlags(help(t, bin, cmd...)) {
			if !regexp.MustCompile(`--` + regexp.QuoteMeta(f.name) + `\b[^-]`).MatchString(line + " ") {
				t.Errorf("reference.md: the row of %s does not name its flag --%s", name, f.name)
			}
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

// TestMetricsInMetricsDoc fails when a metric registered anywhere in
// meshca's module has no row in metrics.md, when its row misses a label,
// or when metrics.md has a row for a metric no longer registered.
func TestMetricsInMetricsDoc(t *testing.T) {
	rows := tableRows(readDoc(t, "metrics.md"), "`meshca_")
	declared := map[string]bool{}
	byDir := map[string]int{}
	metrics, err := metricdecl.Module(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range metrics {
		dir := m.Dir
		byDir[dir]++
		if m.Name == "" {
			t.Errorf("%s: a metric whose name is not a string literal; the docs test cannot read it", dir)
			continue
		}
		declared[m.Name] = true
		if !strings.HasPrefix(m.Name, "meshca_") {
			t.Errorf("%s: metric %q does not start with meshca_", dir, m.Name)
		}
		row, ok := rows[m.Name]
		if !ok {
			t.Errorf("metrics.md: no row for %s (declared in %s)", m.Name, dir)
			continue
		}
		line := strings.Join(row, "|")
		for _, l := range m.Labels {
			if !strings.Contains(line, "`"+l+"`") {
				t.Errorf("metrics.md: row of %s does not name its label `%s`", m.Name, l)
			}
		}
	}
	for _, dir := range []string{"controller", "webhook", filepath.Join("cmd", "meshca")} {
		if byDir[dir] == 0 {
			t.Errorf("found no metrics in %s; has the way they are declared changed?", dir)
		}
	}
	for name := range rows {
		if !declared[name] {
			t.Errorf("metrics.md has a row for %s, which no package of meshca registers", name)
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

var (
	mdLink     = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdHeading  = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)
	htmlAnchor = regexp.MustCompile(`<a\s+(?:id|name)="([^"]+)"`)
	// notInAnchor is what GitHub drops from a heading's text to make its
	// anchor: everything but letters, digits, spaces, - and _.
	notInAnchor = regexp.MustCompile(`[^\p{L}\p{N}\s_-]`)
)

// headingAnchor is the anchor GitHub gives a heading: lower case, Markdown
// links reduced to their text, punctuation dropped, spaces as dashes.
func headingAnchor(text string) string {
	text = mdLink.ReplaceAllString(text, "]")
	text = notInAnchor.ReplaceAllString(strings.ToLower(text), "")
	return strings.ReplaceAll(text, " ", "-")
}

// anchors returns the anchors of a Markdown document: one per heading
// outside fenced code (a repeated one gets -1, -2, ... as on GitHub) and
// each explicit <a id> or <a name>.
func anchors(doc string) map[string]bool {
	out := map[string]bool{}
	fenced := false
	for _, line := range strings.Split(doc, "\n") {
		if t := strings.TrimSpace(line); strings.HasPrefix(t, "```") || strings.HasPrefix(t, "~~~") {
			fenced = !fenced
			continue
		}
		for _, m := range htmlAnchor.FindAllStringSubmatch(line, -1) {
			out[m[1]] = true
		}
		m := mdHeading.FindStringSubmatch(line)
		if fenced || m == nil {
			continue
		}
		a := headingAnchor(m[1])
		for i := 1; out[a]; i++ {
			a = headingAnchor(m[1]) + "-" + strconv.Itoa(i)
		}
		out[a] = true
	}
	return out
}

// TestHeadingAnchor pins headingAnchor to anchors GitHub makes.
func TestHeadingAnchor(t *testing.T) {
	for heading, want := range map[string]string{
		"Rotating by hand with this version": "rotating-by-hand-with-this-version",
		"`meshca serve` flags":               "meshca-serve-flags",
		"Istio's CA (istiod)":                "istios-ca-istiod",
		"A, then A+B, then B":                "a-then-ab-then-b",
		"See [the code](../ca/ca.go)":        "see-the-code",
		"Step 1: install_it":                 "step-1-install_it",
	} {
		if got := headingAnchor(heading); got != want {
			t.Errorf("headingAnchor(%q) = %q, want %q", heading, got, want)
		}
	}
}

// TestRelativeLinks fails when a relative link in the docs, the README or
// the chart's README points to a file that does not exist, or to an
// #anchor that no heading of a Markdown target makes.
func TestRelativeLinks(t *testing.T) {
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join(root, "README.md"), filepath.Join(root, "charts", "meshca", "README.md"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllSubmatch(b, -1) {
			target, anchor, _ := strings.Cut(string(m[1]), "#")
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path := f
			if target != "" {
				path = filepath.Join(filepath.Dir(f), target)
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s links to %s, which does not exist", f, m[1])
					continue
				}
			}
			if anchor == "" || !strings.HasSuffix(path, ".md") {
				continue
			}
			doc, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("%s links to %s: %v", f, m[1], err)
				continue
			}
			if !anchors(string(doc))[anchor] {
				t.Errorf("%s links to %s, but %s has no heading with anchor #%s", f, m[1], path, anchor)
			}
		}
	}
}
