package controller

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/internal/meta"
)

// ManagedSelector selects the Secrets and ConfigMaps meshca writes.
var ManagedSelector = labels.SelectorFromSet(labels.Set{meta.LabelManagedBy: meta.ManagedByValue})

// CacheOptions are the informer cache settings the reconcilers are written
// for. Only meshca-labelled Secrets and ConfigMaps are cached, so memory
// does not grow with the cluster's other Secrets; namespaces, when given,
// limit every cache to them (--watch-namespaces). Cached objects are
// trimmed to what the reconcilers read (see trimForCache): nothing may
// Update an object read from this cache expecting the dropped fields.
func CacheOptions(namespaces []string) cache.Options {
	opts := cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}:    {Label: ManagedSelector},
			&corev1.ConfigMap{}: {Label: ManagedSelector},
		},
		DefaultTransform: trimForCache,
	}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}

// ClientOptions makes the manager's client read unstructured objects (the
// TLSContexts) from the cache like typed ones; controller-runtime's default
// sends every unstructured read to the API server. As with typed kinds, the
// first read of an unstructured kind starts an informer for it: meshca reads
// only TLSContexts (TLSContextGVK), which it watches anyway.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{Unstructured: true}}
}

// lastApplied is kubectl's copy of the whole object as last applied.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// trimForCache drops from an object entering the cache what no reconciler
// reads: managedFields everywhere (often larger than the rest of the
// metadata); on TLSContexts, which meshca never writes, kubectl's
// last-applied copy and status too; and of a workload everything but its
// metadata, its pod template's annotations and service account. Secrets
// and ConfigMaps keep everything else: they are Updated from cached copies,
// and the API server keeps the managedFields an update leaves out. Workloads
// are only ever patched with the diff of two trimmed copies
// (client.MergeFrom), which carries only what changed.
func trimForCache(obj any) (any, error) {
	m, err := apimeta.Accessor(obj)
	if err != nil {
		return obj, nil
	}
	m.SetManagedFields(nil)
	switch o := obj.(type) {
	case *unstructured.Unstructured:
		delete(o.Object, "status")
	case *appsv1.Deployment:
		o.Spec = appsv1.DeploymentSpec{Template: trimTemplate(o.Spec.Template)}
		o.Status = appsv1.DeploymentStatus{}
	case *appsv1.StatefulSet:
		o.Spec = appsv1.StatefulSetSpec{Template: trimTemplate(o.Spec.Template)}
		o.Status = appsv1.StatefulSetStatus{}
	case *appsv1.DaemonSet:
		o.Spec = appsv1.DaemonSetSpec{Template: trimTemplate(o.Spec.Template)}
		o.Status = appsv1.DaemonSetStatus{}
	default:
		return obj, nil // Secrets, ConfigMaps, Namespaces: only managedFields
	}
	if ann := m.GetAnnotations(); ann[lastApplied] != "" {
		delete(ann, lastApplied)
		m.SetAnnotations(ann)
	}
	return obj, nil
}

// trimTemplate keeps what the workload reconciler reads of a pod template.
func trimTemplate(t corev1.PodTemplateSpec) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: t.ObjectMeta,
		Spec:       corev1.PodSpec{ServiceAccountName: t.Spec.ServiceAccountName},
	}
}
