package controller

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/internal/meta"
)

// reconcileCASecret keeps an Opaque Secret whose tls.crt and ca.crt hold the
// trust bundle (tls.crt is the key Emissary reads for a CA secret).
func (r *TLSContextReconciler) reconcileCASecret(ctx context.Context, src *unstructured.Unstructured, ref secretRef, trust *trustSnapshot) error {
	if ok, err := r.crossNamespaceAllowed(ctx, src, ref); !ok || err != nil {
		return err
	}
	return againIfExists(func() error { return r.keepCASecret(ctx, src, ref, trust) })
}

func (r *TLSContextReconciler) keepCASecret(ctx context.Context, src *unstructured.Unstructured, ref secretRef, trust *trustSnapshot) error {
	existing, err := r.secrets.observe(ctx, ref)
	var fe *errForeignSecret
	if errors.As(err, &fe) {
		r.keeper.foreign(src, err)
		return nil
	}
	if err != nil {
		return err
	}
	d := desiredSecret{
		ref: ref,
		typ: corev1.SecretTypeOpaque,
		data: map[string][]byte{
			corev1.TLSCertKey:              trust.pem,
			corev1.ServiceAccountRootCAKey: trust.pem,
		},
		annotations: map[string]string{
			meta.AnnotationSource: sourceKey("TLSContext", src.GetNamespace(), src.GetName()),
		},
	}
	if existing != nil {
		// Every TLSContext wants the same bundle, so a CA Secret shared by
		// several is no conflict: the first holder stays recorded.
		if h := existing.Annotations[meta.AnnotationSource]; h != "" {
			d.annotations[meta.AnnotationSource] = h
		}
	}
	wrote, err := r.secrets.apply(ctx, existing, d)
	if err != nil {
		return err
	}
	if wrote {
		verb := "written"
		if existing != nil && !bytes.Equal(existing.Data[corev1.TLSCertKey], trust.pem) {
			verb = "updated to the new trust bundle"
		}
		r.Recorder.Eventf(src, nil, corev1.EventTypeNormal, EventBundleUpdated, "Issue", "CA Secret %s %s", ref, verb)
	}
	return nil
}

// cleanup handles Secrets a TLSContext no longer wants (wish nil: the
// TLSContext is gone or no longer managed). With the keep policy it does
// nothing; with delete it removes the managed Secrets it still holds.
func (r *TLSContextReconciler) cleanup(ctx context.Context, key types.NamespacedName, wish *gatewayWish) error {
	if r.Config.Cleanup != CleanupDelete {
		return nil
	}
	list := &corev1.SecretList{}
	if err := r.Client.List(ctx, list, client.MatchingFields{sourceIndex: sourceKey("TLSContext", key.Namespace, key.Name)}); err != nil {
		return fmt.Errorf("list Secrets of %s: %w", key, err)
	}
	for i := range list.Items {
		s := &list.Items[i]
		ref := secretRef{s.Namespace, s.Name}
		if wish != nil && ((wish.Secret != nil && *wish.Secret == ref) || (wish.CASecret != nil && *wish.CASecret == ref)) {
			continue
		}
		if err := r.secrets.delete(ctx, s); err != nil {
			return err
		}
		r.Metrics.NotAfter.DeleteLabelValues(s.Namespace, s.Name)
		r.Metrics.RenewAt.DeleteLabelValues(s.Namespace, s.Name)
	}
	return nil
}
