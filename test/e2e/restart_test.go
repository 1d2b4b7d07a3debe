package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/internal/daemontest"
	"github.com/meshca/meshca/internal/testenv"
)

// TestServeRestartOnRotateOffByChart installs the chart with
// rbac.restartOnRotate=false and runs meshca as its ServiceAccount with the
// flag the chart passes. The API server refuses the ServiceAccount a patch
// on workloads, and meshca does not try one: each renewal of a workload that
// asks for restart-on-rotate is one Warning Event RestartDisabled, while
// watch events and audit sweeps (every second here) in between add none.
func TestServeRestartOnRotateOffByChart(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	app := env.Namespace(t)
	r := installChart(t, env, "meshca-norestart", ns,
		"--set", "rbac.restartOnRotate=false",
		"--set", "webhook.configurationName=meshca-norestart")
	if !contains(r.args, "--restart-on-rotate=false") {
		t.Fatalf("the chart's args lack --restart-on-rotate=false: %v", r.args)
	}
	d := daemontest.Start(t, "norestart", daemontest.WithFlags(r.args,
		"--kubeconfig="+impersonatingKubeconfig(t, env, r),
		"--webhook-names=127.0.0.1",
		"--audit-schedule=@every 1s",
		// This install watches all namespaces, where other tests' meshcas
		// left Secrets (see TestServeWithChartRBAC).
		"--allow-new-ca",
	))
	pointWebhookAt(t, env, r, d.WebhookPort)
	d.WaitReady(t, 60*time.Second)

	dep := restartingWorkload(app, "web")
	if err := env.Client.Create(ctx, dep); err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(impersonatingConfig(env, r))
	if err != nil {
		t.Fatal(err)
	}
	// The chart withholds the permission: the API server, not only meshca,
	// keeps the workload unpatched.
	probe := []byte(`{"spec":{"template":{"metadata":{"annotations":{"probe":"1"}}}}}`)
	if _, err := cs.AppsV1().Deployments(app).Patch(ctx, "web", types.MergePatchType, probe, metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}}); !apierrors.IsForbidden(err) {
		t.Errorf("patch Deployment %s/web as %s: %v, want 403 Forbidden", app, r.user(), err)
	}

	serial := waitSecret(t, env, app, "web-meshca-tls").Annotations["meshca.io/serial"]
	var renewed []string
	for i, names := range []string{"a." + app + ".svc", "b." + app + ".svc"} {
		// Something that is not a renewal first: the reconcile it causes
		// (and the sweeps) find the renewed certificate and must stay quiet.
		touch(t, env, dep, "touched", fmt.Sprint(i))
		renewNames(t, env, dep, names)
		serial = waitNewSerial(t, env, app, "web-meshca-tls", serial)
		renewed = append(renewed, serial)
		waitEvents(t, env, app, "web", "RestartDisabled", len(renewed))
	}
	// Three more sweeps, each a reconcile of the workload that finds the
	// renewed certificate, then the Events are counted again.
	sweeps := strings.Count(d.Log(), auditSweep)
	daemontest.Eventually(t, 30*time.Second, "three more audit sweeps", func(context.Context) (bool, error) {
		return strings.Count(d.Log(), auditSweep) >= sweeps+3, nil
	})
	events := waitEvents(t, env, app, "web", "RestartDisabled", len(renewed))
	if len(events) != len(renewed) {
		t.Errorf("%d RestartDisabled Events for %d renewals: %v", len(events), len(renewed), notes(events))
	}
	for i, e := range events {
		if e.Type != "Warning" || !strings.Contains(e.Note, "disabled by the operator") || !strings.Contains(e.Note, renewed[i]) {
			t.Errorf("Event %d: %s %q, want a Warning saying restart-on-rotate is disabled by the operator, for serial %s", i, e.Type, e.Note, renewed[i])
		}
		if e.Series != nil || e.DeprecatedCount > 1 {
			t.Errorf("Event %q recorded repeatedly (series %+v, count %d): a retry loop", e.Note, e.Series, e.DeprecatedCount)
		}
	}
	assertNotStamped(t, env, app, "web")
	noForbidden(t, d)
}

