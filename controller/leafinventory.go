package controller

import (
	"context"
	"crypto/x509"
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
// Secrets that signer signed: the first certificate of tls.crt, whose
// signature must verify against signer. meshca.io/issuer only narrows the
// search. A Secret whose tls.crt does not parse holds no leaf anyone can
// use; one that only claims the CA (a label and annotations any tenant
// can write) does not keep it in the bundles.
func (i LeafInventory) LatestNotAfter(ctx context.Context, signer *x509.Certificate) (time.Time, error) {
	issuerFingerprint := ca.Fingerprint(signer)
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
		certs, err := ca.ParseCertificatesPEM(s.Data[corev1.TLSCertKey])
		if err != nil || len(certs) == 0 || certs[0].CheckSignatureFrom(signer) != nil {
			continue
		}
		if t := certs[0].NotAfter; t.After(latest) {
			latest = t
		}
	}
	return latest, nil
}
