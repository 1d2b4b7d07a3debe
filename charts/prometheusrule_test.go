package charts_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/meshca/meshca/internal/metricdecl"
	"github.com/meshca/meshca/internal/testenv"
)

// The alerts docs/metrics.md describes, as the chart names them.
var shippedAlerts = []string{
	"MeshcaCertificateNearExpiry",
	"MeshcaCertificateRenewalOverdue",
	"MeshcaRenewalsFailing",
	"MeshcaNoLeader",
	"MeshcaCANearExpiry",
	"MeshcaExternalCAExpiring",
	"MeshcaWebhookErrors",
}

type promRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

type prometheusRule struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Groups []struct {
			Name  string     `json:"name"`
			Rules []promRule `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// renderRules renders the chart with args and returns its PrometheusRule's
// rules by alert name, or nil when none is rendered.
func renderRules(t *testing.T, args ...string) map[string]promRule {
	t.Helper()
	var rules map[string]promRule
	for _, o := range splitManifests(t, render(t, goldenNamespace, args...)) {
		if o.Kind != "PrometheusRule" {
			continue
		}
		if rules != nil {
			t.Fatal("more than one PrometheusRule rendered")
		}
		var pr prometheusRule
		if err := yaml.UnmarshalStrict([]byte(o.Raw), &pr); err != nil {
			t.Fatalf("decode PrometheusRule: %v\n%s", err, o.Raw)
		}
		if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Metadata.Namespace != goldenNamespace {
			t.Errorf("PrometheusRule is %s in %q", pr.APIVersion, pr.Metadata.Namespace)
		}
		rules = map[string]promRule{}
		for _, g := range pr.Spec.Groups {
			for _, r := range g.Rules {
				if _, dup := rules[r.Alert]; dup {
					t.Errorf("alert %s rendered twice", r.Alert)
				}
				rules[r.Alert] = r
			}
		}
	}
	return rules
}

// registered returns the metrics meshca's source declares.
func registered(t *testing.T) []metricdecl.Metric {
	t.Helper()
	ms, err := metricdecl.Module(testenv.RepoRoot())
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 10 {
		t.Fatalf("found only %d metrics in meshca's source; has the way they are declared changed?", len(ms))
	}
	return ms
}

// selectors parses expr with Prometheus' own PromQL parser and returns its
// vector selectors.
func selectors(t *testing.T, alert, expr string) []*parser.VectorSelector {
	t.Helper()
	e, err := parser.ParseExpr(expr)
	if err != nil {
		t.Fatalf("%s: expression does not parse: %v\n%s", alert, err, expr)
	}
	var out []*parser.VectorSelector
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	if len(out) == 0 {
		t.Errorf("%s: expression reads no series: %s", alert, expr)
	}
	return out
}

// TestPrometheusRule renders the alerts, parses every expression with
// Prometheus' PromQL parser, and checks that each series it reads is one
// meshca registers (a histogram's _bucket, _sum and _count included), that
// every alert has a valid `for`, a severity and a summary.
func TestPrometheusRule(t *testing.T) {
	t.Parallel()
	if rules := renderRules(t); rules != nil {
		t.Fatal("the default render has a PrometheusRule; prometheusRule.enabled defaults to false")
	}
	metrics := registered(t)
	rules := renderRules(t, "--set", "prometheusRule.enabled=true")
	var names []string
	for name := range rules {
		names = append(names, name)
	}
	slices.Sort(names)
	want := slices.Clone(shippedAlerts)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("alerts = %v, want %v", names, want)
	}
	for name, r := range rules {
		for _, vs := range selectors(t, name, r.Expr) {
			known := slices.ContainsFunc(metrics, func(m metricdecl.Metric) bool { return m.Series(vs.Name) })
			if !known {
				t.Errorf("%s reads %q, which meshca does not register: %s", name, vs.Name, r.Expr)
			}
		}
		if _, err := model.ParseDuration(r.For); err != nil {
			t.Errorf("%s: for %q: %v", name, r.For, err)
		}
		if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("%s lacks a severity, summary or description: %+v", name, r)
		}
		for key, text := range r.Annotations {
			checkAlertTemplate(t, name+" "+key, text)
		}
	}
}

// checkAlertTemplate expands an annotation the way Prometheus does (Go's
// text/template, with $labels and $value defined first) with sample labels,
// and fails on a template error or an unexpanded "{{".
func checkAlertTemplate(t *testing.T, what, text string) {
	t.Helper()
	funcs := template.FuncMap{
		// Prometheus' humanizeDuration takes seconds; the sample's form is enough here.
		"humanizeDuration": func(v float64) string { return fmt.Sprintf("%gs", v) },
	}
	tmpl, err := template.New(what).Funcs(funcs).Option("missingkey=zero").
		Parse("{{$labels := .Labels}}{{$value := .Value}}" + text)
	if err != nil {
		t.Errorf("%s: not a valid alert template: %v\n%s", what, err, text)
		return
	}
	for _, labels := range []map[string]string{
		{"namespace": "demo", "secret": "web-tls", "profile": "workload", "cause": "sign", "cert": "root", "result": "denied"},
		{"namespace": "meshca-system", "exported_namespace": "demo", "secret": "web-tls", "reason": "busy"},
	} {
		var out strings.Builder
		if err := tmpl.Execute(&out, map[string]any{"Labels": labels, "Value": 3600.0}); err != nil {
			t.Errorf("%s: %v", what, err)
			continue
		}
		if strings.Contains(out.String(), "{{") || (strings.Contains(text, "$labels.secret") && !strings.Contains(out.String(), "demo/web-tls")) {
			t.Errorf("%s expands to %q", what, out.String())
		}
	}
}

// TestPrometheusRuleValues: thresholds, windows, severities, the selector
// and the switches reach the rules.
func TestPrometheusRuleValues(t *testing.T) {
	t.Parallel()
	rules := renderRules(t,
		"--set", "prometheusRule.enabled=true",
		"--set", `prometheusRule.selector=job="meshca-a"\,cluster!="dev"`,
		"--set", "prometheusRule.alerts.caNearExpiry.before=1d12h",
		"--set", "prometheusRule.alerts.certificateNearExpiry.before=90m",
		"--set", "prometheusRule.alerts.renewalOverdue.after=1w",
		"--set", "prometheusRule.alerts.renewalsFailing.window=30m",
		"--set", "prometheusRule.alerts.noLeader.severity=page",
		"--set", "prometheusRule.alerts.noLeader.for=2m",
		"--set", "prometheusRule.alerts.webhookErrors.enabled=false",
		"--set", "prometheusRule.alertLabels.team=platform",
		"--set", "prometheusRule.labels.release=kube-prometheus",
	)
	if _, ok := rules["MeshcaWebhookErrors"]; ok {
		t.Error("webhookErrors.enabled=false still renders MeshcaWebhookErrors")
	}
	for alert, want := range map[string]string{
		"MeshcaCANearExpiry":              "- time() < 129600",
		"MeshcaCertificateNearExpiry":     "- time() < 5400",
		"MeshcaCertificateRenewalOverdue": "> 604800",
		"MeshcaRenewalsFailing":           "[30m]",
	} {
		if !strings.Contains(rules[alert].Expr, want) {
			t.Errorf("%s: expression lacks %q: %s", alert, want, rules[alert].Expr)
		}
	}
	if r := rules["MeshcaNoLeader"]; r.Labels["severity"] != "page" || r.For != "2m" {
		t.Errorf("MeshcaNoLeader severity %q for %q, want page and 2m", r.Labels["severity"], r.For)
	}
	for name, r := range rules {
		if r.Labels["team"] != "platform" {
			t.Errorf("%s lacks alertLabels: %v", name, r.Labels)
		}
		// Every series the rule reads carries the selector's matchers.
		for _, vs := range selectors(t, name, r.Expr) {
			for _, want := range []*labels.Matcher{
				labels.MustNewMatcher(labels.MatchEqual, "job", "meshca-a"),
				labels.MustNewMatcher(labels.MatchNotEqual, "cluster", "dev"),
			} {
				if !slices.ContainsFunc(vs.LabelMatchers, func(m *labels.Matcher) bool { return m.String() == want.String() }) {
					t.Errorf("%s: selector %s lacks %s", name, vs, want)
				}
			}
		}
	}
}

// TestPrometheusRuleSchema: values the rules could not use are refused
// before anything renders.
func TestPrometheusRuleSchema(t *testing.T) {
	t.Parallel()
	for _, set := range []string{
		"prometheusRule.alerts.caNearExpiry.before=7 days",
		"prometheusRule.alerts.caNearExpiry.before=1.5h",
		"prometheusRule.alerts.noLeader.for=10ms",
		"prometheusRule.alerts.noLeader.threshold=1",
		`prometheusRule.selector={job="x"}`,
		"prometheusRule.alerts.webhookErrors.severity=",
	} {
		_, stderr, err := runHelm(t, "template", releaseName, chartDir, "--namespace", goldenNamespace,
			"--set", "prometheusRule.enabled=true", "--set", set)
		if err == nil {
			t.Errorf("helm template accepted %q", set)
			continue
		}
		if !strings.Contains(stderr, "prometheusRule") {
			t.Errorf("helm template refused %q without naming prometheusRule:\n%s", set, stderr)
		}
	}
}
