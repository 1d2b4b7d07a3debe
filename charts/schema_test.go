package charts_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSchemaRejects renders the chart with one bad value at a time and
// expects helm to refuse it with an error that names the offending key.
func TestSchemaRejects(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		values  string
		wantKey string
	}{
		"unknown top-level key":                    {values: "replicas: 2", wantKey: "replicas"},
		"unknown nested key":                       {values: "webhook: {failure: Fail}", wantKey: "failure"},
		"replicaCount zero":                        {values: "replicaCount: 0", wantKey: "replicaCount"},
		"replicaCount as string":                   {values: `replicaCount: "2"`, wantKey: "replicaCount"},
		"secretCleanup enum":                       {values: "secretCleanup: archive", wantKey: "secretCleanup"},
		"keyAlgorithm enum":                        {values: "keyAlgorithm: rsa-1024", wantKey: "keyAlgorithm"},
		"failurePolicy enum":                       {values: "webhook: {failurePolicy: fail}", wantKey: "failurePolicy"},
		"timeoutSeconds too large":                 {values: "webhook: {timeoutSeconds: 31}", wantKey: "timeoutSeconds"},
		"timeoutSeconds zero":                      {values: "webhook: {timeoutSeconds: 0}", wantKey: "timeoutSeconds"},
		"leafDuration not Go":                      {values: "leafDuration: 1 day", wantKey: "leafDuration"},
		"leafDuration as number":                   {values: "leafDuration: 24", wantKey: "leafDuration"},
		"serviceMonitor interval":                  {values: "metrics: {serviceMonitor: {interval: often}}", wantKey: "interval"},
		"bool as string":                           {values: `policy: {allowWildcards: "yes"}`, wantKey: "allowWildcards"},
		"namespaces as string":                     {values: "rbac: {namespaces: team-a}", wantKey: "namespaces"},
		"namespace not a DNS label":                {values: "rbac: {namespaces: [Team_A]}", wantKey: "namespaces"},
		"port out of range":                        {values: "health: {port: 70000}", wantKey: "port"},
		"pullPolicy enum":                          {values: "image: {pullPolicy: Sometimes}", wantKey: "pullPolicy"},
		"replicas without election":                {values: "leaderElect: false", wantKey: "replicaCount"},
		"networkPolicy without API server sources": {values: "networkPolicy: {enabled: true}", wantKey: "webhookFrom"},
		"networkPolicy empty API server sources":   {values: "networkPolicy: {enabled: true, webhookFrom: []}", wantKey: "webhookFrom"},
		"networkPolicy CIDR without prefix":        {values: "networkPolicy: {enabled: true, webhookFrom: [{ipBlock: {cidr: 10.0.0.1}}]}", wantKey: "cidr"},
		"networkPolicy empty peer":                 {values: "networkPolicy: {enabled: true, webhookFrom: [{}]}", wantKey: "webhookFrom"},
		"networkPolicy unknown peer key":           {values: "networkPolicy: {enabled: true, webhookFrom: [{serviceAccount: api}]}", wantKey: "serviceAccount"},
		"networkPolicy peers as string":            {values: "networkPolicy: {metricsFrom: monitoring}", wantKey: "metricsFrom"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(t.TempDir(), "bad.values.yaml")
			if err := os.WriteFile(file, []byte(tc.values+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			out, stderr, err := runHelm(t, "template", releaseName, chartDir, "--namespace", goldenNamespace, "--values", file)
			if err == nil {
				t.Fatalf("helm template accepted %q; rendered %d bytes", tc.values, len(out))
			}
			if !strings.Contains(stderr, "schema") || !strings.Contains(stderr, tc.wantKey) {
				t.Fatalf("helm template with %q failed without a schema error naming %q:\n%s", tc.values, tc.wantKey, stderr)
			}
		})
	}
}

// TestSchemaAcceptsDocumentedValues guards the other direction: values that
// the comments in values.yaml allow must pass.
func TestSchemaAcceptsDocumentedValues(t *testing.T) {
	t.Parallel()
	for _, v := range []string{
		"keyAlgorithm: ed25519",
		"secretCleanup: delete",
		"leafDuration: 1h30m",
		"webhook: {failurePolicy: Ignore, timeoutSeconds: 30}",
		"podDisruptionBudget: {maxUnavailable: 25%}",
		"replicaCount: 1\nleaderElect: false",
		"global: {imageRegistry: example.com}",
		"networkPolicy: {enabled: true, webhookFrom: [{ipBlock: {cidr: 172.16.0.0/28, except: [172.16.0.1/32]}}, {ipBlock: {cidr: 'fd00::/64'}}]}",
		"networkPolicy: {enabled: true, webhookFrom: [{ipBlock: {cidr: 10.0.0.0/24}}], metricsFrom: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]}",
	} {
		file := filepath.Join(t.TempDir(), "ok.values.yaml")
		if err := os.WriteFile(file, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, stderr, err := runHelm(t, "template", releaseName, chartDir, "--namespace", goldenNamespace, "--values", file); err != nil {
			t.Errorf("helm template refused %q: %v\n%s", v, err, stderr)
		}
	}
}
