package controller

import (
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshca/meshca/internal/meta"
)

// What meshca owns on the Secrets and ConfigMaps it writes, and what a
// write leaves of the rest. A write makes meshca's part exactly what it
// wants now and keeps everything else as it found it:
//
//   - annotations under meshca.io/ are meshca's: one it does not set now
//     (stale, or written by an older version) is removed, except the
//     inputs others set for meshca to read (inputAnnotations);
//   - other annotations and every label but meshca's managed-by label
//     are the user's and kept;
//   - the data keys meshca writes on any Secret (ownedSecretData) are
//     meshca's: one the Secret's use does not have now (tls.key on a CA
//     Secret) is removed; other keys are the user's and kept;
//   - the trust bundle ConfigMap's name is meshca's, so all of its data
//     is: it holds ca.crt and nothing else.
//
// These rules apply only to an object that already carries meshca's label:
// nothing here is ever used on another (secretWriter.apply refuses it).

// ownedAnnotationPrefix starts the annotations meshca owns.
const ownedAnnotationPrefix = "meshca.io/"

// inputAnnotations are meshca.io/ annotations set on meshca's Secrets by
// others (meshca renew, a user) for meshca to read: a write keeps them.
var inputAnnotations = []string{meta.AnnotationRenewRequested}

// ownedSecretData are the data keys meshca writes in Secrets, for any use:
// certificate Secrets hold all three, CA Secrets tls.crt and ca.crt.
var ownedSecretData = []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, corev1.ServiceAccountRootCAKey}

// ownsAnnotation reports whether a write removes annotation k when it does
// not set it.
func ownsAnnotation(k string) bool {
	return strings.HasPrefix(k, ownedAnnotationPrefix) && !slices.Contains(inputAnnotations, k)
}

// ownsSecretData reports whether data key k of a Secret is meshca's.
func ownsSecretData(k string) bool { return slices.Contains(ownedSecretData, k) }

// ownsAll is the data rule of the trust bundle ConfigMap.
func ownsAll(string) bool { return true }

// mergeAnnotations returns the annotations a write leaves: have's without
// the ones meshca owns, then want's.
func mergeAnnotations(have, want map[string]string) map[string]string {
	return mergeOwned(have, want, ownsAnnotation)
}

// mergeOwned returns have without the keys owns says are meshca's, with
// want's keys and values on top. want's keys need not be owned (meshca's
// managed-by label is in a user's namespace of labels).
func mergeOwned[V any](have, want map[string]V, owns func(string) bool) map[string]V {
	out := make(map[string]V, len(have)+len(want))
	for k, v := range have {
		if !owns(k) {
			out[k] = v
		}
	}
	maps.Copy(out, want)
	return out
}

// managedLabels returns have with meshca's managed-by label set.
func managedLabels(have map[string]string) map[string]string {
	return mergeOwned(have, map[string]string{meta.LabelManagedBy: meta.ManagedByValue}, func(string) bool { return false })
}
