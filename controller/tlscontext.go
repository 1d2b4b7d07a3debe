package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/meshca/meshca/authority"
	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/issuer"
)

// TLSContextGVK is the TLSContext version meshca watches. The API server
// serves every stored TLSContext in each served version, so watching
// v3alpha1 also covers objects written as v2.
var TLSContextGVK = schema.GroupVersionKind{Group: "getambassador.io", Version: "v3alpha1", Kind: "TLSContext"}

// SecretCleanup says what happens to Secrets when their source goes away.
type SecretCleanup string

// The cleanup policies.
const (
	CleanupKeep   SecretCleanup = "keep"
	CleanupDelete SecretCleanup = "delete"
)

// TLSContextConfig configures the TLSContext reconciler. Zero values mean
// the defaults of docs/design.md.
type TLSContextConfig struct {
	// TrustDomain of SPIFFE IDs; "" means cluster.local.
	TrustDomain string
	// Selector manages TLSContexts without the meshca.io/issue annotation;
	// nil or empty selects none.
	Selector labels.Selector
	// GatewayServiceAccount is the SPIFFE ID's service account when a
	// TLSContext names none; "" means ambassador.
	GatewayServiceAccount string
	// KeyAlgorithm is the default key algorithm; "" means the issuer's.
	KeyAlgorithm ca.KeyAlgorithm
	// Cleanup of Secrets when a TLSContext goes away; "" means keep.
	Cleanup SecretCleanup
	// AllowCrossNamespace writes name.namespace Secrets without the target
	// namespace's consent label.
	AllowCrossNamespace bool
	// Namespaces meshca watches and writes (--watch-namespaces); empty
	// means all. A Secret outside them is refused with an Event: the
	// cache cannot read it, so trying would fail and retry forever.
	Namespaces []string
	// Reserved are meshca's own Secrets, which no TLSContext may name.
	Reserved ReservedSecrets
	// MaxConcurrentReconciles; 0 means 16. A reconcile that issues spends
	// most of its time waiting for the Secret write, so in a burst the
	// workers, not the CPU, bound how fast new TLSContexts are served; the
	// client's QPS limit still caps the writes.
	MaxConcurrentReconciles int
}

// TLSContextReconciler writes gateway certificates into the Secrets that
// managed TLSContexts name, and the trust bundle into their CA Secrets.
type TLSContextReconciler struct {
	Client   client.Client
	Reader   client.Reader
	Issuer   Issuer
	Trust    *authority.Trust
	Recorder EventRecorder
	Metrics  *Metrics
	// Limiter caps issuance; nil means unlimited.
	Limiter *rate.Limiter
	// Clock; nil means the real clock.
	Clock  clock.PassiveClock
	Config TLSContextConfig

	secrets *secretWriter
	keeper  *certKeeper
	resync  chan event.TypedGenericEvent[*unstructured.Unstructured]
	// seq numbers reconciles as they start; reconciled, when set (tests),
	// is told each finished reconcile's key and start number.
	seq        atomic.Int64
	reconciled func(key types.NamespacedName, seq int64)
}

// SetupWithManager registers the reconciler, its index and its watches.
func (r *TLSContextReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.Config.TrustDomain == "" {
		r.Config.TrustDomain = "cluster.local"
	}
	if r.Config.GatewayServiceAccount == "" {
		r.Config.GatewayServiceAccount = "ambassador"
	}
	if r.Config.Cleanup == "" {
		r.Config.Cleanup = CleanupKeep
	}
	if r.Config.MaxConcurrentReconciles == 0 {
		r.Config.MaxConcurrentReconciles = 16
	}
	r.keeper = newCertKeeper(mgr, r.Client, &r.Reader, &r.Clock, r.Issuer, r.Recorder, r.Metrics, r.Limiter, r.Config.Reserved,
		tlsContextHolders{reader: r.Client, selector: r.Config.Selector})
	r.secrets = r.keeper.secrets
	r.resync = make(chan event.TypedGenericEvent[*unstructured.Unstructured], 1024)

	// Only cleanup lists Secrets by source, and only with the delete
	// policy; the index costs memory per Secret.
	if r.Config.Cleanup == CleanupDelete {
		if err := mgr.GetFieldIndexer().IndexField(ctx, &corev1.Secret{}, sourceIndex, indexSource); err != nil {
			return fmt.Errorf("index Secrets by source: %w", err)
		}
	}
	tc := &unstructured.Unstructured{}
	tc.SetGroupVersionKind(TLSContextGVK)
	if err := mgr.GetFieldIndexer().IndexField(ctx, tc, namespacesIndex, indexNamespaces); err != nil {
		return fmt.Errorf("index TLSContexts by namespace: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("tlscontext").
		For(tc).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(secretToSource("TLSContext")), builder.WithPredicates(r.secrets.notOwnWrite())).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.namespaceToTLSContexts), builder.WithPredicates(notInitialList)).
		WatchesRawSource(source.Channel(r.resync, &handler.TypedEnqueueRequestForObject[*unstructured.Unstructured]{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Config.MaxConcurrentReconciles}).
		Complete(stopping{r})
}

