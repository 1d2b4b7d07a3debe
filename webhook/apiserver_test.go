package webhook

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/internal/testpki"
)

// eventually polls cond until it returns true or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s (last error: %v)", timeout, what, lastErr)
}

// run starts a Start(ctx) component and stops it at the end of the test,
// failing if it does not return.
func run(t *testing.T, name string, start func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("%s did not return after its context ended", name)
		}
	})
}

// tlsSecret is a kubernetes.io/tls Secret holding leaf.
func tlsSecret(ns, name string, leaf *testpki.Leaf, bundle []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: leaf.CertPEM, corev1.TLSPrivateKeyKey: leaf.KeyPEM, "ca.crt": bundle},
	}
}

// startWebhook serves the webhook on 127.0.0.1 with a certificate read from
// a Secret, registers it for namespace ns only, and waits until the API
// server calls it.
func startWebhook(t *testing.T, env *testenv.Env, ns string) {
	t.Helper()
	ctx := context.Background()
	pki := testpki.New(t)
	leaf := pki.Leaf(t, testpki.LeafOptions{IPs: []net.IP{net.ParseIP("127.0.0.1")}, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err := env.Client.Create(ctx, tlsSecret(ns, "meshca-webhook-tls", leaf, pki.RootPEM)); err != nil {
		t.Fatal(err)
	}
	certs, err := NewSecretCertificate(SecretCertificateConfig{Client: env.Clientset, Namespace: ns, Name: "meshca-webhook-tls"})
	if err != nil {
		t.Fatal(err)
	}
	run(t, "SecretCertificate", certs.Start)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Listener: ln, Certificates: certs})
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		// Record what the API server really sends as fuzz seeds.
		rec := &http.Server{Handler: recorder{t: t, next: srv}, TLSConfig: srv.TLSConfig(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = rec.ServeTLS(ln, "", "") }()
		t.Cleanup(func() { _ = rec.Close() })
	} else {
		run(t, "Server", srv.Start)
	}

	cfg := webhookConfiguration("meshca-"+ns, "https://"+ln.Addr().String()+Path, pki.RootPEM)
	cfg.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}
	if err := env.Client.Create(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), cfg) })

	// A new configuration takes effect some milliseconds after it is
	// created: dry-run until the API server mutates.
	eventually(t, 60*time.Second, "the webhook to be called", func() (bool, error) {
		probe := deployment("probe", trustAnn, podTemplate("app"))
		probe.Namespace = ns
		if err := env.Client.Create(ctx, probe, client.DryRunAll); err != nil {
			return false, err
		}
		return len(probe.Spec.Template.Spec.Volumes) > 0, nil
	})
}

func webhookConfiguration(name, url string, caBundle []byte) *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "inject.meshca.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caBundle},
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			TimeoutSeconds:          ptr.To[int32](10),
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{
					APIGroups:   []string{"apps"},
					APIVersions: []string{"v1"},
					Resources:   []string{"deployments", "statefulsets", "daemonsets"},
				},
			}},
		}},
	}
}

// templateOf returns the pod template of a Deployment, StatefulSet or
// DaemonSet.
func templateOf(t *testing.T, obj client.Object) *corev1.PodTemplateSpec {
	t.Helper()
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return &o.Spec.Template
	case *appsv1.StatefulSet:
		return &o.Spec.Template
	case *appsv1.DaemonSet:
		return &o.Spec.Template
	}
	t.Fatalf("no pod template in %T", obj)
	return nil
}

