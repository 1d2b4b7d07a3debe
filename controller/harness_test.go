package controller

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/meshca/meshca/authority"
	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/issuer"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// harness runs a TLSContext reconciler against the real API server, with a
// fresh in-memory CA, watching only the given namespaces so parallel tests
// do not see each other's objects.
type harness struct {
	env     *testenv.Env
	rec     *TLSContextReconciler // nil with skipTLSContext
	work    *WorkloadReconciler   // set with workloads
	bundle  *BundleReconciler     // set with bundle
	trust   *authority.Trust
	state   *ca.State
	issuer  *issuer.Local
	metrics *Metrics
	reg     *prometheus.Registry

	mu   sync.Mutex
	done map[types.NamespacedName]int64 // latest reconcile start number per key
}

// settle resyncs every TLSContext the harness sees and waits until each has
// been reconciled by a reconcile that started after the resync.
func (h *harness) settle(t *testing.T) {
	t.Helper()
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(TLSContextGVK.GroupVersion().WithKind("TLSContextList"))
	if err := h.rec.Client.List(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	mark := h.rec.seq.Load()
	h.rec.ResyncAll(context.Background())
	eventually(t, 60*time.Second, "resync of every TLSContext", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		for i := range list.Items {
			if h.done[client.ObjectKeyFromObject(&list.Items[i])] <= mark {
				return false
			}
		}
		return true
	})
}

type harnessOptions struct {
	config TLSContextConfig
	// namespaces the cache watches; empty means all.
	namespaces []string
	policy     issuer.Policy
	// skipTLSContext leaves the TLSContext reconciler out.
	skipTLSContext bool
	// workloads runs the workload reconciler with workloadConfig.
	workloads      bool
	workloadConfig WorkloadConfig
	// bundle, when set, runs the trust bundle reconciler with it.
	bundle *BundleConfig
	// state, when set, is the CA to start with instead of a fresh one.
	state *ca.State
	// backdate of leaves; 0 means the issuer's default.
	backdate time.Duration
	// reader, when set, is the TLSContext reconciler's direct reader.
	reader client.Reader
	// wrapIssuer, when set, wraps the TLSContext reconciler's issuer.
	wrapIssuer func(Issuer) Issuer
}

func startHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	env := testenv.Get(t)
	state := o.state
	if state == nil {
		c, err := ca.New(ca.Config{TrustDomain: "cluster.local"})
		if err != nil {
			t.Fatalf("new CA: %v", err)
		}
		state = ca.NewState(c, "test", time.Now())
	}
	iss, err := issuer.NewLocal(issuer.LocalConfig{CA: state, Policy: o.policy, Backdate: o.backdate})
	if err != nil {
		t.Fatalf("new issuer: %v", err)
	}
	trust := &authority.Trust{}
	if err := trust.Set(state.Bundle()); err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:  testenv.Scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		// The daemon's cache and client settings, so the tests see what
		// meshca serve sees (trimmed objects, cached TLSContext reads).
		Cache:      CacheOptions(o.namespaces),
		Client:     ClientOptions(),
		Controller: ctrlConfigForTests(),
	})
	if err != nil {
		t.Fatalf("new manager: %v", err)
	}
	reg := prometheus.NewRegistry()
	h := &harness{env: env, state: state, issuer: iss, metrics: NewMetrics(reg), reg: reg, trust: trust}
	ctx, cancel := context.WithCancel(context.Background())
	if !o.skipTLSContext {
		if len(o.config.Namespaces) == 0 {
			o.config.Namespaces = o.namespaces
		}
		var tlsIssuer Issuer = iss
		if o.wrapIssuer != nil {
			tlsIssuer = o.wrapIssuer(iss)
		}
		h.rec = &TLSContextReconciler{
			Client:   mgr.GetClient(),
			Reader:   o.reader,
			Issuer:   tlsIssuer,
			Trust:    trust,
			Recorder: mgr.GetEventRecorder("meshca"),
			Metrics:  h.metrics,
			Config:   o.config,
		}
		h.done = map[types.NamespacedName]int64{}
		h.rec.reconciled = func(key types.NamespacedName, seq int64) {
			h.mu.Lock()
			defer h.mu.Unlock()
			if seq > h.done[key] {
				h.done[key] = seq
			}
		}
		if err := h.rec.SetupWithManager(ctx, mgr); err != nil {
			cancel()
			t.Fatalf("setup: %v", err)
		}
	}
	if o.workloads {
		h.work = &WorkloadReconciler{
			Client:   mgr.GetClient(),
			Issuer:   iss,
			Trust:    trust,
			Recorder: mgr.GetEventRecorder("meshca"),
			Metrics:  h.metrics,
			Config:   o.workloadConfig,
		}
		if err := h.work.SetupWithManager(ctx, mgr); err != nil {
			cancel()
			t.Fatalf("setup workloads: %v", err)
		}
	}
	if o.bundle != nil {
		h.bundle = &BundleReconciler{
			Client:   mgr.GetClient(),
			Trust:    trust,
			Recorder: mgr.GetEventRecorder("meshca"),
			Metrics:  h.metrics,
			Config:   *o.bundle,
		}
		if err := h.bundle.SetupWithManager(ctx, mgr); err != nil {
			cancel()
			t.Fatalf("setup trust bundle: %v", err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	return h
}

// tlsContext builds a TLSContext object.
func tlsContext(ns, name string, annotations map[string]string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetGroupVersionKind(TLSContextGVK)
	u.SetNamespace(ns)
	u.SetName(name)
	u.SetAnnotations(annotations)
	return u
}

var issue = map[string]string{meta.AnnotationIssue: "true"}

func (h *harness) create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := h.env.Client.Create(context.Background(), o); err != nil {
			t.Fatalf("create %s: %v", o.GetName(), err)
		}
	}
}

