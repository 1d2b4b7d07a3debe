package controller

import (
	"bytes"
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/meshca/meshca/authority"
	"github.com/meshca/meshca/internal/meta"
)

// reconcileCASecret keeps an Opaque Secret whose tls.crt and ca.crt hold the
// trust bundle (tls.crt is the key Emissary reads for a CA secret).
func (r *TLSContextReconciler) reconcileCASecret(ctx context.Context, src *unstructured.Unstructured, ref secretRef, trust *authority.Snapshot) error {
	if ok, err := r.crossNamespaceAllowed(ctx, src, ref); !ok || err != nil {
		return err
	}
	return retryOnCacheMiss(func() error { return r.keepCASecret(ctx, src, ref, trust) })
}

func (r *TLSContextReconciler) keepCASecret(ctx context.Context, src *unstructured.Unstructured, ref secretRef, trust *authority.Snapshot) error {
	existing, err := r.secrets.observe(ctx, ref)
	if r.keeper.refused(src, err) {
		return nil
	}
	if err != nil {
		return err
	}
	holder := sourceKey(tlsContextKind, src.GetNamespace(), src.GetName())
	if existing != nil {
		// The claim rules of spec.secret hold here too: a Secret held by
		// another source is never overwritten or retyped for this one,
		// except that sources naming it as a CA Secret share it (they all
		// want the same bundle) and the first holder stays recorded.
		satisfied := existing.Type == corev1.SecretTypeOpaque &&
			bytes.Equal(existing.Data[corev1.TLSCertKey], trust.PEM) && bytes.Equal(existing.Data[corev1.ServiceAccountRootCAKey], trust.PEM)
		v, err := r.keeper.claim(ctx, claimant{
			Key: holder, Kind: tlsContextKind, Namespace: src.GetNamespace(), Use: useBundle,
			Satisfied: satisfied, CreatedFor: r.secrets.createdFor(existing, holder),
		}, existing)
		if err != nil {
			return err
		}
		if !v.Write {
			r.keeper.conflict(src, existing, v)
			return nil
		}
		holder = v.Holder
	}
	d := desiredSecret{
		ref: ref,
		typ: corev1.SecretTypeOpaque,
		data: map[string][]byte{
			corev1.TLSCertKey:              trust.PEM,
			corev1.ServiceAccountRootCAKey: trust.PEM,
		},
		annotations: map[string]string{meta.AnnotationSource: holder},
	}
	wrote, err := r.secrets.apply(ctx, existing, d)
	if err != nil {
		return err
	}
	if wrote {
		verb := "written"
		if existing != nil && !bytes.Equal(existing.Data[corev1.TLSCertKey], trust.PEM) {
			verb = "updated to the new trust bundle"
		}
		r.Recorder.Eventf(src, nil, corev1.EventTypeNormal, EventBundleUpdated, "Issue", "CA Secret %s %s", ref, verb)
	}
	return nil
}

// cleanup handles Secrets a TLSContext no longer wants (spec nil: the
// TLSContext is gone or no longer managed). With the keep policy it does
// nothing; with delete it removes the managed Secrets it still holds, but
// not one that another TLSContext still names (a CA Secret they share, a
// certificate another refreshed as is): that one is handed to them.
func (r *TLSContextReconciler) cleanup(ctx context.Context, key types.NamespacedName, spec *gatewaySpec) error {
	if r.Config.Cleanup != CleanupDelete {
		return nil
	}
	list := &corev1.SecretList{}
	if err := r.Client.List(ctx, list, client.MatchingFields{sourceIndex: sourceKey(tlsContextKind, key.Namespace, key.Name)}); err != nil {
		return fmt.Errorf("list Secrets of %s: %w", key, err)
	}
	for i := range list.Items {
		s := &list.Items[i]
		ref := secretRef{s.Namespace, s.Name}
		if spec != nil && ((spec.Secret != nil && *spec.Secret == ref) || (spec.CASecret != nil && *spec.CASecret == ref)) {
			continue
		}
		others, err := r.othersNaming(ctx, key, ref)
		if err != nil {
			return err
		}
		if len(others) > 0 {
			// They take it over: the holder recorded is gone or no
			// longer names it.
			for _, o := range others {
				select {
				case r.resync <- event.TypedGenericEvent[*unstructured.Unstructured]{Object: o}:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			continue
		}
		if err := r.secrets.delete(ctx, s); err != nil {
			return err
		}
		r.Metrics.forgetSecret(ref)
	}
	return nil
}

// othersNaming returns the managed TLSContexts other than not that name the
// Secret at ref and may take it once not lets it go, as keys for the resync
// queue.
func (r *TLSContextReconciler) othersNaming(ctx context.Context, not types.NamespacedName, ref secretRef) ([]*unstructured.Unstructured, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(TLSContextGVK.GroupVersion().WithKind("TLSContextList"))
	if err := r.Client.List(ctx, list, client.MatchingFields{namespacesIndex: ref.Namespace}); err != nil {
		return nil, fmt.Errorf("list TLSContexts naming %s: %w", ref, err)
	}
	var out []*unstructured.Unstructured
	for i := range list.Items {
		item := &list.Items[i]
		if client.ObjectKeyFromObject(item) == not || !r.managed(item) {
			continue
		}
		u, ok := secretUse(item, ref)
		if !ok {
			continue
		}
		c := claimant{Key: sourceKey(tlsContextKind, item.GetNamespace(), item.GetName()), Kind: tlsContextKind, Namespace: item.GetNamespace(), Use: u}
		if gone := parseHolder(sourceKey(tlsContextKind, not.Namespace, not.Name)); decideClaim(ref.Namespace, c, gone).Write {
			k := &unstructured.Unstructured{}
			k.SetNamespace(item.GetNamespace())
			k.SetName(item.GetName())
			out = append(out, k)
		}
	}
	return out, nil
}
