package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/ca/castore"
	"github.com/meshca/meshca/controller"
)

// errCAGone means the CA Secret is missing while Secrets that an earlier CA
// issued still exist: creating a new CA silently would orphan them.
var errCAGone = errors.New("CA Secret missing but certificates it issued remain")

// loadCA loads the CA, or creates one when there is none and nothing meshca
// wrote before is left (or --allow-new-ca says to go ahead anyway).
func loadCA(ctx context.Context, store castore.Secret, cs kubernetes.Interface, o *serveOptions) (*ca.State, error) {
	st, err := store.Load(ctx)
	if err == nil {
		return st, nil
	}
	if !errors.Is(err, ca.ErrNotFound) {
		// Load's error names the Secret already.
		return nil, err
	}
	if !o.allowNewCA {
		left, err := managedSecrets(ctx, cs, o, store)
		if err != nil {
			return nil, fmt.Errorf("look for Secrets of an earlier CA before creating %s: %w", store, err)
		}
		if len(left) > 0 {
			// Another replica starting at the same moment may have just
			// created the CA and its first Secrets: load it if so.
			if st, lerr := store.Load(ctx); lerr == nil {
				return st, nil
			}
			return nil, fmt.Errorf("%w: %s does not exist, but Secrets labelled app.kubernetes.io/managed-by=meshca do (%s); "+
				"restore the CA Secret from a backup, or start with --allow-new-ca to create a new CA that will replace every one of them",
				errCAGone, store, strings.Join(left, ", "))
		}
	}
	st, err = store.LoadOrCreate(ctx, ca.Config{TrustDomain: o.trustDomain})
	if err != nil {
		return nil, fmt.Errorf("load CA from %s: %w", store, err)
	}
	return st, nil
}

// managedSecrets names up to a few Secrets meshca wrote, other than the CA
// Secret itself, in the namespaces meshca works in.
func managedSecrets(ctx context.Context, cs kubernetes.Interface, o *serveOptions, store castore.Secret) ([]string, error) {
	// With --watch-namespaces meshca may list Secrets only there (the
	// chart's RBAC names the two Secrets of its own namespace one by one).
	namespaces := []string{metav1.NamespaceAll}
	if len(o.watchNamespaces) > 0 {
		namespaces = o.watchNamespaces
	}
	const max = 5
	var out []string
	seen := map[string]bool{}
	for _, ns := range namespaces {
		list, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{
			LabelSelector: controller.ManagedSelector.String(),
			Limit:         max + 1,
		})
		if err != nil {
			return nil, err
		}
		for _, s := range list.Items {
			key := s.Namespace + "/" + s.Name
			// The CA Secret and meshca's own serving certificate are not
			// certificates a lost CA leaves behind for others to trust.
			own := s.Namespace == store.Namespace && (s.Name == storeName(store) || s.Name == o.webhookSecret)
			if seen[key] || own {
				continue
			}
			seen[key] = true
			if len(out) < max {
				out = append(out, key)
			}
		}
	}
	return out, nil
}

func storeName(s castore.Secret) string {
	if s.Name == "" {
		return ca.DefaultSecretName
	}
	return s.Name
}
