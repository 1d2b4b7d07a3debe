package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/meshca/meshca/internal/meta"
)

// sourceIndex indexes managed Secrets by their meshca.io/source annotation.
const sourceIndex = "meshca.source"

// indexSource is the field indexer for sourceIndex.
func indexSource(o client.Object) []string {
	if s := o.GetAnnotations()[meta.AnnotationSource]; s != "" {
		return []string{s}
	}
	return nil
}

// sourceKey names a source object in meshca.io/source: kind/namespace/name.
func sourceKey(kind, namespace, name string) string {
	return kind + "/" + namespace + "/" + name
}

// parseSourceKey splits a meshca.io/source value.
func parseSourceKey(s string) (kind, namespace, name string, ok bool) {
	parts := strings.SplitN(s, "/", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// isManaged reports whether meshca may write or delete s.
func isManaged(s *corev1.Secret) bool {
	return s.Labels[meta.LabelManagedBy] == meta.ManagedByValue
}

// errForeignSecret means a Secret exists without meshca's label: meshca
// leaves it alone and says so.
type errForeignSecret struct{ ref secretRef }

func (e *errForeignSecret) Error() string {
	return fmt.Sprintf("Secret %s exists and is not managed by meshca (no %s=%s label): refusing to overwrite it",
		e.ref, meta.LabelManagedBy, meta.ManagedByValue)
}

// errExists means a create met a Secret the cache did not show: a foreign
// one, or a managed one the cache has not seen yet. Nothing was written;
// the caller looks again with confirmed reads (secretWriter.observe).
var errExists = errors.New("exists but was not in the cache")

// retryOnCacheMiss runs keep, an observe-then-apply of one Secret, and runs
// it once more when its create met a Secret the cache missed (errExists).
// apply has marked that ref suspect, so the second observe confirms with a
// direct read what is there: a foreign Secret is refused, a managed one
// kept as usual.
func retryOnCacheMiss(keep func() error) error {
	if err := keep(); !errors.Is(err, errExists) {
		return err
	}
	return keep()
}

// secretWriter reads and writes Secrets meshca manages. Reads come from the
// cache, which holds only managed Secrets.
type secretWriter struct {
	client  client.Client
	reader  client.Reader
	metrics *Metrics
	// reserved are meshca's own Secrets: never read for, or written by, a
	// source.
	reserved ReservedSecrets
	// suspect holds the refs (secretRef) where a create met a Secret the
	// cache did not show; a cache miss there is confirmed with a direct
	// read before anything is signed.
	suspect sync.Map
	// written holds, per ref (secretRef), meshca's last write of it (a
	// lastWrite): its resourceVersion for notOwnWrite, and the UID and
	// holder that createdFor reads.
	written sync.Map
}

// lastWrite is what secretWriter remembers of its last write of a Secret.
type lastWrite struct {
	resourceVersion string
	uid             types.UID
	holder          string
}

// createdFor reports whether this writer wrote s, the same object, last
// for source: evidence that meshca created it for that source when its
// meshca.io/source has since been lost or edited.
func (w *secretWriter) createdFor(s *corev1.Secret, source string) bool {
	v, ok := w.written.Load(secretRef{s.Namespace, s.Name})
	return ok && v.(lastWrite).uid == s.UID && v.(lastWrite).holder == source
}

// remember records a write of s (as the API server returned it).
func (w *secretWriter) remember(ref secretRef, s *corev1.Secret) {
	w.written.Store(ref, lastWrite{resourceVersion: s.ResourceVersion, uid: s.UID, holder: s.Annotations[meta.AnnotationSource]})
}

// notOwnWrite drops the Secret watch events that report meshca's own last
// write: the reconcile that wrote the Secret has checked what it wrote, and
// another look would only parse and verify the certificate again (a third
// of all reconciles in a burst of first issuances, and one per renewal).
// Any other change of the Secret, its deletion and the cache's initial list
// still pass, and so does an own write that moved the Secret to another
// source (meta.AnnotationSource): the previous holder, found through the
// old object, must hear that it lost the Secret (a SecretConflict Event).
func (w *secretWriter) notOwnWrite() predicate.Predicate {
	own := func(o client.Object) bool {
		v, ok := w.written.Load(secretRef{o.GetNamespace(), o.GetName()})
		return ok && v.(lastWrite).resourceVersion == o.GetResourceVersion()
	}
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return !own(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return !own(e.ObjectNew) ||
				e.ObjectOld.GetAnnotations()[meta.AnnotationSource] != e.ObjectNew.GetAnnotations()[meta.AnnotationSource]
		},
		DeleteFunc: func(e event.DeleteEvent) bool {
			ref := secretRef{e.Object.GetNamespace(), e.Object.GetName()}
			w.written.Delete(ref)
			// A Secret that is gone has no expiry; its source, if it
			// still wants one, publishes the next.
			w.metrics.forgetSecret(ref)
			return true
		},
	}
}

// get returns the managed Secret at ref, nil when none exists, or
// errForeignSecret when one exists that meshca does not own. A cache miss
// is always confirmed with a direct read.
func (w *secretWriter) get(ctx context.Context, ref secretRef) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	found, foreign, err := getManaged(ctx, w.client, w.reader, ref.key(), s, corev1.SchemeGroupVersion.WithKind("Secret"))
	switch {
	case err != nil:
		return nil, fmt.Errorf("get Secret %s: %w", ref, err)
	case foreign:
		return nil, &errForeignSecret{ref}
	case !found:
		w.suspect.Delete(ref)
		return nil, nil
	}
	return s, nil
}

