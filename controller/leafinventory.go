package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/rotator"
)

// LeafInventory finds the leaves meshca manages by the CA that signed them,
// for the CA rotator: a retired CA stays in the trust bundles until the
// last of them expires. It reads every Secret labelled as managed by meshca
// (certificate Secrets of TLSContexts and workloads, and the webhook's
// serving certificate), as recorded in their annotations meshca.io/issuer
// and meshca.io/not-after.
type LeafInventory struct {
	// Reader lists the managed Secrets; the manager's cached client, whose
	// cache holds exactly those (CacheOptions).
	Reader client.Reader
}

var _ rotator.LeafInventory = LeafInventory{}

// LatestNotAfter returns the latest NotAfter of the leaves in the managed
// Secrets whose meshca.io/issuer is issuerFingerprint. The leaf's own
// NotAfter (first certificate of tls.crt) counts; when tls.crt does not
// parse, meshca.io/not-after plus a second (it drops the fraction) does. A
// Secret with neither holds no leaf anyone can use and is skipped.
func (i LeafInventory) LatestNotAfter(ctx context.Context, issuerFingerprint string) (time.Time, error) {
	var list corev1.SecretList
	// Read-only: the cached objects are not copied.
	if err := i.Reader.List(ctx, &list, client.MatchingLabelsSelector{Selector: ManagedSelector}, client.UnsafeDisableDeepCopy); err != nil {
		return time.Time{}, fmt.Errorf("list managed secrets: %w", err)
	}
	var latest time.Time
	for k := range list.Items {
		s := &list.Items[k]
		if s.Annotations[meta.AnnotationIssuer] != issuerFingerprint {
			continue
		}
		var t time.Time
		if certs, err := ca.ParseCertificatesPEM(s.Data[corev1.TLSCertKey]); err == nil && len(certs) > 0 {
			t = certs[0].NotAfter
		} else if a, err := time.Parse(time.RFC3339, s.Annotations[meta.AnnotationNotAfter]); err == nil {
			t = a.Add(time.Second)
		} else {
			continue
		}
		if t.After(latest) {
			latest = t
		}
	}
	return latest, nil
}
