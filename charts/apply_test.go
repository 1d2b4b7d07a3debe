package charts_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/internal/testenv"
)

// access is one question to the API server's RBAC authorizer about meshca's
// ServiceAccount. An empty namespace means the release namespace, "*" a
// namespace the chart was not told about, team-N the Nth of rbac.namespaces.
type access struct {
	verb, group, resource, subresource, namespace, name string
	allowed                                             bool
}

// TestApply applies the rendered chart to a real API server, first as a
// server-side dry run and then for real, and asks the API server's RBAC
// authorizer what meshca's ServiceAccount may do.
//
// The cases run one after another: they share cluster-scoped objects (the
// CRD) and each removes its MutatingWebhookConfiguration afterwards, because
// a leftover one with failurePolicy Fail would refuse the next case's
// Deployment (no meshca pod answers here).
func TestApply(t *testing.T) {
	env := testenv.Get(t)
	tests := map[string]struct {
		renderCase
		namespaces int // rbac.namespaces to create and pass
		serviceAcc string
		checks     []access
		// refuses: a Deployment outside the excluded namespaces is refused
		// while no meshca pod answers the webhook (failurePolicy Fail).
		refuses bool
	}{
		"default": {
			serviceAcc: "meshca",
			refuses:    true,
			checks: []access{
				{verb: "get", resource: "secrets", namespace: "*", allowed: true},
				{verb: "delete", resource: "secrets", namespace: "*", allowed: true},
				{verb: "create", resource: "configmaps", namespace: "*", allowed: true},
				{verb: "watch", group: "getambassador.io", resource: "tlscontexts", namespace: "*", allowed: true},
				{verb: "update", group: "getambassador.io", resource: "tlscontexts", namespace: "*"},
				{verb: "patch", group: "apps", resource: "deployments", namespace: "*", allowed: true},
				{verb: "delete", group: "apps", resource: "deployments", namespace: "*"},
				// blockOwnerDeletion on workload Secrets' owner references.
				{verb: "update", group: "apps", resource: "deployments", subresource: "finalizers", namespace: "*", allowed: true},
				{verb: "update", group: "apps", resource: "daemonsets", subresource: "finalizers", namespace: "*", allowed: true},
				{verb: "update", group: "apps", resource: "deployments", subresource: "scale", namespace: "*"},
				{verb: "list", resource: "pods", namespace: "*"},
				{verb: "create", resource: "events", namespace: "*", allowed: true},
				{verb: "list", resource: "namespaces", allowed: true},
				{verb: "patch", group: "admissionregistration.k8s.io", resource: "mutatingwebhookconfigurations", name: "meshca", allowed: true},
				{verb: "patch", group: "admissionregistration.k8s.io", resource: "mutatingwebhookconfigurations", name: "someone-elses"},
				{verb: "delete", group: "admissionregistration.k8s.io", resource: "mutatingwebhookconfigurations", name: "meshca"},
				{verb: "update", group: "coordination.k8s.io", resource: "leases", name: "meshca", allowed: true},
				{verb: "update", group: "coordination.k8s.io", resource: "leases", name: "other"},
				{verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: "*", name: "meshca"},
			},
		},
		"custom": {
			renderCase: renderCases["custom"],
			namespaces: 2,
			serviceAcc: "meshca-daemon",
			checks: []access{
				{verb: "get", resource: "secrets", namespace: "team-0", allowed: true},
				{verb: "create", resource: "configmaps", namespace: "team-1", allowed: true},
				{verb: "get", resource: "secrets", namespace: "*"},
				{verb: "create", resource: "configmaps", namespace: "*"},
				{verb: "get", resource: "secrets", name: "meshca-ca", allowed: true},
				{verb: "update", resource: "secrets", name: "mca-webhook", allowed: true},
				{verb: "get", resource: "secrets", name: "other"},
				{verb: "delete", resource: "secrets", name: "meshca-ca"},
				{verb: "patch", group: "admissionregistration.k8s.io", resource: "mutatingwebhookconfigurations", name: "meshca-custom", allowed: true},
				{verb: "patch", group: "admissionregistration.k8s.io", resource: "mutatingwebhookconfigurations", name: "meshca"},
			},
		},
	}
	for _, name := range []string{"default", "custom"} {
		tc := tests[name]
		t.Run(name, func(t *testing.T) {
			// The release namespace warns about pods that the restricted Pod
			// Security Standard would refuse; the API server evaluates the
			// pod templates of Deployments against it.
			ns := env.Namespace(t, map[string]string{
				"pod-security.kubernetes.io/enforce": "restricted",
				"pod-security.kubernetes.io/warn":    "restricted",
			})
			other := env.Namespace(t)
			args := tc.args()
			// Names in the checks: "" is the release namespace, "*" one the
			// chart was not told about, team-N the Nth of rbac.namespaces.
			names := map[string]string{"": ns, "*": other}
			var teams []string
			for i := range tc.namespaces {
				team := env.Namespace(t)
				names[fmt.Sprintf("team-%d", i)] = team
				teams = append(teams, team)
			}
			if len(teams) > 0 {
				args = append(args, "--set", "rbac.namespaces={"+strings.Join(teams, ",")+"}")
			}
			var docs []string
			kinds := map[string]bool{}
			for _, o := range splitManifests(t, render(t, ns, args...)) {
				// The test API server has no Prometheus Operator, so no
				// ServiceMonitor or PrometheusRule kind: they are
				// golden-tested, and the rules parsed (TestPrometheusRule).
				if o.Kind == "ServiceMonitor" || o.Kind == "PrometheusRule" {
					continue
				}
				kinds[o.Kind] = true
				docs = append(docs, o.Raw)
			}
			for _, k := range []string{"Deployment", "Service", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"} {
				if !kinds[k] {
					t.Errorf("rendered chart has no %s", k)
				}
			}
			file := filepath.Join(t.TempDir(), "chart.yaml")
			if err := os.WriteFile(file, []byte(strings.Join(docs, "\n---\n")), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				// Everything but the CRD, which other tests of this package
				// rely on and which cannot be recreated while it terminates.
				var keep []string
				for _, d := range docs {
					if !strings.Contains(d, "kind: CustomResourceDefinition") {
						keep = append(keep, d)
					}
				}
				del := filepath.Join(t.TempDir(), "delete.yaml")
				if err := os.WriteFile(del, []byte(strings.Join(keep, "\n---\n")), 0o600); err != nil {
					t.Error(err)
					return
				}
				if out, err := env.Kubectl(t, "delete", "--ignore-not-found", "--wait=false", "-f", del); err != nil {
					t.Errorf("kubectl delete: %v\n%s", err, out)
				}
			})

			for _, dryRun := range []string{"server", "none"} {
				out, err := env.Kubectl(t, "apply", "--server-side", "--field-manager=meshca-chart-test", "--dry-run="+dryRun, "-f", file)
				if err != nil {
					t.Fatalf("kubectl apply --server-side --dry-run=%s: %v\n%s", dryRun, err, out)
				}
				if strings.Contains(out, "violate PodSecurity") {
					t.Errorf("meshca's pods would break the restricted Pod Security Standard:\n%s", out)
				}
			}
			// The warning above is live: a pod template without a security
			// context in the same namespace draws it.
			unrestricted := filepath.Join(t.TempDir(), "unrestricted.yaml")
			if err := os.WriteFile(unrestricted, []byte(probeDeployment(ns)), 0o600); err != nil {
				t.Fatal(err)
			}
			if out, _ := env.Kubectl(t, "apply", "--server-side", "--dry-run=server", "-f", unrestricted); !strings.Contains(out, "violate PodSecurity") {
				t.Errorf("no Pod Security warning for a pod template without a security context; the check above proves nothing:\n%s", out)
			}

			for _, c := range tc.checks {
				checkAccess(t, env, ns, names[c.namespace], tc.serviceAcc, c)
			}

			// The webhook configuration is live: meshca's own namespace is
			// never sent to it, so the chart applies again (an UPDATE of its
			// Deployment) with no meshca pod answering; another namespace is.
			if out, err := env.Kubectl(t, "apply", "--server-side", "--field-manager=meshca-chart-test", "-f", file); err != nil {
				t.Fatalf("apply the chart again with its webhook configuration in place: %v\n%s", err, out)
			}
			probe := filepath.Join(t.TempDir(), "probe.yaml")
			if err := os.WriteFile(probe, []byte(probeDeployment(other)), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := env.Kubectl(t, "apply", "--server-side", "--field-manager=meshca-chart-test", "--dry-run=server", "-f", probe)
			switch {
			case tc.refuses && err == nil:
				t.Errorf("a Deployment in %s was admitted although the webhook (failurePolicy Fail) cannot be reached:\n%s", other, out)
			case tc.refuses && !strings.Contains(out, "workloads.meshca.io"):
				t.Errorf("a Deployment in %s was refused, but not by meshca's webhook:\n%s", other, out)
			case !tc.refuses && err != nil:
				t.Errorf("a Deployment in %s was refused although failurePolicy is Ignore: %v\n%s", other, err, out)
			}
		})
	}
}