// observe is get for a caller that writes what it wants next with apply.
// A cache miss is trusted, without the direct read that get makes: the
// create that follows never overwrites anything, and when it meets a
// Secret (errExists) the ref becomes suspect and observe confirms misses
// there from then on. So a Secret that has never existed costs one
// request, its create, and a foreign one is still never written.
func (w *secretWriter) observe(ctx context.Context, ref secretRef) (*corev1.Secret, error) {
	if w.reserved.has(ref) {
		return nil, &errReserved{ref}
	}
	if _, ok := w.suspect.Load(ref); ok {
		return w.get(ctx, ref)
	}
	s := &corev1.Secret{}
	err := w.client.Get(ctx, ref.key(), s)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("get Secret %s: %w", ref, err)
	case !isManaged(s):
		// The cache holds only managed Secrets; this is a cache that
		// serves everything (tests, or a caller's direct client).
		return nil, &errForeignSecret{ref}
	}
	return s, nil
}

// getManaged reads the object at key into obj. Reads come from cached,
// which holds only objects with meshca's label; a miss is confirmed with a
// direct read so a foreign object is never mistaken for a missing one. That
// read asks for metadata only: a foreign Secret's data is never fetched.
// found is false for a missing object; foreign is true for one without
// meshca's label (obj is then not filled in).
func getManaged(ctx context.Context, cached, direct client.Reader, key types.NamespacedName, obj client.Object, gvk schema.GroupVersionKind) (found, foreign bool, err error) {
	err = cached.Get(ctx, key, obj)
	if err == nil {
		return true, obj.GetLabels()[meta.LabelManagedBy] != meta.ManagedByValue, nil
	}
	if !apierrors.IsNotFound(err) {
		return false, false, err
	}
	// Not in the cache: it is missing, or it is foreign (or the cache lags).
	pm := &metav1.PartialObjectMetadata{}
	pm.SetGroupVersionKind(gvk)
	err = direct.Get(ctx, key, pm)
	switch {
	case apierrors.IsNotFound(err):
		return false, false, nil
	case err != nil:
		return false, false, err
	case pm.Labels[meta.LabelManagedBy] != meta.ManagedByValue:
		return true, true, nil
	}
	// Managed but not yet in the cache: read it whole.
	if err := direct.Get(ctx, key, obj); err != nil {
		return false, false, err
	}
	return true, false, nil
}