// waitSecret waits until the Secret exists and cond holds for it.
func (h *harness) waitSecret(t *testing.T, ns, name string, cond func(*corev1.Secret) bool) *corev1.Secret {
	t.Helper()
	var s *corev1.Secret
	eventually(t, 30*time.Second, fmt.Sprintf("Secret %s/%s", ns, name), func() bool {
		got := &corev1.Secret{}
		if err := h.env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, got); err != nil {
			return false
		}
		s = got
		return cond == nil || cond(got)
	})
	return s
}

// noSecret asserts the Secret does not exist.
func (h *harness) noSecret(t *testing.T, ns, name string) {
	t.Helper()
	err := h.env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &corev1.Secret{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("Secret %s/%s: got %v, want NotFound", ns, name, err)
	}
}

// waitEvent waits for an Event with the reason on the named object and
// returns its note.
func (h *harness) waitEvent(t *testing.T, ns, regarding, reason string) string {
	t.Helper()
	var note string
	eventually(t, 30*time.Second, fmt.Sprintf("Event %s on %s/%s", reason, ns, regarding), func() bool {
		list := &eventsv1.EventList{}
		if err := h.env.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
			return false
		}
		for _, e := range list.Items {
			if e.Regarding.Name == regarding && e.Reason == reason {
				note = e.Note
				return true
			}
		}
		return false
	})
	return note
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func counter(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

// leafOf parses the first certificate of a Secret's tls.crt.
func leafOf(t *testing.T, s *corev1.Secret) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(s.Data[corev1.TLSCertKey])
	if block == nil {
		t.Fatalf("Secret %s/%s: tls.crt holds no PEM", s.Namespace, s.Name)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("Secret %s/%s: %v", s.Namespace, s.Name, err)
	}
	return c
}

func uris(c *x509.Certificate) []string {
	var out []string
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	return out
}

func joined(s []string) string { return strings.Join(s, ",") }

func ctrlConfigForTests() config.Controller {
	// Each test runs its own manager in this process; controller-runtime
	// otherwise refuses a second controller of the same name.
	return config.Controller{SkipNameValidation: ptr.To(true)}
}

// emissaryCheck reads a Secret the way Emissary-ingress does before it uses
// it for a TLSContext (written from reading Emissary's secret handling): the
// type must be kubernetes.io/tls or Opaque; tls.crt must start with a PEM
// CERTIFICATE block that parses as X.509; for a certificate Secret tls.key
// must parse as PKCS#1, PKCS#8 or SEC 1 EC; for a CA Secret tls.crt is the
// bundle and every block in it is a certificate.
func emissaryCheck(s *corev1.Secret, caSecret bool) error {
	if s.Type != corev1.SecretTypeTLS && s.Type != corev1.SecretTypeOpaque {
		return fmt.Errorf("type %q: Emissary reads only kubernetes.io/tls and Opaque", s.Type)
	}
	crt, ok := s.Data["tls.crt"]
	if !ok || len(crt) == 0 {
		return fmt.Errorf("no tls.crt")
	}
	block, rest := pem.Decode(crt)
	if block == nil || block.Type != "CERTIFICATE" {
		return fmt.Errorf("tls.crt does not start with a PEM CERTIFICATE block")
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return fmt.Errorf("tls.crt: first certificate: %w", err)
	}
	if caSecret {
		for len(strings.TrimSpace(string(rest))) > 0 {
			block, rest = pem.Decode(rest)
			if block == nil || block.Type != "CERTIFICATE" {
				return fmt.Errorf("tls.crt of a CA Secret holds something other than certificates")
			}
			if _, err := x509.ParseCertificate(block.Bytes); err != nil {
				return fmt.Errorf("tls.crt: %w", err)
			}
		}
		return nil
	}
	kb, _ := pem.Decode(s.Data["tls.key"])
	if kb == nil {
		return fmt.Errorf("tls.key holds no PEM block")
	}
	var err error
	switch kb.Type {
	case "PRIVATE KEY":
		_, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	case "RSA PRIVATE KEY":
		_, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	case "EC PRIVATE KEY":
		_, err = x509.ParseECPrivateKey(kb.Bytes)
	default:
		err = fmt.Errorf("unknown key block %q", kb.Type)
	}
	if err != nil {
		return fmt.Errorf("tls.key: %w", err)
	}
	return nil
}

func keyOf(o client.Object) types.NamespacedName { return client.ObjectKeyFromObject(o) }

func (h *harness) secretGone(ns, name string) bool {
	err := h.env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &corev1.Secret{})
	return apierrors.IsNotFound(err)
}

// issueFor signs a throwaway workload certificate in ns with the harness CA.
func issueFor(t *testing.T, h *harness, ns string) *issuer.Bundle {
	t.Helper()
	b, err := h.issuer.Issue(context.Background(), issuer.Request{
		Profile:   issuer.ProfileWorkload,
		Namespace: ns,
		SPIFFEID:  "spiffe://cluster.local/ns/" + ns + "/sa/default",
		DNSNames:  []string{"x." + ns + ".svc"},
	})
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	return b
}

func hasLabel(ns *corev1.Namespace, k, v string) *corev1.Namespace {
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	ns.Labels[k] = v
	return ns
}

func namespaceObj(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}