// checkAccess asks the API server whether the ServiceAccount sa of releaseNS
// may do c in namespace ns (ignored for cluster-scoped resources).
func checkAccess(t *testing.T, env *testenv.Env, releaseNS, ns, sa string, c access) {
	t.Helper()
	if c.resource == "namespaces" || c.resource == "mutatingwebhookconfigurations" {
		ns = ""
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   fmt.Sprintf("system:serviceaccount:%s:%s", releaseNS, sa),
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + releaseNS, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: c.verb, Group: c.group, Resource: c.resource, Subresource: c.subresource, Name: c.name,
		},
	}}
	res, err := env.Clientset.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), sar, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SubjectAccessReview: %v", err)
	}
	if res.Status.Allowed != c.allowed {
		t.Errorf("%s may %s %s/%s %q in namespace %q: allowed=%v, want %v (%s)",
			sa, c.verb, c.group, c.resource, c.name, ns, res.Status.Allowed, c.allowed, res.Status.Reason)
	}
}

// probeDeployment is a Deployment in ns that meshca's webhook configuration
// matches.
func probeDeployment(ns string) string {
	return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: probe
  namespace: ` + ns + `
spec:
  selector:
    matchLabels: {app: probe}
  template:
    metadata:
      labels: {app: probe}
    spec:
      containers:
        - name: probe
          image: example.com/probe:1
`
}
