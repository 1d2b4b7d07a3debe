package e2e

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/internal/daemontest"
	"github.com/meshca/meshca/internal/testenv"
)

// TestServeWithChartRBAC runs meshca out of cluster as the chart's
// ServiceAccount, with exactly the RBAC the chart's default values grant,
// and follows one daemon through its whole life: CA, gateway and workload
// certificates, trust bundles, the webhook (caBundle and a real admission
// through the API server), metrics, health and a graceful shutdown. Any
// forbidden error in its log fails the test: the chart must grant what
// meshca does.
func TestServeWithChartRBAC(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	app := env.Namespace(t)
	removeTLSContextsAtEnd(t, env, app)
	r := installChart(t, env, "meshca", ns)
	d := daemontest.Start(t, "rbac", daemontest.WithFlags(r.args,
		"--kubeconfig="+impersonatingKubeconfig(t, env, r),
		"--webhook-names=127.0.0.1",
		// The tests of this package share one API server, and this install
		// watches all namespaces: the Secrets other tests' meshcas wrote
		// would otherwise (rightly) stop a new CA from being created.
		"--allow-new-ca",
	))
	pointWebhookAt(t, env, r, d.WebhookPort)
	started := time.Now()
	d.WaitReady(t, 60*time.Second)
	t.Logf("meshca ready in %v", time.Since(started).Round(time.Millisecond))

	t.Run("CA Secret", func(t *testing.T) {
		waitSecret(t, env, ns, "meshca-ca")
	})

	var bundle []byte
	t.Run("TLSContext", func(t *testing.T) {
		if err := env.Client.Create(ctx, tlsContext(app, "gw", "gw-tls", "gw-ca", "gw."+app+".svc")); err != nil {
			t.Fatal(err)
		}
		gw := waitSecret(t, env, app, "gw-tls")
		if gw.Type != corev1.SecretTypeTLS || len(gw.Data["tls.key"]) == 0 || len(gw.Data["ca.crt"]) == 0 {
			t.Errorf("gateway Secret: type %s, keys %v", gw.Type, keys(gw.Data))
		}
		caSecret := waitSecret(t, env, app, "gw-ca")
		bundle = caSecret.Data["ca.crt"]
		if len(bundle) == 0 || !bytes.Equal(caSecret.Data["tls.crt"], bundle) || !bytes.Equal(gw.Data["ca.crt"], bundle) {
			t.Errorf("CA Secret and gateway Secret disagree on the trust bundle")
		}
	})

	t.Run("trust bundle ConfigMap", func(t *testing.T) {
		daemontest.Eventually(t, 30*time.Second, "trust bundle ConfigMap in "+app, func(ctx context.Context) (bool, error) {
			cm := &corev1.ConfigMap{}
			err := env.Client.Get(ctx, types.NamespacedName{Namespace: app, Name: "meshca-trust-bundle"}, cm)
			return err == nil && cm.Data["ca.crt"] == string(bundle), client.IgnoreNotFound(err)
		})
	})

	t.Run("webhook caBundle", func(t *testing.T) {
		daemontest.Eventually(t, 30*time.Second, "caBundle in "+r.webhookConfig, func(ctx context.Context) (bool, error) {
			cfg, err := env.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, r.webhookConfig, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, w := range cfg.Webhooks {
				if !bytes.Equal(w.ClientConfig.CABundle, bundle) {
					return false, nil
				}
			}
			return true, nil
		})
	})

	t.Run("webhook mutates a Deployment", func(t *testing.T) {
		dep, err := env.Clientset.AppsV1().Deployments(app).Create(ctx, workload(app, "web"), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create Deployment through the API server: %v", err)
		}
		var mounts []string
		for _, m := range dep.Spec.Template.Spec.Containers[0].VolumeMounts {
			mounts = append(mounts, m.MountPath)
		}
		got := strings.Join(mounts, " ")
		for _, want := range []string{"/var/run/meshca/trust", "/var/run/meshca/tls"} {
			if !strings.Contains(got, want) {
				t.Errorf("admitted Deployment mounts %q, want %s among them", got, want)
			}
		}
	})

	t.Run("workload Secret", func(t *testing.T) {
		s := waitSecret(t, env, app, "web-meshca-tls")
		if len(s.Data["tls.crt"]) == 0 || len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Name != "web" {
			t.Errorf("workload Secret: keys %v, owners %v", keys(s.Data), s.OwnerReferences)
		}
	})

	t.Run("renewal on changed names", func(t *testing.T) {
		before := waitSecret(t, env, app, "gw-tls").Annotations["meshca.io/serial"]
		patch := []byte(`{"spec":{"hosts":["gw.` + app + `.svc","gateway.` + app + `.svc"]}}`)
		if err := env.Client.Patch(ctx, tlsContext(app, "gw", "", ""), client.RawPatch(types.MergePatchType, patch)); err != nil {
			t.Fatal(err)
		}
		daemontest.Eventually(t, 30*time.Second, "a new serial in gw-tls", func(ctx context.Context) (bool, error) {
			s := &corev1.Secret{}
			err := env.Client.Get(ctx, types.NamespacedName{Namespace: app, Name: "gw-tls"}, s)
			return err == nil && s.Annotations["meshca.io/serial"] != before, err
		})
	})

	t.Run("metrics", func(t *testing.T) {
		m := d.Metrics(t)
		for _, c := range []struct {
			name   string
			labels []string
		}{
			{"meshca_certificates_issued_total", []string{"profile=gateway", "reason=Missing"}},
			{"meshca_certificates_issued_total", []string{"profile=gateway", "reason=NamesChanged"}},
			{"meshca_certificates_issued_total", []string{"profile=workload", "reason=Missing"}},
			{"meshca_certificate_failures_total", []string{"profile=gateway", "cause=sign"}},
			{"meshca_certificate_failures_total", []string{"profile=workload", "cause=write"}},
			{"meshca_certificate_not_after_timestamp_seconds", []string{"namespace=" + app, "secret=gw-tls"}},
			{"meshca_certificate_not_after_timestamp_seconds", []string{"namespace=" + app, "secret=web-meshca-tls"}},
			{"meshca_ca_not_after_timestamp_seconds", []string{"slot=current", "cert=root"}},
			{"meshca_ca_not_after_timestamp_seconds", []string{"slot=current", "cert=intermediate"}},
			{"meshca_secret_conflicts_total", []string{"kind=foreign"}},
			{"meshca_secret_conflicts_total", []string{"kind=owner"}},
			{"meshca_webhook_requests_total", []string{"kind=Deployment", "result=patched"}},
			{"meshca_webhook_request_duration_seconds_count", []string{"kind=Deployment"}},
			{"meshca_webhook_request_duration_seconds_bucket", []string{"kind=Deployment", "le=+Inf"}},
			{"meshca_leader", nil},
		} {
			if _, ok := m.Value(c.name, c.labels...); !ok {
				t.Errorf("/metrics has no single %s%v", c.name, c.labels)
			}
		}
		if v, _ := m.Value("meshca_leader"); v != 1 {
			t.Errorf("meshca_leader = %v on the only replica, want 1", v)
		}
		if v, _ := m.Value("meshca_certificates_issued_total", "profile=gateway", "reason=NamesChanged"); v != 1 {
			t.Errorf("renewals for changed names = %v, want 1", v)
		}
		if v, _ := m.Value("meshca_ca_not_after_timestamp_seconds", "slot=current", "cert=intermediate"); v < float64(time.Now().Unix()) {
			t.Errorf("CA intermediate expiry %v is in the past", v)
		}
	})

	t.Run("health", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz"} {
			code, body, err := daemontest.Get(ctx, d.HealthAddr, path)
			if err != nil || code != http.StatusOK {
				t.Errorf("GET %s: %d %v %s", path, code, err, body)
			}
		}
	})

	t.Run("no forbidden errors", func(t *testing.T) {
		logs := d.Log()
		// The log is the one we think: the grep below would pass on an empty one.
		if !strings.Contains(logs, "Successfully acquired lease") || !strings.Contains(logs, "caBundle updated") {
			t.Fatalf("meshca's log lacks the lease and caBundle lines:\n%s", daemontest.Tail(logs, 4000))
		}
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(strings.ToLower(line), "forbidden") {
				t.Errorf("meshca was refused with the chart's RBAC: %s", line)
			}
		}
	})

	t.Run("graceful shutdown", func(t *testing.T) {
		took, err := d.Stop(t, syscall.SIGTERM, 10*time.Second)
		if err != nil {
			t.Fatalf("meshca after SIGTERM: %v", err)
		}
		t.Logf("meshca exited 0 %v after SIGTERM", took.Round(time.Millisecond))
		lease, err := env.Clientset.CoordinationV1().Leases(ns).Get(ctx, "meshca", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if h := lease.Spec.HolderIdentity; h != nil && *h != "" {
			t.Errorf("Lease still held by %q after a graceful shutdown", *h)
		}
	})
}