func TestAPIServerMutates(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	startWebhook(t, env, ns)
	ctx := context.Background()

	twoContainers := podTemplate("app", "proxy")
	twoContainers.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "registry.example/init:1"}}
	ss := statefulSet("db", map[string]string{AnnotationCertificate: "true", AnnotationSecretName: "db-certs"}, podTemplate("db"))
	ss.Spec.ServiceName = "db"
	cases := map[string]struct {
		obj         func() client.Object
		trust, cert bool
		secret      string
	}{
		"deployment":  {func() client.Object { return deployment("web", bothAnn, *twoContainers.DeepCopy()) }, true, true, "web-meshca-tls"},
		"statefulset": {func() client.Object { return ss.DeepCopy() }, false, true, "db-certs"},
		"daemonset":   {func() client.Object { return daemonSet("agent", trustAnn, podTemplate("agent")) }, true, false, ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			obj := tc.obj()
			obj.SetNamespace(ns)
			if err := env.Client.Create(ctx, obj); err != nil {
				t.Fatalf("create: %v", err)
			}
			checkTemplate(t, templateOf(t, obj), tc.trust, tc.cert, tc.secret)

			stored := tc.obj()
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), stored); err != nil {
				t.Fatal(err)
			}
			before, gen, rv := templateOf(t, stored).DeepCopy(), stored.GetGeneration(), stored.GetResourceVersion()

			// Re-apply: the stored object as read, and the original spec
			// (without the injected parts) at the current resourceVersion.
			if err := env.Client.Update(ctx, stored); err != nil {
				t.Fatalf("update with the stored object: %v", err)
			}
			original := tc.obj()
			original.SetNamespace(ns)
			original.SetResourceVersion(stored.GetResourceVersion())
			if err := env.Client.Update(ctx, original); err != nil {
				t.Fatalf("update with the original spec: %v", err)
			}
			after := tc.obj()
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), after); err != nil {
				t.Fatal(err)
			}
			if !apiequality.Semantic.DeepEqual(before, templateOf(t, after)) {
				t.Errorf("re-applying changed the pod template:\nbefore %+v\nafter  %+v", before.Spec, templateOf(t, after).Spec)
			}
			if after.GetGeneration() != gen || after.GetResourceVersion() != rv {
				t.Errorf("re-applying changed generation %d -> %d, resourceVersion %s -> %s", gen, after.GetGeneration(), rv, after.GetResourceVersion())
			}
		})
	}

	t.Run("unannotated", func(t *testing.T) {
		t.Parallel()
		d := deployment("plain", nil, podTemplate("app"))
		d.Namespace = ns
		if err := env.Client.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		spec := d.Spec.Template.Spec
		if len(spec.Volumes) != 0 || len(spec.Containers[0].VolumeMounts) != 0 || len(spec.Containers[0].Env) != 0 {
			t.Errorf("unannotated Deployment was mutated: %+v", spec)
		}
	})

	t.Run("conflicting volume", func(t *testing.T) {
		t.Parallel()
		tmpl := podTemplate("app")
		tmpl.Spec.Volumes = []corev1.Volume{{Name: TrustVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		d := deployment("clash", trustAnn, tmpl)
		d.Namespace = ns
		err := env.Client.Create(ctx, d)
		if !apierrors.IsForbidden(err) {
			t.Fatalf("create: %v, want Forbidden", err)
		}
		for _, want := range []string{`denied the request`, `volume "meshca-trust" is a volume of type emptyDir, not ConfigMap "meshca-trust-bundle"`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
		}
	})
}

// TestAPIServerSecretName: through the API server, changing
// meshca.io/secret-name on an injected Deployment moves its Secret volume to
// the new name in the same update (nothing to remove by hand, no second
// volume), and a name that is not a Secret name is refused with an error
// naming the annotation, on create and on update.
func TestAPIServerSecretName(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	startWebhook(t, env, ns)
	ctx := context.Background()
	annotations := func(secretName string) map[string]string {
		a := map[string]string{AnnotationInjectTrustBundle: "true", AnnotationCertificate: "true"}
		if secretName != "" {
			a[AnnotationSecretName] = secretName
		}
		return a
	}
	refused := func(t *testing.T, err error, name string) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Fatalf("got %v, want Forbidden", err)
		}
		for _, want := range []string{AnnotationSecretName, fmt.Sprintf("%q", name)} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %s", err, want)
			}
		}
	}

	t.Run("rename", func(t *testing.T) {
		t.Parallel()
		d := deployment("web", annotations(""), podTemplate("app", "proxy"))
		d.Namespace = ns
		if err := env.Client.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		checkTemplate(t, &d.Spec.Template, true, true, "web-meshca-tls")
		for _, step := range []struct{ annotation, secret string }{
			{"web-certs", "web-certs"},
			{"  web-tls\n", "web-tls"}, // trimmed, as the controller reads it
			{"", "web-meshca-tls"},     // back to the default
		} {
			d.Annotations = annotations(step.annotation)
			if err := env.Client.Update(ctx, d); err != nil {
				t.Fatalf("update with %s=%q: %v", AnnotationSecretName, step.annotation, err)
			}
			checkTemplate(t, &d.Spec.Template, true, true, step.secret)
		}
	})
	t.Run("invalid on create", func(t *testing.T) {
		t.Parallel()
		d := deployment("bad", annotations("Bad_Certs"), podTemplate("app"))
		d.Namespace = ns
		refused(t, env.Client.Create(ctx, d), "Bad_Certs")
	})
	t.Run("invalid on update", func(t *testing.T) {
		t.Parallel()
		d := deployment("later", annotations(""), podTemplate("app"))
		d.Namespace = ns
		if err := env.Client.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		d.Annotations = annotations("later/certs")
		refused(t, env.Client.Update(ctx, d), "later/certs")
	})
}