// secretToSource maps a managed Secret to the source object named in its
// meshca.io/source annotation, if that source is of the given kind.
func secretToSource(kind string) handler.MapFunc {
	return func(_ context.Context, o client.Object) []reconcile.Request {
		k, ns, name, ok := parseSourceKey(o.GetAnnotations()[meta.AnnotationSource])
		if !ok || k != kind {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}}
	}
}

// notInitialList drops the create events of an informer's initial list.
// The watches that use it only re-check objects that their own informer
// lists whole at start anyway; reacting to each namespace of a starting
// cache would list the TLSContexts once per namespace.
var notInitialList = predicate.Funcs{CreateFunc: func(e event.CreateEvent) bool { return !e.IsInInitialList }}

// namespacesIndex indexes TLSContexts by the namespaces they involve: their
// own and those their Secrets name (name.namespace).
const namespacesIndex = "meshca.namespaces"

func indexNamespaces(o client.Object) []string {
	out := []string{o.GetNamespace()}
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return out
	}
	for _, f := range []string{"secret", "ca_secret"} {
		s, _, _ := unstructured.NestedString(u.Object, "spec", f)
		if _, ns, found := strings.Cut(s, "."); found && ns != "" && !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	return out
}

// namespaceToTLSContexts re-checks every TLSContext whose source or target
// namespace changed (policy annotations, the consent label).
func (r *TLSContextReconciler) namespaceToTLSContexts(ctx context.Context, o client.Object) []reconcile.Request {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(TLSContextGVK.GroupVersion().WithKind("TLSContextList"))
	// Read-only: the items are the cache's own objects, not copies.
	if err := r.Client.List(ctx, list, client.MatchingFields{namespacesIndex: o.GetName()}, client.UnsafeDisableDeepCopy); err != nil {
		log.FromContext(ctx).Error(err, "list TLSContexts for namespace change", "namespace", o.GetName())
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		if item := &list.Items[i]; r.managed(item) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(item)})
		}
	}
	return out
}

// ResyncAll queues every TLSContext for a check: the audit sweep and trust
// bundle changes call it.
func (r *TLSContextReconciler) ResyncAll(ctx context.Context) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(TLSContextGVK.GroupVersion().WithKind("TLSContextList"))
	// Read-only: only the keys are used, so no copies of the cache's objects.
	if err := r.Client.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		log.FromContext(ctx).Error(err, "list TLSContexts for resync")
		return
	}
	for i := range list.Items {
		key := &unstructured.Unstructured{}
		key.SetNamespace(list.Items[i].GetNamespace())
		key.SetName(list.Items[i].GetName())
		select {
		case r.resync <- event.TypedGenericEvent[*unstructured.Unstructured]{Object: key}:
		case <-ctx.Done():
			return
		}
	}
}

// managed reports whether meshca issues for u.
func (r *TLSContextReconciler) managed(u *unstructured.Unstructured) bool {
	return managedTLSContext(u, r.Config.Selector)
}

// managedTLSContext reports whether meshca manages u: it asks with
// meshca.io/issue or matches selector, and is not being deleted.
func managedTLSContext(u *unstructured.Unstructured, selector labels.Selector) bool {
	if u.GetDeletionTimestamp() != nil {
		return false
	}
	if strings.EqualFold(u.GetAnnotations()[meta.AnnotationIssue], "true") {
		return true
	}
	return selector != nil && !selector.Empty() && selector.Matches(labels.Set(u.GetLabels()))
}

// Reconcile brings the Secrets of one TLSContext to what it asks for.
func (r *TLSContextReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if r.reconciled != nil {
		n := r.seq.Add(1)
		defer r.reconciled(req.NamespacedName, n)
	}
	src := &unstructured.Unstructured{}
	src.SetGroupVersionKind(TLSContextGVK)
	me := sourceKey(tlsContextKind, req.Namespace, req.Name)
	err := r.Client.Get(ctx, req.NamespacedName, src)
	if apierrors.IsNotFound(err) {
		r.Metrics.forgetSource(me)
		return reconcile.Result{}, r.cleanup(ctx, req.NamespacedName, nil)
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	if !r.managed(src) {
		r.Metrics.forgetSource(me)
		return reconcile.Result{}, r.cleanup(ctx, req.NamespacedName, nil)
	}
	spec, err := parseGatewaySpec(src, r.Config.GatewayServiceAccount, string(r.Config.KeyAlgorithm))
	if err != nil {
		r.Metrics.Rejected.WithLabelValues("spec").Inc()
		r.Recorder.Eventf(src, nil, corev1.EventTypeWarning, EventInvalidSpec, "Validate", "%v", err)
		return reconcile.Result{}, nil
	}
	// Nothing is written before the first bundle: on a new leader that is
	// the CA Secret as its CA rotator reads it, not as it was at start.
	trust, err := r.Trust.Snapshot(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}

	var after time.Duration
	if spec.Secret == nil {
		r.Metrics.forgetSource(me)
	}
	if spec.Secret != nil {
		if after, err = r.reconcileGateway(ctx, src, spec, trust); err != nil {
			return reconcile.Result{}, err
		}
	}
	if spec.CASecret != nil {
		if err := r.reconcileCASecret(ctx, src, *spec.CASecret, trust); err != nil {
			return reconcile.Result{}, err
		}
	}
	if err := r.cleanup(ctx, req.NamespacedName, spec); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: after}, nil
}

