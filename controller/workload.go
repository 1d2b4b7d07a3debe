package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/time/rate"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
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

// WorkloadKinds are the apps/v1 kinds that may ask for a certificate with
// meshca.io/certificate: "true".
var WorkloadKinds = []string{"Deployment", "StatefulSet", "DaemonSet"}

// EventRestarted is recorded on a workload whose pod template meshca
// stamped with a new meshca.io/cert-revision after a renewal.
const EventRestarted = "RestartTriggered"

// WorkloadConfig configures the workload reconciler. Zero values mean the
// defaults of docs/design.md.
type WorkloadConfig struct {
	// TrustDomain of SPIFFE IDs; "" means cluster.local.
	TrustDomain string
	// ClusterDomain of Service DNS names; "" means cluster.local.
	ClusterDomain string
	// KeyAlgorithm is the default key algorithm; "" means the issuer's.
	KeyAlgorithm ca.KeyAlgorithm
	// Reserved are meshca's own Secrets, which no workload may name.
	Reserved ReservedSecrets
	// MaxConcurrentReconciles per kind; 0 means 4.
	MaxConcurrentReconciles int
	// DisableRestartOnRotate makes meshca ignore meshca.io/restart-on-rotate:
	// it never patches a workload and records EventRestartDisabled on a
	// renewal instead (--restart-on-rotate=false).
	DisableRestartOnRotate bool
	// Namespace is meshca's own (--namespace); its workloads, like those
	// of kube-system, are never patched (workload_restart.go). "" means kube-system
	// only.
	Namespace string
}

// WorkloadReconciler issues workload certificates for Deployments,
// StatefulSets and DaemonSets annotated meshca.io/certificate: "true", into
// Secrets they own: deleting the workload lets the garbage collector delete
// its Secret. With meshca.io/restart-on-rotate: "true" a renewal stamps the
// pod template so the workload rolls onto the new certificate.
type WorkloadReconciler struct {
	Client   client.Client
	Reader   client.Reader
	Issuer   Issuer
	Trust    *authority.Trust
	Recorder EventRecorder
	Metrics  *Metrics
	// Limiter caps issuance; nil means unlimited. Share it with the
	// TLSContext reconciler so the cap is the daemon's.
	Limiter *rate.Limiter
	// Clock; nil means the real clock.
	Clock  clock.PassiveClock
	Config WorkloadConfig

	keeper *certKeeper
	resync map[string]chan event.GenericEvent
}

// workloadController reconciles one workload kind.
type workloadController struct {
	r    *WorkloadReconciler
	kind string
}

func (c workloadController) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	return c.r.reconcile(ctx, c.kind, req.NamespacedName)
}

// SetupWithManager registers one controller per workload kind.
func (r *WorkloadReconciler) SetupWithManager(_ context.Context, mgr ctrl.Manager) error {
	if r.Config.TrustDomain == "" {
		r.Config.TrustDomain = "cluster.local"
	}
	if r.Config.ClusterDomain == "" {
		r.Config.ClusterDomain = "cluster.local"
	}
	if r.Config.MaxConcurrentReconciles == 0 {
		r.Config.MaxConcurrentReconciles = 4
	}
	r.keeper = newCertKeeper(mgr, r.Client, &r.Reader, &r.Clock, r.Issuer, r.Recorder, r.Metrics, r.Limiter, r.Config.Reserved,
		workloadHolders{reader: r.Client, config: r.Config})
	r.resync = map[string]chan event.GenericEvent{}
	for _, kind := range WorkloadKinds {
		ch := make(chan event.GenericEvent, 1024)
		r.resync[kind] = ch
		err := ctrl.NewControllerManagedBy(mgr).
			Named(strings.ToLower(kind)).
			For(newWorkload(kind), builder.WithPredicates(wantedOrWas)).
			Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(secretToSource(kind)), builder.WithPredicates(r.keeper.secrets.notOwnWrite())).
			Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.namespaceToWorkloads(kind)), builder.WithPredicates(notInitialList)).
			WatchesRawSource(source.Channel(ch, &handler.EnqueueRequestForObject{})).
			WithOptions(controller.Options{MaxConcurrentReconciles: r.Config.MaxConcurrentReconciles}).
			Complete(stopping{workloadController{r: r, kind: kind}})
		if err != nil {
			return fmt.Errorf("set up %s controller: %w", kind, err)
		}
	}
	return nil
}