// desiredSecret is what a Secret should hold.
type desiredSecret struct {
	ref         secretRef
	typ         corev1.SecretType
	data        map[string][]byte
	annotations map[string]string
	// owners, when set, are the Secret's owner references; nil leaves
	// whatever the Secret has.
	owners []metav1.OwnerReference
}

// apply makes the Secret at ref hold d, creating it when existing is nil.
// It returns whether it wrote. A Secret of the wrong type is replaced, since
// the type of a Secret cannot change. An existing Secret keeps what is not
// meshca's (see keeper_owned.go): its labels, its annotations outside meshca.io/
// and its data keys meshca never writes; meshca's part becomes exactly d,
// so a meshca.io/ annotation or a data key meshca no longer sets goes.
// existing must carry meshca's label: apply never writes another.
func (w *secretWriter) apply(ctx context.Context, existing *corev1.Secret, d desiredSecret) (bool, error) {
	if w.reserved.has(d.ref) {
		return false, &errReserved{d.ref}
	}
	if existing != nil && !isManaged(existing) {
		return false, &errForeignSecret{d.ref}
	}
	if existing != nil && existing.Type != d.typ {
		if err := w.delete(ctx, existing); err != nil {
			return false, err
		}
		existing = nil
	}
	if existing == nil {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name:            d.ref.Name,
				Namespace:       d.ref.Namespace,
				Labels:          managedLabels(nil),
				Annotations:     d.annotations,
				OwnerReferences: d.owners,
			},
			Type: d.typ,
			Data: d.data,
		}
		if err := w.client.Create(ctx, s); err != nil {
			if apierrors.IsAlreadyExists(err) {
				// Foreign, or written since the cache was read: the
				// caller looks again with a confirmed read.
				w.suspect.Store(d.ref, struct{}{})
				return false, fmt.Errorf("create Secret %s: %w", d.ref, errExists)
			}
			return false, fmt.Errorf("create Secret %s: %w", d.ref, err)
		}
		w.remember(d.ref, s)
		w.metrics.wrote(writeSecret, writeCreate)
		return true, nil
	}
	s := mergeSecret(existing, d)
	if equality.Semantic.DeepEqual(existing, s) {
		return false, nil
	}
	// Update carries the resourceVersion we read: a concurrent edit makes
	// this fail with a conflict and the reconcile retries with fresh data.
	if err := w.client.Update(ctx, s); err != nil {
		return false, fmt.Errorf("update Secret %s: %w", d.ref, err)
	}
	w.remember(d.ref, s)
	w.metrics.wrote(writeSecret, writeUpdate)
	return true, nil
}

// mergeSecret is the Secret a write of d leaves of existing (same type):
// meshca's part of it exactly d, the rest as it was.
func mergeSecret(existing *corev1.Secret, d desiredSecret) *corev1.Secret {
	s := existing.DeepCopy()
	s.Labels = managedLabels(existing.Labels)
	s.Annotations = mergeAnnotations(existing.Annotations, d.annotations)
	s.Data = mergeOwned(existing.Data, d.data, ownsSecretData)
	if d.owners != nil {
		s.OwnerReferences = d.owners
	}
	return s
}

// delete removes a managed Secret, only if it is still the one we read.
func (w *secretWriter) delete(ctx context.Context, s *corev1.Secret) error {
	ref := secretRef{s.Namespace, s.Name}
	if w.reserved.has(ref) {
		return &errReserved{ref}
	}
	if !isManaged(s) {
		return &errForeignSecret{ref}
	}
	err := w.client.Delete(ctx, s, client.Preconditions{UID: &s.UID, ResourceVersion: &s.ResourceVersion})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	w.metrics.wrote(writeSecret, writeDelete)
	return nil
}
