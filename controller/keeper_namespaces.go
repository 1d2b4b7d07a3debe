package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/internal/meta"
)

// namespaceSuffixes returns the DNS suffixes a namespace's administrator
// allows it to claim (annotation meshca.io/allowed-dns-suffixes on the
// Namespace), read from c (normally the manager's cache); they go into the
// issuer.Request, whose policy is a pure function of it. A namespace that
// does not exist allows nothing more. Any other failure to read it is an
// error, never an empty list: the caller retries rather than record a
// refusal the namespace's administrator did not make.
func namespaceSuffixes(ctx context.Context, c client.Reader, namespace string) ([]string, error) {
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, types.NamespacedName{Name: namespace}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("read namespace %s for its allowed DNS suffixes: %w", namespace, err)
	}
	return splitList(ns.Annotations[meta.AnnotationAllowedDNSSuffixes]), nil
}