// crossNamespaceAllowed checks that a Secret outside the source's namespace
// may be written: the target namespace consents (or the operator allows it).
func (r *TLSContextReconciler) crossNamespaceAllowed(ctx context.Context, src client.Object, ref secretRef) (bool, error) {
	if ref.Namespace == src.GetNamespace() {
		return true, nil
	}
	ns := &corev1.Namespace{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: ref.Namespace}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			r.Metrics.Rejected.WithLabelValues("cross-namespace").Inc()
			r.Recorder.Eventf(src, nil, corev1.EventTypeWarning, EventCrossNamespace, "Validate",
				"Secret %s: namespace %s does not exist", ref, ref.Namespace)
			return false, nil
		}
		return false, err
	}
	if len(r.Config.Namespaces) > 0 && !slices.Contains(r.Config.Namespaces, ref.Namespace) {
		r.Metrics.Rejected.WithLabelValues("cross-namespace").Inc()
		r.Recorder.Eventf(src, nil, corev1.EventTypeWarning, EventCrossNamespace, "Validate",
			"Secret %s: namespace %s is not one meshca watches (--watch-namespaces)", ref, ref.Namespace)
		return false, nil
	}
	if r.Config.AllowCrossNamespace || ns.Labels[meta.LabelAcceptSecretsFrom] == src.GetNamespace() {
		return true, nil
	}
	r.Metrics.Rejected.WithLabelValues("cross-namespace").Inc()
	r.Recorder.Eventf(src, nil, corev1.EventTypeWarning, EventCrossNamespace, "Validate",
		"Secret %s: namespace %s does not accept Secrets from %s (label it %s=%s)",
		ref, ref.Namespace, src.GetNamespace(), meta.LabelAcceptSecretsFrom, src.GetNamespace())
	return false, nil
}

// tlsContextHolders looks up TLSContexts that hold a Secret.
type tlsContextHolders struct {
	reader   client.Reader
	selector labels.Selector
}

func (l tlsContextHolders) lookup(ctx context.Context, h holder, ref secretRef) (holder, error) {
	if h.Kind != tlsContextKind {
		return h, nil
	}
	other := &unstructured.Unstructured{}
	other.SetGroupVersionKind(TLSContextGVK)
	err := l.reader.Get(ctx, types.NamespacedName{Namespace: h.Namespace, Name: h.Name}, other)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return h, err
	case managedTLSContext(other, l.selector):
		h.Use, h.Live = secretUse(other, ref)
	}
	return h, nil
}

// secretUse reports whether the TLSContext u names the Secret at ref, and
// as what. A TLSContext whose spec does not parse names nothing.
func secretUse(u *unstructured.Unstructured, ref secretRef) (use, bool) {
	w, err := parseGatewaySpec(u, "", "")
	switch {
	case err != nil:
		return 0, false
	case w.Secret != nil && *w.Secret == ref:
		return useCertificate, true
	case w.CASecret != nil && *w.CASecret == ref:
		return useBundle, true
	}
	return 0, false
}

func (r *TLSContextReconciler) spiffeID(ns, sa string) string {
	return fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", r.Config.TrustDomain, ns, sa)
}

// reconcileGateway keeps the gateway certificate Secret current and returns
// how long until it next needs a look.
func (r *TLSContextReconciler) reconcileGateway(ctx context.Context, src *unstructured.Unstructured, w *gatewaySpec, trust *authority.Snapshot) (time.Duration, error) {
	ref := *w.Secret
	if ok, err := r.crossNamespaceAllowed(ctx, src, ref); !ok || err != nil {
		return 0, err
	}
	kept, err := r.keeper.keep(ctx, certSpec{
		Source:       src,
		SourceKey:    sourceKey("TLSContext", src.GetNamespace(), src.GetName()),
		Ref:          ref,
		Profile:      issuer.ProfileGateway,
		SPIFFEID:     r.spiffeID(src.GetNamespace(), w.ServiceAccount),
		DNSNames:     w.DNSNames,
		Duration:     w.Duration,
		RenewBefore:  w.RenewBefore,
		KeyAlgorithm: w.KeyAlgorithm,
	}, trust)
	return kept.After, err
}
