package controller

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/meshca/meshca/authority"
	"github.com/meshca/meshca/issuer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// TestStoppingDropsOnlyErrorsOfAnEndingContext: an error returned while
// the context is live is kept (and retried by controller-runtime); one
// returned after it ended is dropped.
func TestStoppingDropsOnlyErrorsOfAnEndingContext(t *testing.T) {
	boom := errors.New("boom")
	r := stopping{reconcile.Func(func(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
		if ctx.Err() != nil {
			return reconcile.Result{RequeueAfter: time.Second}, ctx.Err()
		}
		return reconcile.Result{}, boom
	})}
	if _, err := r.Reconcile(context.Background(), reconcile.Request{}); !errors.Is(err, boom) {
		t.Errorf("live context: error %v, want boom", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if res, err := r.Reconcile(ctx, reconcile.Request{}); err != nil || res != (reconcile.Result{}) {
		t.Errorf("ended context: %v, %v; want no error and no requeue", res, err)
	}
}

// cancelingIssuer ends the reconcile's context while signing, as a
// shutdown or a lost lease does, and fails with its error.
type cancelingIssuer struct{ cancel context.CancelFunc }

func (c cancelingIssuer) Issue(ctx context.Context, _ issuer.Request) (*issuer.Bundle, error) {
	c.cancel()
	return nil, ctx.Err()
}

type recordedEvents struct{ reasons []string }

func (r *recordedEvents) Eventf(_ runtime.Object, _ runtime.Object, eventtype, reason, _, _ string, _ ...any) {
	r.reasons = append(r.reasons, eventtype+" "+reason)
}

// TestIssuanceCutShortByShutdownIsNoFailure: no IssueFailed Warning and no
// failure metric for a signing that the context's end interrupted; a real
// failure still gets both (the control case).
func TestIssuanceCutShortByShutdownIsNoFailure(t *testing.T) {
	for _, tc := range []struct {
		name     string
		iss      func(cancel context.CancelFunc) Issuer
		wantWarn bool
	}{
		{"context ends while signing", func(cancel context.CancelFunc) Issuer { return cancelingIssuer{cancel} }, false},
		{"signing fails", func(context.CancelFunc) Issuer { return failingIssuer{} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientBuilder().Build()
			m := NewMetrics(prometheus.NewRegistry())
			rec := &recordedEvents{}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			k := &certKeeper{
				secrets: &secretWriter{client: c, reader: c, metrics: m}, issuer: tc.iss(cancel),
				recorder: rec, metrics: m, clock: clock.RealClock{}, namespaces: c,
			}
			src := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "src"}}
			_, err := k.keep(ctx, certSpec{
				Source: src, SourceKey: "ConfigMap/shop/src", Ref: secretRef{Namespace: "shop", Name: "tls"},
				Profile: issuer.ProfileGateway, SPIFFEID: "spiffe://cluster.local/ns/shop/sa/gw", DNSNames: []string{"gw.shop.svc"},
			}, &authority.Snapshot{Pool: x509.NewCertPool()})
			if err == nil {
				t.Fatal("keep succeeded; want the issuer's error")
			}
			warned := len(rec.reasons) > 0
			failures := testutil.ToFloat64(m.Failures.WithLabelValues(string(issuer.ProfileGateway), "sign"))
			if warned != tc.wantWarn || (failures > 0) != tc.wantWarn {
				t.Errorf("events %v, failures %v; want a Warning and a failure: %v", rec.reasons, failures, tc.wantWarn)
			}
		})
	}
}

type failingIssuer struct{}

func (failingIssuer) Issue(context.Context, issuer.Request) (*issuer.Bundle, error) {
	return nil, errors.New("step-ca unreachable")
}
