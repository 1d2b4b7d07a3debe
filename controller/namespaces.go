package controller

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/internal/meta"
)

// NamespaceSuffixes returns the DNS suffixes a namespace's administrator
// allows it to claim (annotation meshca.io/allowed-dns-suffixes on the
// Namespace), read from c (normally the manager's cache). It is the
// issuer.Policy.NamespaceSuffixes hook.
func NamespaceSuffixes(c client.Reader) func(namespace string) []string {
	return func(namespace string) []string {
		ns := &corev1.Namespace{}
		if err := c.Get(context.Background(), types.NamespacedName{Name: namespace}, ns); err != nil {
			return nil
		}
		return splitList(ns.Annotations[meta.AnnotationAllowedDNSSuffixes])
	}
}