// wantedOrWas passes the events of workloads that want a certificate, and
// the update of one that stops wanting it, so its expiry series go.
var wantedOrWas = predicate.Funcs{
	CreateFunc:  func(e event.CreateEvent) bool { return wantsCertificate(e.Object) },
	UpdateFunc:  func(e event.UpdateEvent) bool { return wantsCertificate(e.ObjectNew) || wantsCertificate(e.ObjectOld) },
	DeleteFunc:  func(e event.DeleteEvent) bool { return wantsCertificate(e.Object) },
	GenericFunc: func(e event.GenericEvent) bool { return wantsCertificate(e.Object) },
}

// newWorkload returns an empty object of an apps/v1 workload kind.
func newWorkload(kind string) client.Object {
	switch kind {
	case "Deployment":
		return &appsv1.Deployment{}
	case "StatefulSet":
		return &appsv1.StatefulSet{}
	case "DaemonSet":
		return &appsv1.DaemonSet{}
	}
	panic("controller: unknown workload kind " + kind)
}

// newWorkloadList returns an empty list of an apps/v1 workload kind.
func newWorkloadList(kind string) client.ObjectList {
	switch kind {
	case "Deployment":
		return &appsv1.DeploymentList{}
	case "StatefulSet":
		return &appsv1.StatefulSetList{}
	case "DaemonSet":
		return &appsv1.DaemonSetList{}
	}
	panic("controller: unknown workload kind " + kind)
}

// podTemplate returns a workload's pod template, to read and to stamp.
func podTemplate(o client.Object) *corev1.PodTemplateSpec {
	switch w := o.(type) {
	case *appsv1.Deployment:
		return &w.Spec.Template
	case *appsv1.StatefulSet:
		return &w.Spec.Template
	case *appsv1.DaemonSet:
		return &w.Spec.Template
	}
	panic(fmt.Sprintf("controller: %T is not a workload", o))
}

// wantsCertificate reports whether a workload asks for a certificate.
func wantsCertificate(o client.Object) bool {
	return o.GetDeletionTimestamp() == nil && strings.EqualFold(o.GetAnnotations()[meta.AnnotationCertificate], "true")
}

// listWorkloads lists the workloads of kind that want a certificate. The
// items are the cache's own objects, not copies: callers only read them.
func (r *WorkloadReconciler) listWorkloads(ctx context.Context, kind string, opts ...client.ListOption) ([]client.Object, error) {
	list := newWorkloadList(kind)
	if err := r.Client.List(ctx, list, append(opts, client.UnsafeDisableDeepCopy)...); err != nil {
		return nil, fmt.Errorf("list %ss: %w", kind, err)
	}
	items, err := apimeta.ExtractList(list)
	if err != nil {
		return nil, err
	}
	var out []client.Object
	for _, item := range items {
		if o, ok := item.(client.Object); ok && wantsCertificate(o) {
			out = append(out, o)
		}
	}
	return out, nil
}

// namespaceToWorkloads re-checks a namespace's workloads when it changes
// (its meshca.io/allowed-dns-suffixes annotation widens or narrows policy).
func (r *WorkloadReconciler) namespaceToWorkloads(kind string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		items, err := r.listWorkloads(ctx, kind, client.InNamespace(o.GetName()))
		if err != nil {
			log.FromContext(ctx).V(1).Info("cannot list workloads for namespace change", "namespace", o.GetName(), "error", err.Error())
			return nil
		}
		out := make([]reconcile.Request, 0, len(items))
		for _, item := range items {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(item)})
		}
		return out
	}
}