// TestServeWithChartRBACNamespaces renders the chart with rbac.namespaces
// and shows that the API server, not only meshca's good manners, keeps
// meshca out of the other namespaces: a TLSContext in the granted namespace
// asks for a Secret in one that accepts it by label, and nothing is written
// there.
func TestServeWithChartRBACNamespaces(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	granted := env.Namespace(t)
	other := env.Namespace(t, map[string]string{"meshca.io/accept-secrets-from": granted})
	removeTLSContextsAtEnd(t, env, granted)
	r := installChart(t, env, "meshca-scoped", ns,
		"--set", "rbac.namespaces={"+granted+"}",
		"--set", "webhook.configurationName=meshca-scoped")
	if !contains(r.args, "--watch-namespaces="+granted) {
		t.Fatalf("the chart's args lack --watch-namespaces=%s: %v", granted, r.args)
	}
	d := daemontest.Start(t, "scoped", daemontest.WithFlags(r.args,
		"--kubeconfig="+impersonatingKubeconfig(t, env, r),
		"--webhook-names=127.0.0.1",
	))
	pointWebhookAt(t, env, r, d.WebhookPort)
	d.WaitReady(t, 60*time.Second)

	// The API server refuses the ServiceAccount a Secret in the other
	// namespace, whatever meshca would do.
	cs, err := kubernetes.NewForConfig(impersonatingConfig(env, r))
	if err != nil {
		t.Fatal(err)
	}
	probe := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: other}}
	if _, err := cs.CoreV1().Secrets(other).Create(ctx, probe, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("create Secret in %s as %s: %v, want 403 Forbidden", other, r.user(), err)
	}
	control := probe.DeepCopy()
	control.Namespace = granted
	if _, err := cs.CoreV1().Secrets(granted).Create(ctx, control, metav1.CreateOptions{}); err != nil {
		t.Errorf("control: create Secret in %s as %s: %v, want it allowed", granted, r.user(), err)
	}

	if err := env.Client.Create(ctx, tlsContext(granted, "cross", "cross-tls."+other, "")); err != nil {
		t.Fatal(err)
	}
	// A TLSContext created after the cross-namespace one is issued, so meshca
	// has reached the first one too.
	if err := env.Client.Create(ctx, tlsContext(granted, "local", "local-tls", "")); err != nil {
		t.Fatal(err)
	}
	waitSecret(t, env, granted, "local-tls")
	// The Secret in the namespace meshca may not touch is refused with a
	// Warning Event on the TLSContext, not retried against the API server.
	daemontest.Eventually(t, 30*time.Second, "a CrossNamespaceRefused Event for the cross-namespace Secret", func(ctx context.Context) (bool, error) {
		list, err := env.Clientset.EventsV1().Events(granted).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, e := range list.Items {
			if e.Regarding.Name == "cross" && e.Reason == "CrossNamespaceRefused" && strings.Contains(e.Note, other) {
				return true, nil
			}
		}
		return false, nil
	})
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: other, Name: "cross-tls"}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("Secret %s/cross-tls: %v, want NotFound", other, err)
	}
	// Within its namespaces meshca keeps to what it may do: no refusals, and
	// no trust bundle attempts in namespaces it cannot see.
	for _, line := range strings.Split(d.Log(), "\n") {
		if strings.Contains(strings.ToLower(line), "forbidden") || strings.Contains(line, `"controller":"trustbundle"`) && strings.Contains(line, "error") {
			t.Errorf("meshca strays outside rbac.namespaces: %s", line)
		}
	}
	var list corev1.SecretList
	if err := env.Client.List(ctx, &list, client.InNamespace(other)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("meshca wrote %d Secrets in %s, outside rbac.namespaces", len(list.Items), other)
	}
}

// waitSecret waits for a Secret with data and returns it.
func waitSecret(t *testing.T, env *testenv.Env, ns, name string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	daemontest.Eventually(t, 30*time.Second, "Secret "+ns+"/"+name, func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, s)
		return err == nil && len(s.Data) > 0, client.IgnoreNotFound(err)
	})
	return s
}

// workload is a Deployment that asks for a certificate and the trust bundle.
func workload(ns, name string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{
			"meshca.io/certificate":         "true",
			"meshca.io/inject-trust-bundle": "true",
		}},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: "example.com/" + name + ":1"}}},
			},
		},
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