// TestServeNeverRestartsProtectedNamespaces installs the chart with its
// defaults, which grant patch on workloads cluster-wide, kube-system and
// the release namespace included. meshca still never patches a workload
// there: a renewal is a Warning Event RestartRefused naming the rule. The
// certificates are issued and renewed there all the same, and a workload in
// an ordinary namespace is stamped, so the permission is really there.
func TestServeNeverRestartsProtectedNamespaces(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	app := env.Namespace(t)
	r := installChart(t, env, "meshca-guard", ns, "--set", "webhook.configurationName=meshca-guard")
	if !contains(r.args, "--restart-on-rotate=true") {
		t.Fatalf("the chart's args lack --restart-on-rotate=true: %v", r.args)
	}
	d := daemontest.Start(t, "guard", daemontest.WithFlags(r.args,
		"--kubeconfig="+impersonatingKubeconfig(t, env, r),
		"--webhook-names=127.0.0.1",
		"--allow-new-ca",
	))
	pointWebhookAt(t, env, r, d.WebhookPort)
	d.WaitReady(t, 60*time.Second)
	cs, err := kubernetes.NewForConfig(impersonatingConfig(env, r))
	if err != nil {
		t.Fatal(err)
	}

	// kube-system outlives the test: a name of this test's own.
	system := "guard-" + ns
	cases := []struct{ ns, name, rule string }{
		{metav1.NamespaceSystem, system, "never patches workloads in kube-system"},
		{ns, "self", "never patches workloads in its own namespace " + ns + " (--namespace)"},
	}
	var deps []*appsv1.Deployment
	for _, c := range cases {
		dep := restartingWorkload(c.ns, c.name)
		if err := env.Client.Create(ctx, dep); err != nil {
			t.Fatal(err)
		}
		// No garbage collector runs here to take the Secret with it.
		t.Cleanup(func() {
			ctx := context.Background()
			_ = env.Client.Delete(ctx, dep)
			_ = env.Client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: dep.Namespace, Name: dep.Name + "-meshca-tls"}})
		})
		deps = append(deps, dep)
		// The chart grants the patch there; only meshca holds back.
		probe := []byte(`{"spec":{"template":{"metadata":{"annotations":{"probe":"1"}}}}}`)
		if _, err := cs.AppsV1().Deployments(c.ns).Patch(ctx, c.name, types.MergePatchType, probe, metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Errorf("control: dry-run patch of Deployment %s/%s as %s: %v, want it allowed", c.ns, c.name, r.user(), err)
		}
	}
	control := restartingWorkload(app, "control")
	if err := env.Client.Create(ctx, control); err != nil {
		t.Fatal(err)
	}
	deps = append(deps, control)

	serials := map[*appsv1.Deployment]string{}
	for _, dep := range deps {
		serials[dep] = waitSecret(t, env, dep.Namespace, dep.Name+"-meshca-tls").Annotations["meshca.io/serial"]
		renewNames(t, env, dep, "renewed."+dep.Namespace+".svc")
	}
	for _, dep := range deps {
		serials[dep] = waitNewSerial(t, env, dep.Namespace, dep.Name+"-meshca-tls", serials[dep])
	}
	// The control is stamped with its renewed serial (meshca.io/cert-revision
	// is <serial>.<bundle digest>): meshca does patch where it may.
	daemontest.Eventually(t, 30*time.Second, "the control's pod template stamped", func(ctx context.Context) (bool, error) {
		got := &appsv1.Deployment{}
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(control), got)
		return err == nil && strings.HasPrefix(got.Spec.Template.Annotations["meshca.io/cert-revision"], serials[control]+"."), err
	})
	for i, c := range cases {
		assertNotStamped(t, env, c.ns, c.name)
		events := waitEvents(t, env, c.ns, c.name, "RestartRefused", 1)
		if e := events[0]; e.Type != "Warning" || !strings.Contains(e.Note, c.rule) || !strings.Contains(e.Note, serials[deps[i]]) {
			t.Errorf("%s/%s: Event %s %q, want a Warning naming the rule %q and serial %s", c.ns, c.name, e.Type, e.Note, c.rule, serials[deps[i]])
		}
		assertNotStamped(t, env, c.ns, c.name)
	}
	noForbidden(t, d)
}