// checkTemplate checks what the API server stored for an admitted workload.
func checkTemplate(t *testing.T, tmpl *corev1.PodTemplateSpec, trust, cert bool, secret string) {
	t.Helper()
	vols := map[string]corev1.Volume{}
	for _, v := range tmpl.Spec.Volumes {
		vols[v.Name] = v
	}
	if v, ok := vols[TrustVolumeName]; ok != trust || (trust && (v.ConfigMap == nil || v.ConfigMap.Name != TrustBundleConfigMap || !ptr.Deref(v.ConfigMap.Optional, false))) {
		t.Errorf("trust volume %+v (present %v), want present %v and optional", v, ok, trust)
	}
	if n := len(tmpl.Spec.Volumes); n != len(vols) {
		t.Errorf("%d volumes, %d names: a volume is there twice", n, len(vols))
	}
	if v, ok := vols[TLSVolumeName]; ok != cert || (cert && (v.Secret == nil || v.Secret.SecretName != secret)) {
		t.Errorf("tls volume %+v (present %v), want present %v with Secret %s", v, ok, cert, secret)
	}
	raw, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		AnnotationInjectTrustBundle: boolString(trust), AnnotationCertificate: boolString(cert), AnnotationSecretName: secret}},
		"spec": map[string]any{"template": tmpl}})
	if err != nil {
		t.Fatal(err)
	}
	checkInjected(t, raw)
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestSecretCertificateReload(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	ctx := context.Background()
	pki := testpki.New(t)
	first := pki.Leaf(t, testpki.LeafOptions{CommonName: "first"})
	secret := tlsSecret(ns, "serving", first, pki.RootPEM)
	if err := env.Client.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	certs, err := NewSecretCertificate(SecretCertificateConfig{Client: env.Clientset, Namespace: ns, Name: "serving"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := certs.GetCertificate(nil); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("before Start: %v, want ErrNoCertificate", err)
	}
	run(t, "SecretCertificate", certs.Start)
	select {
	case <-certs.Loaded():
	case <-time.After(30 * time.Second):
		t.Fatal("certificate not loaded")
	}
	serving := func() string {
		c, err := certs.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.Subject.CommonName
	}
	if got := serving(); got != "first" {
		t.Fatalf("serving %q, want first", got)
	}

	// Renewal: the new certificate is served without a restart.
	second := pki.Leaf(t, testpki.LeafOptions{CommonName: "second"})
	secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey] = second.CertPEM, second.KeyPEM
	if err := env.Client.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the renewed certificate", func() (bool, error) { return serving() == "second", nil })

	// A broken Secret (key of another certificate) and a deleted one keep
	// the last good certificate.
	secret.Data[corev1.TLSPrivateKeyKey] = first.KeyPEM
	if err := env.Client.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctx, secret); err != nil {
		t.Fatal(err)
	}
	third := pki.Leaf(t, testpki.LeafOptions{CommonName: "third"})
	if err := env.Client.Create(ctx, tlsSecret(ns, "serving", third, pki.RootPEM)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the recreated Secret's certificate", func() (bool, error) { return serving() == "third", nil })
}

// recorder writes each AdmissionReview it passes on to the FuzzServeHTTP
// seed corpus, named after the request's kind, operation and object.
type recorder struct {
	t    *testing.T
	next http.Handler
}

func (r recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		r.t.Errorf("recorder: %v", err)
		return
	}
	var review admissionv1.AdmissionReview
	if json.Unmarshal(body, &review) == nil && review.Request != nil && !ptr.Deref(review.Request.DryRun, false) {
		rq := review.Request
		name := strings.ToLower(fmt.Sprintf("apiserver-%s-%s-%s", rq.Kind.Kind, rq.Operation, rq.Name))
		writeCorpusFile(r.t, filepath.Join("testdata", "fuzz", "FuzzServeHTTP", name), body)
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	r.next.ServeHTTP(w, req)
}
