package charts_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// daemonFlags are the flags of `meshca serve` in DESIGN.md's table; each is
// a chart value, so the custom render (which sets every one) passes each.
var daemonFlags = []string{
	"--kubeconfig", "--namespace", "--trust-domain", "--cluster-domain",
	"--leaf-duration", "--key-algorithm", "--audit-schedule",
	"--max-issuance-rate", "--kube-api-qps", "--kube-api-burst",
	"--tlscontext-selector", "--gateway-service-account",
	"--allowed-dns-suffixes", "--allow-wildcards", "--allow-ip-sans",
	"--allow-cross-namespace-secrets", "--bundle-namespace-selector",
	"--secret-cleanup", "--restart-on-rotate", "--webhook-port", "--webhook-configuration",
	"--webhook-names", "--metrics-address", "--health-address",
	"--leader-elect",
}

// decode finds the one rendered object of kind and decodes it into into.
func decode(t *testing.T, objs []object, kind string, into any) {
	t.Helper()
	found := false
	for _, o := range objs {
		if o.Kind != kind {
			continue
		}
		if found {
			t.Fatalf("more than one %s rendered", kind)
		}
		found = true
		if err := yaml.UnmarshalStrict([]byte(o.Raw), into); err != nil {
			t.Fatalf("decode %s: %v", kind, err)
		}
	}
	if !found {
		t.Fatalf("no %s rendered", kind)
	}
}

// TestRenderedDefaults checks the promises of the default install that a
// careless -update of the golden files could otherwise quietly break.
func TestRenderedDefaults(t *testing.T) {
	t.Parallel()
	objs := splitManifests(t, render(t, goldenNamespace))

	var d appsv1.Deployment
	decode(t, objs, "Deployment", &d)
	pod := d.Spec.Template.Spec
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %v, want 2", d.Spec.Replicas)
	}
	if pod.AutomountServiceAccountToken == nil || !*pod.AutomountServiceAccountToken {
		t.Error("the pod must mount its service account token: meshca talks to the API server")
	}
	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context = %+v, want non-root with seccomp RuntimeDefault", psc)
	}
	if pod.Affinity == nil || pod.Affinity.PodAntiAffinity == nil {
		t.Error("no pod anti-affinity by default")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container security context = %+v, want read-only root, no escalation, all capabilities dropped", sc)
	}
	for name, p := range map[string]*corev1.Probe{"/readyz": c.ReadinessProbe, "/healthz": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != name || p.HTTPGet.Port.String() != "health" {
			t.Errorf("probe for %s = %+v, want HTTP GET on the health port", name, p)
		}
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["webhook"] != 9443 || ports["metrics"] != 8080 || ports["health"] != 8081 {
		t.Errorf("container ports = %v, want webhook 9443, metrics 8080, health 8081", ports)
	}

	var svc corev1.Service
	decode(t, objs, "Service", &svc)
	if p := svc.Spec.Ports[0]; p.Port != 443 || p.TargetPort.String() != "webhook" {
		t.Errorf("webhook service port = %+v, want 443 -> webhook", p)
	}

	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	decode(t, objs, "MutatingWebhookConfiguration", &mwc)
	if mwc.Name != "meshca" || len(mwc.Webhooks) != 1 {
		t.Fatalf("webhook configuration %q with %d webhooks, want meshca with 1", mwc.Name, len(mwc.Webhooks))
	}
	w := mwc.Webhooks[0]
	if len(w.ClientConfig.CABundle) != 0 {
		t.Error("caBundle must be left to meshca")
	}
	if w.ClientConfig.Service == nil || w.ClientConfig.Service.Path == nil || *w.ClientConfig.Service.Path != "/mutate" {
		t.Errorf("webhook client config = %+v, want the Service's /mutate", w.ClientConfig)
	}
	if *w.FailurePolicy != admissionregistrationv1.Fail || *w.SideEffects != admissionregistrationv1.SideEffectClassNone || *w.TimeoutSeconds != 10 {
		t.Errorf("failurePolicy %s, sideEffects %s, timeout %d; want Fail, None, 10", *w.FailurePolicy, *w.SideEffects, *w.TimeoutSeconds)
	}
	excluded := w.NamespaceSelector.MatchExpressions[0]
	if excluded.Key != "kubernetes.io/metadata.name" || !slices.Contains(excluded.Values, "kube-system") || !slices.Contains(excluded.Values, goldenNamespace) {
		t.Errorf("namespace selector %+v must exclude kube-system and %s", excluded, goldenNamespace)
	}
}

// TestEveryDaemonFlagIsAValue renders the custom values, which set every
// daemon setting, and expects each flag of DESIGN.md's table in the args.
func TestEveryDaemonFlagIsAValue(t *testing.T) {
	t.Parallel()
	var d appsv1.Deployment
	decode(t, splitManifests(t, render(t, goldenNamespace, renderCases["custom"].args()...)), "Deployment", &d)
	args := d.Spec.Template.Spec.Containers[0].Args
	if len(args) == 0 || args[0] != "serve" {
		t.Fatalf("args = %q, want meshca serve ...", args)
	}
	for _, flag := range daemonFlags {
		if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, flag+"=") }) {
			t.Errorf("no %s=... in args %q", flag, args)
		}
	}
}

// TestRenderedNetworkPolicy: off by default; on, it selects the meshca pods
// and admits the webhook port only from webhookFrom, the metrics port from
// metricsFrom, and the health port from anywhere, by port names the
// container has.
func TestRenderedNetworkPolicy(t *testing.T) {
	t.Parallel()
	for _, o := range splitManifests(t, render(t, goldenNamespace)) {
		if o.Kind == "NetworkPolicy" {
			t.Error("the default install renders a NetworkPolicy")
		}
	}
	objs := splitManifests(t, render(t, goldenNamespace, renderCases["custom"].args()...))
	var np networkingv1.NetworkPolicy
	decode(t, objs, "NetworkPolicy", &np)
	var d appsv1.Deployment
	decode(t, objs, "Deployment", &d)
	if !reflect.DeepEqual(np.Spec.PodSelector.MatchLabels, d.Spec.Selector.MatchLabels) {
		t.Errorf("pod selector %v, want the Deployment's %v", np.Spec.PodSelector.MatchLabels, d.Spec.Selector.MatchLabels)
	}
	if !reflect.DeepEqual(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Errorf("policy types %v, want Ingress only", np.Spec.PolicyTypes)
	}
	containerPorts := map[string]bool{}
	for _, p := range d.Spec.Template.Spec.Containers[0].Ports {
		containerPorts[p.Name] = true
	}
	from := map[string][]networkingv1.NetworkPolicyPeer{}
	for _, rule := range np.Spec.Ingress {
		if len(rule.Ports) != 1 || rule.Ports[0].Port == nil {
			t.Fatalf("ingress rule %+v: want one named port", rule)
		}
		name := rule.Ports[0].Port.String()
		if !containerPorts[name] {
			t.Errorf("ingress rule for port %q, which the container does not name", name)
		}
		from[name] = rule.From
	}
	want := map[string][]networkingv1.NetworkPolicyPeer{
		"webhook": {{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/24"}}, {IPBlock: &networkingv1.IPBlock{CIDR: "fd00:10::/64"}}},
		"metrics": {{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}},
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "prometheus"}},
		}},
		"health": nil,
	}
	if !reflect.DeepEqual(from, want) {
		t.Errorf("ingress sources by port:\n got %+v\nwant %+v", from, want)
	}
}
