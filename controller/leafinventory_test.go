package controller

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/internal/testpki"
)

// failingReader is a client.Reader whose List fails.
type failingReader struct{ client.Reader }

func (failingReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("cache not synced")
}

func TestLeafInventory(t *testing.T) {
	t.Parallel()
	pki, other := testpki.New(t), testpki.New(t)
	issuerFP := ca.Fingerprint(pki.Intermediate)
	now := time.Now().Truncate(time.Second)
	leaf := func(notAfter time.Time) []byte {
		return pki.Leaf(t, testpki.LeafOptions{NotAfter: notAfter}).CertPEM
	}
	secret := func(name string, managed bool, issuer string, notAfter string, crt []byte) *corev1.Secret {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: name, Annotations: map[string]string{meta.AnnotationIssuer: issuer}},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{corev1.TLSCertKey: crt},
		}
		if notAfter != "" {
			s.Annotations[meta.AnnotationNotAfter] = notAfter
		}
		if managed {
			s.Labels = map[string]string{meta.LabelManagedBy: meta.ManagedByValue}
		}
		return s
	}
	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	cases := map[string]struct {
		secrets []*corev1.Secret
		want    time.Time
	}{
		"none": {nil, time.Time{}},
		"latest of the issuer's leaves": {
			[]*corev1.Secret{
				secret("a", true, issuerFP, rfc(now.Add(time.Hour)), leaf(now.Add(time.Hour))),
				secret("b", true, issuerFP, rfc(now.Add(2*time.Hour)), leaf(now.Add(2*time.Hour))),
			},
			now.Add(2 * time.Hour),
		},
		"other issuers do not count": {
			[]*corev1.Secret{
				secret("a", true, issuerFP, rfc(now.Add(time.Hour)), leaf(now.Add(time.Hour))),
				secret("b", true, "another", rfc(now.Add(5*time.Hour)), leaf(now.Add(5*time.Hour))),
			},
			now.Add(time.Hour),
		},
		"unmanaged Secrets do not count": {
			[]*corev1.Secret{secret("a", false, issuerFP, rfc(now.Add(time.Hour)), leaf(now.Add(time.Hour)))},
			time.Time{},
		},
		"the certificate wins over an edited annotation": {
			[]*corev1.Secret{secret("a", true, issuerFP, rfc(now.Add(time.Minute)), leaf(now.Add(3*time.Hour)))},
			now.Add(3 * time.Hour),
		},
		"a garbled tls.crt holds no usable leaf, whatever its annotation": {
			[]*corev1.Secret{secret("a", true, issuerFP, rfc(now.Add(time.Hour)), []byte("garbled"))},
			time.Time{},
		},
		"a leaf that only claims the issuer does not count": {
			[]*corev1.Secret{secret("a", true, issuerFP, rfc(now.Add(5*time.Hour)), other.Leaf(t, testpki.LeafOptions{NotAfter: now.Add(5 * time.Hour)}).CertPEM)},
			time.Time{},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := fake.NewClientBuilder()
			for _, s := range tc.secrets {
				b = b.WithObjects(s)
			}
			got, err := LeafInventory{Reader: b.Build()}.LatestNotAfter(context.Background(), pki.Intermediate)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tc.want) {
				t.Errorf("LatestNotAfter = %s, want %s", got, tc.want)
			}
		})
	}
	t.Run("list error", func(t *testing.T) {
		t.Parallel()
		if _, err := (LeafInventory{Reader: failingReader{}}).LatestNotAfter(context.Background(), pki.Intermediate); err == nil {
			t.Fatal("LatestNotAfter hid the list error")
		}
	})
}
