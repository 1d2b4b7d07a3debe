package controller

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/issuer"
	"github.com/meshca/meshca/rotator"
)

// TestServingCertificateIsKeptByTheKeeper: meshca's own webhook
// certificate goes through the same keeper as a tenant's, on a fake clock:
// issued with its IP and DNS names, renewed when due, ca.crt following the
// bundle, written although its Secret is reserved and records no holder,
// and never written over a Secret without meshca's label.
func TestServingCertificateIsKeptByTheKeeper(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newKeeperWorld(t)
	iss, err := issuer.NewLocal(issuer.LocalConfig{CA: w.st, Clock: w.clk, Policy: issuer.OperatorPolicy(), DefaultDuration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	sc := &ServingCertificate{Client: w.c, Issuer: iss, Trust: w.trust, Recorder: w.rec, Clock: w.clk,
		Namespace: "meshca", Name: "meshca-webhook", Names: []string{"meshca.meshca.svc", "127.0.0.1"}}
	get := func() *corev1.Secret {
		t.Helper()
		s := &corev1.Secret{}
		if err := w.c.Get(ctx, client.ObjectKey{Namespace: "meshca", Name: "meshca-webhook"}, s); err != nil {
			t.Fatal(err)
		}
		return s
	}

	// A Secret without meshca's label is in the way: refused, looked at
	// again after Retry.
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "meshca", Name: "meshca-webhook"},
		Data: map[string][]byte{"user": []byte("data")}}
	if err := w.c.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	after, err := sc.ensure(ctx)
	if err != nil || after != 10*time.Second || len(get().Data) != 1 {
		t.Fatalf("over a foreign Secret: after %s, err %v, data %v", after, err, get().Data)
	}
	if got := strings.Join(w.rec.reasons, ","); got != "Warning SecretConflict" {
		t.Errorf("events %q, want a SecretConflict", got)
	}
	if err := w.c.Delete(ctx, foreign); err != nil {
		t.Fatal(err)
	}

	// A managed Secret that records no holder (an older meshca, an edit):
	// the reserved Secret is meshca's, no claim is decided.
	if err := w.c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "meshca", Name: "meshca-webhook",
		Labels: map[string]string{meta.LabelManagedBy: meta.ManagedByValue}}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: []byte("garbage")}}); err != nil {
		t.Fatal(err)
	}
	w.rec.reasons = nil
	after, err = sc.ensure(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := get()
	leaf := leafOf(t, s)
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) || len(leaf.DNSNames) != 1 || len(leaf.URIs) != 0 {
		t.Errorf("SANs: IPs %v DNS %v URIs %v", leaf.IPAddresses, leaf.DNSNames, leaf.URIs)
	}
	if s.Annotations[meta.AnnotationSource] != "meshca/meshca/webhook" || s.Annotations[meta.AnnotationReason] != rotator.ReasonUnparsable {
		t.Errorf("annotations %v", s.Annotations)
	}
	if got := strings.Join(w.rec.reasons, ","); got != "Normal Renewed" {
		t.Errorf("events %q, want Renewed on the Secret", got)
	}
	serial := s.Annotations[meta.AnnotationSerial]

	// Not due: nothing is signed, the next look is at renew-at.
	w.clk.Step(after / 2)
	if _, err := sc.ensure(ctx); err != nil || get().Annotations[meta.AnnotationSerial] != serial {
		t.Fatalf("renewed before due: %v", err)
	}
	// Due: renewed.
	w.clk.Step(after)
	if _, err := sc.ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if s := get(); s.Annotations[meta.AnnotationSerial] == serial || s.Annotations[meta.AnnotationReason] != rotator.ReasonNearExpiry {
		t.Errorf("not renewed when due: %v", s.Annotations)
	}
}
