// Package status collects what `meshca status` shows: the certificates in
// Secrets meshca manages, the CA slots, the trust bundle and the leader,
// read from the API server; and renders it as a table or JSON. It never
// reads or prints private keys.
package status

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/ca/castore"
	"github.com/meshca/meshca/internal/meta"
)

// States of a certificate.
const (
	StateReady    = "Ready"    // valid, renewal not yet due
	StateRenewing = "Renewing" // renewal due, still valid
	StateExpired  = "Expired"
	StateInvalid  = "Invalid" // tls.crt cannot be read
	StateBundle   = "Bundle"  // a CA Secret holding only the trust bundle
)

// Certificate is one managed Secret.
type Certificate struct {
	Namespace string    `json:"namespace"`
	Secret    string    `json:"secret"`
	Source    string    `json:"source"`
	Identity  string    `json:"identity,omitempty"`
	DNSNames  []string  `json:"dnsNames,omitempty"`
	Serial    string    `json:"serial,omitempty"`
	NotAfter  time.Time `json:"notAfter,omitzero"`
	RenewAt   time.Time `json:"renewAt,omitzero"`
	State     string    `json:"state"`
	Reason    string    `json:"reason,omitempty"`
}

// Slot is one CA slot.
type Slot struct {
	Slot                 string    `json:"slot"`
	Subject              string    `json:"subject"`
	Fingerprint          string    `json:"fingerprint"`
	KeyAlgorithm         string    `json:"keyAlgorithm"`
	RootNotAfter         time.Time `json:"rootNotAfter"`
	IntermediateNotAfter time.Time `json:"intermediateNotAfter"`
	CanSign              bool      `json:"canSign"`
}

// Leader is the holder of meshca's Lease.
type Leader struct {
	Identity  string    `json:"identity"`
	RenewedAt time.Time `json:"renewedAt,omitzero"`
}

// Report is everything status shows.
type Report struct {
	Time         time.Time     `json:"time"`
	Namespace    string        `json:"namespace"`
	Certificates []Certificate `json:"certificates"`
	CA           []Slot        `json:"ca"`
	CAError      string        `json:"caError,omitempty"`
	BundleRoots  int           `json:"bundleRoots"`
	Leader       *Leader       `json:"leader,omitempty"`
}

// Collect reads the report from the API server. namespace is meshca's own
// (the CA Secret and the Lease). A missing or unreadable CA is reported, not
// an error, so status still lists certificates.
func Collect(ctx context.Context, cs kubernetes.Interface, namespace string, now time.Time) (*Report, error) {
	r := &Report{Time: now, Namespace: namespace, Certificates: []Certificate{}, CA: []Slot{}}
	sel := labels.SelectorFromSet(labels.Set{meta.LabelManagedBy: meta.ManagedByValue}).String()
	secrets, err := cs.CoreV1().Secrets(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list managed Secrets: %w", err)
	}
	for i := range secrets.Items {
		s := &secrets.Items[i]
		if s.Namespace == namespace && s.Name == ca.DefaultSecretName {
			continue
		}
		r.Certificates = append(r.Certificates, certificate(s, now))
	}
	sort.Slice(r.Certificates, func(i, j int) bool {
		a, b := r.Certificates[i], r.Certificates[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Secret < b.Secret
	})

	st, err := castore.Secret{Client: cs, Namespace: namespace}.Load(ctx)
	switch {
	case errors.Is(err, ca.ErrNotFound):
		r.CAError = "no CA Secret yet (meshca creates it on first start)"
	case err != nil:
		r.CAError = err.Error()
	default:
		for _, slot := range []ca.Slot{ca.SlotCurrent, ca.SlotNext, ca.SlotPrevious} {
			c := st.Get(slot)
			if c == nil {
				continue
			}
			alg, _ := ca.KeyAlgorithmOf(c.Intermediate.PublicKey)
			r.CA = append(r.CA, Slot{
				Slot: string(slot), Subject: c.Intermediate.Subject.String(), Fingerprint: c.Fingerprint(),
				KeyAlgorithm: string(alg), RootNotAfter: c.Root.NotAfter, IntermediateNotAfter: c.Intermediate.NotAfter,
				CanSign: c.CanSign(),
			})
		}
		r.BundleRoots = len(st.Roots())
	}

	lease, err := cs.CoordinationV1().Leases(namespace).Get(ctx, "meshca", metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("get Lease %s/meshca: %w", namespace, err)
	case lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "":
		r.Leader = &Leader{Identity: *lease.Spec.HolderIdentity}
		if lease.Spec.RenewTime != nil {
			r.Leader.RenewedAt = lease.Spec.RenewTime.Time
		}
	}
	return r, nil
}

func certificate(s *corev1.Secret, now time.Time) Certificate {
	c := Certificate{
		Namespace: s.Namespace,
		Secret:    s.Name,
		Source:    s.Annotations[meta.AnnotationSource],
		Identity:  s.Annotations[meta.AnnotationSPIFFEID],
		Serial:    s.Annotations[meta.AnnotationSerial],
		Reason:    s.Annotations[meta.AnnotationReason],
	}
	if s.Type != corev1.SecretTypeTLS {
		c.State = StateBundle
		if roots, err := ca.ParseCertificatesPEM(s.Data[corev1.ServiceAccountRootCAKey]); err == nil {
			c.Reason = fmt.Sprintf("%d roots", len(roots))
		}
		return c
	}
	certs, err := ca.ParseCertificatesPEM(s.Data[corev1.TLSCertKey])
	if err != nil {
		c.State, c.Reason = StateInvalid, err.Error()
		return c
	}
	leaf := certs[0]
	c.DNSNames = leaf.DNSNames
	c.NotAfter = leaf.NotAfter
	if t, err := time.Parse(time.RFC3339, s.Annotations[meta.AnnotationRenewAt]); err == nil {
		c.RenewAt = t
	}
	c.State = state(leaf, c.RenewAt, now)
	return c
}

func state(leaf *x509.Certificate, renewAt, now time.Time) string {
	switch {
	case !now.Before(leaf.NotAfter):
		return StateExpired
	case !renewAt.IsZero() && !now.Before(renewAt):
		return StateRenewing
	}
	return StateReady
}