// ResyncAll queues every workload that wants a certificate for a check: the
// audit sweep and trust bundle changes call it.
func (r *WorkloadReconciler) ResyncAll(ctx context.Context) {
	for _, kind := range WorkloadKinds {
		items, err := r.listWorkloads(ctx, kind)
		if err != nil {
			log.FromContext(ctx).Error(err, "resync workloads")
			continue
		}
		for _, item := range items {
			select {
			case r.resync[kind] <- event.GenericEvent{Object: item}:
			case <-ctx.Done():
				return
			}
		}
	}
}

// reconcile keeps one workload's certificate Secret current.
func (r *WorkloadReconciler) reconcile(ctx context.Context, kind string, key types.NamespacedName) (reconcile.Result, error) {
	obj := newWorkload(kind)
	me := sourceKey(kind, key.Namespace, key.Name)
	if err := r.Client.Get(ctx, key, obj); err != nil {
		// A deleted workload's Secret goes with it: the garbage collector
		// follows the owner reference.
		if apierrors.IsNotFound(err) {
			r.Metrics.forgetSource(me)
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !wantsCertificate(obj) {
		// The Secret stays until the workload goes (its owner reference),
		// no longer renewed.
		r.Metrics.forgetSource(me)
		return reconcile.Result{}, nil
	}
	spec, err := parseWorkloadSpec(obj, r.Config)
	if err != nil {
		r.Metrics.Rejected.WithLabelValues("spec").Inc()
		r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, EventInvalidSpec, "Validate", "%v", err)
		return reconcile.Result{}, nil
	}
	// Nothing is written before the first bundle: on a new leader that is
	// the CA Secret as its CA rotator reads it, not as it was at start.
	trust, err := r.Trust.Snapshot(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	kept, err := r.keeper.keep(ctx, certSpec{
		Source:       obj,
		SourceKey:    me,
		Ref:          spec.Secret,
		Profile:      issuer.ProfileWorkload,
		SPIFFEID:     fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", r.Config.TrustDomain, obj.GetNamespace(), spec.ServiceAccount),
		DNSNames:     spec.DNSNames,
		Duration:     spec.Duration,
		RenewBefore:  spec.RenewBefore,
		KeyAlgorithm: spec.KeyAlgorithm,
		Owners:       []metav1.OwnerReference{ownerReference(kind, obj)},
	}, trust)
	if err != nil {
		return reconcile.Result{}, err
	}
	if spec.RestartOnRotate && r.mayRestart(obj, kept) {
		if err := r.restartOnRotate(ctx, obj, kept); err != nil {
			return reconcile.Result{}, err
		}
	}
	return reconcile.Result{RequeueAfter: kept.After}, nil
}

// ownerReference makes the workload the controller of its Secret.
func ownerReference(kind string, o client.Object) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion:         appsv1.SchemeGroupVersion.String(),
		Kind:               kind,
		Name:               o.GetName(),
		UID:                o.GetUID(),
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}
}

// workloadHolders looks up workloads that hold a Secret.
type workloadHolders struct {
	reader client.Reader
	config WorkloadConfig
}

func (l workloadHolders) lookup(ctx context.Context, h holder, ref secretRef) (holder, error) {
	// A workload writes Secrets only in its own namespace.
	if !isWorkloadKind(h.Kind) || h.Namespace != ref.Namespace {
		return h, nil
	}
	other := newWorkload(h.Kind)
	err := l.reader.Get(ctx, types.NamespacedName{Namespace: h.Namespace, Name: h.Name}, other)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return h, err
	case wantsCertificate(other):
		w, err := parseWorkloadSpec(other, l.config)
		h.Use, h.Live = useCertificate, err == nil && w.Secret == ref
	}
	return h, nil
}

func isWorkloadKind(kind string) bool { return slices.Contains(WorkloadKinds, kind) }