// auditSweep is the log line of each audit sweep.
const auditSweep = `"msg":"audit sweep"`

// restartingWorkload is a Deployment that asks for a certificate and for
// restart-on-rotate.
func restartingWorkload(ns, name string) *appsv1.Deployment {
	d := workload(ns, name)
	d.Annotations["meshca.io/restart-on-rotate"] = "true"
	return d
}

// renewNames asks for another DNS name, which renews the certificate.
func renewNames(t *testing.T, env *testenv.Env, d *appsv1.Deployment, names string) {
	t.Helper()
	touch(t, env, d, "meshca.io/dns-names", names)
}

// touch sets one annotation of a Deployment.
func touch(t *testing.T, env *testenv.Env, d *appsv1.Deployment, key, value string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, key, value)
	if err := env.Client.Patch(context.Background(), d.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatalf("annotate Deployment %s/%s: %v", d.Namespace, d.Name, err)
	}
}

// waitNewSerial waits for a Secret's serial to differ from before.
func waitNewSerial(t *testing.T, env *testenv.Env, ns, name, before string) string {
	t.Helper()
	var serial string
	daemontest.Eventually(t, 30*time.Second, "a new serial in "+ns+"/"+name, func(ctx context.Context) (bool, error) {
		s := &corev1.Secret{}
		err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, s)
		serial = s.Annotations["meshca.io/serial"]
		return err == nil && serial != "" && serial != before, err
	})
	return serial
}

// waitEvents waits for at least n Events with reason about a Deployment and
// returns them, oldest first.
func waitEvents(t *testing.T, env *testenv.Env, ns, name, reason string, n int) []eventsv1.Event {
	t.Helper()
	var out []eventsv1.Event
	daemontest.Eventually(t, 30*time.Second, fmt.Sprintf("%d %s Events on %s/%s", n, reason, ns, name), func(ctx context.Context) (bool, error) {
		list, err := env.Clientset.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		out = out[:0]
		for _, e := range list.Items {
			if e.Regarding.Kind == "Deployment" && e.Regarding.Name == name && e.Reason == reason {
				out = append(out, e)
			}
		}
		return len(out) >= n, nil
	})
	// Oldest first: by creation, then by name (same-second Events).
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && eventBefore(out[j], out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func eventBefore(a, b eventsv1.Event) bool {
	if !a.EventTime.Equal(&b.EventTime) {
		return a.EventTime.Before(&b.EventTime)
	}
	return a.CreationTimestamp.Before(&b.CreationTimestamp)
}

func notes(events []eventsv1.Event) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.Note)
	}
	return out
}

// assertNotStamped fails when a Deployment's pod template carries
// meshca.io/cert-revision: meshca patched it.
func assertNotStamped(t *testing.T, env *testenv.Env, ns, name string) {
	t.Helper()
	got := &appsv1.Deployment{}
	if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, got); err != nil {
		t.Fatal(err)
	}
	if v, ok := got.Spec.Template.Annotations["meshca.io/cert-revision"]; ok {
		t.Errorf("meshca patched Deployment %s/%s: meshca.io/cert-revision=%s", ns, name, v)
	}
}

// noForbidden fails on any line of meshca's log that mentions a refusal
// by the API server: meshca must not try what its RBAC does not grant.
func noForbidden(t *testing.T, d *daemontest.Daemon) {
	t.Helper()
	for _, line := range strings.Split(d.Log(), "\n") {
		if strings.Contains(strings.ToLower(line), "forbidden") {
			t.Errorf("meshca was refused by the API server: %s", line)
		}
	}
}
