package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
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
	"github.com/meshca/meshca/internal/meta"
)

// EventBundleConflict is recorded on a Namespace whose meshca-trust-bundle
// ConfigMap is not meshca's: meshca leaves it alone.
const EventBundleConflict = "TrustBundleConflict"

// bundleKey is the ConfigMap key of the trust bundle.
const bundleKey = "ca.crt"

// BundleConfig configures the trust bundle reconciler. Zero values mean the
// defaults of docs/design.md.
type BundleConfig struct {
	// Selector of the namespaces that get the ConfigMap; nil or empty
	// means every namespace. A namespace that stops matching keeps the
	// ConfigMap it had, no longer updated.
	Selector labels.Selector
	// MaxConcurrentReconciles; 0 means 2.
	MaxConcurrentReconciles int
}

// BundleReconciler keeps the ConfigMap meshca-trust-bundle (key ca.crt,
// meshca's managed-by label) in every selected namespace equal to the trust
// bundle: it creates it for new namespaces, repairs it after an edit or a
// deletion and follows bundle changes (ResyncAll). A ConfigMap of that name
// without meshca's label is never written: it gets a Warning Event on the
// Namespace and a metric instead.
type BundleReconciler struct {
	// Client reads from a cache that holds only managed ConfigMaps.
	Client client.Client
	// Reader reads the API server directly; nil means the manager's.
	Reader   client.Reader
	Trust    *authority.Trust
	Recorder EventRecorder
	Metrics  *Metrics
	Config   BundleConfig

	resync chan event.GenericEvent
}

// SetupWithManager registers the reconciler and its watches.
func (r *BundleReconciler) SetupWithManager(_ context.Context, mgr ctrl.Manager) error {
	if r.Config.MaxConcurrentReconciles == 0 {
		r.Config.MaxConcurrentReconciles = 2
	}
	if r.Reader == nil {
		r.Reader = mgr.GetAPIReader()
	}
	r.resync = make(chan event.GenericEvent, 1024)
	return ctrl.NewControllerManagedBy(mgr).
		Named("trustbundle").
		For(&corev1.Namespace{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return r.selected(o.GetLabels())
		}))).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			if o.GetName() != meta.TrustBundleConfigMap {
				return nil
			}
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.GetNamespace()}}}
		})).
		WatchesRawSource(source.Channel(r.resync, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Config.MaxConcurrentReconciles}).
		Complete(stopping{r})
}

func (r *BundleReconciler) selected(l map[string]string) bool {
	return r.Config.Selector == nil || r.Config.Selector.Empty() || r.Config.Selector.Matches(labels.Set(l))
}

// ResyncAll queues every selected namespace: serve calls it when the trust
// bundle changes and from the audit sweep.
func (r *BundleReconciler) ResyncAll(ctx context.Context) {
	list := &corev1.NamespaceList{}
	var opts []client.ListOption
	if r.Config.Selector != nil && !r.Config.Selector.Empty() {
		opts = append(opts, client.MatchingLabelsSelector{Selector: r.Config.Selector})
	}
	if err := r.Client.List(ctx, list, opts...); err != nil {
		log.FromContext(ctx).Error(err, "list namespaces for trust bundle resync")
		return
	}
	for i := range list.Items {
		select {
		case r.resync <- event.GenericEvent{Object: &list.Items[i]}:
		case <-ctx.Done():
			return
		}
	}
}

// Reconcile brings one namespace's trust bundle ConfigMap to the bundle.
func (r *BundleReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	ns := &corev1.Namespace{}
	if err := r.Client.Get(ctx, req.NamespacedName, ns); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating || !r.selected(ns.Labels) {
		return reconcile.Result{}, nil
	}
	// Nothing is written before the first bundle: on a new leader that is
	// the CA Secret as its CA rotator reads it, not as it was at start.
	trust, err := r.Trust.Snapshot(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	key := types.NamespacedName{Namespace: ns.Name, Name: meta.TrustBundleConfigMap}
	cm := &corev1.ConfigMap{}
	found, foreign, err := getManaged(ctx, r.Client, r.Reader, key, cm, corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	switch {
	case err != nil:
		return reconcile.Result{}, fmt.Errorf("get ConfigMap %s: %w", key, err)
	case foreign:
		r.Metrics.BundleConflicts.Inc()
		r.Recorder.Eventf(ns, nil, corev1.EventTypeWarning, EventBundleConflict, "Distribute",
			"ConfigMap %s exists and is not managed by meshca (no %s=%s label): refusing to overwrite it with the trust bundle",
			key, meta.LabelManagedBy, meta.ManagedByValue)
		return reconcile.Result{}, nil
	case !found:
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{
				Name:      key.Name,
				Namespace: key.Namespace,
				Labels:    managedLabels(nil),
			},
			Data: map[string]string{bundleKey: string(trust.PEM)},
		}
		if err := r.Client.Create(ctx, cm); err != nil {
			// AlreadyExists: someone created it since we looked; the retry
			// sees whose it is.
			return reconcile.Result{}, fmt.Errorf("create ConfigMap %s: %w", key, err)
		}
		r.Metrics.wrote(writeConfigMap, writeCreate)
		return reconcile.Result{}, nil
	}
	want := mergeBundle(cm, trust.PEM)
	if equality.Semantic.DeepEqual(cm, want) {
		return reconcile.Result{}, nil
	}
	// Update carries the resourceVersion we read: a concurrent edit fails
	// with a conflict and the retry starts from fresh data.
	if err := r.Client.Update(ctx, want); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			// Someone changed it since we read it: look again shortly.
			return reconcile.Result{RequeueAfter: 200 * time.Millisecond}, nil
		}
		return reconcile.Result{}, fmt.Errorf("update ConfigMap %s: %w", key, err)
	}
	r.Metrics.wrote(writeConfigMap, writeUpdate)
	return reconcile.Result{}, nil
}

// mergeBundle is the trust bundle ConfigMap a write of pem leaves of cm
// (see keeper_owned.go): all of its data is meshca's, so it holds ca.crt alone;
// meshca.io/ annotations go, since meshca sets none; other labels and
// annotations are kept.
func mergeBundle(cm *corev1.ConfigMap, pem []byte) *corev1.ConfigMap {
	out := cm.DeepCopy()
	out.Labels = managedLabels(cm.Labels)
	out.Annotations = mergeAnnotations(cm.Annotations, nil)
	out.Data = mergeOwned(cm.Data, map[string]string{bundleKey: string(pem)}, ownsAll)
	out.BinaryData = mergeOwned(cm.BinaryData, nil, ownsAll)
	return out
}
