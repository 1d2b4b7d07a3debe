package controller

import (
	"cmp"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/meshca/meshca/authority"
	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/issuer"
	"github.com/meshca/meshca/rotator"
)

// keeperWorld is a certKeeper on a fake clock and a fake client, signing
// with a real local issuer on the same clock: renewal timing, repair and
// claims take milliseconds to prove here, where the end-to-end tests wait
// on the wall clock against a real API server.
type keeperWorld struct {
	clk   *clocktesting.FakeClock
	c     client.Client
	k     *certKeeper
	rec   *recordedEvents
	trust *authority.Trust
	st    *ca.State
	// live are the holders (meshca.io/source) that still want the
	// Secret they hold, as the fake lookup tells the claim rules.
	live fakeHolders
	// duration and renewBefore, when set, are the wish's annotations.
	duration, renewBefore time.Duration
}

func newKeeperWorld(t *testing.T) *keeperWorld {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC))
	c, err := ca.New(ca.Config{Clock: clk, Backdate: -1})
	if err != nil {
		t.Fatal(err)
	}
	st := ca.NewState(c, ca.SourceGenerated, clk.Now())
	// The CA is older than the issuer's backdate, as in a running
	// cluster: leaves start a minute before they are issued.
	clk.Step(time.Hour)
	iss, err := issuer.NewLocal(issuer.LocalConfig{CA: st, Clock: clk, DefaultDuration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	trust := &authority.Trust{}
	if err := trust.Set(st.Bundle()); err != nil {
		t.Fatal(err)
	}
	fc := fake.NewClientBuilder().Build()
	m := NewMetrics(prometheus.NewRegistry())
	w := &keeperWorld{clk: clk, c: fc, rec: &recordedEvents{}, trust: trust, st: st, live: fakeHolders{}}
	w.k = &certKeeper{
		secrets: &secretWriter{client: fc, reader: fc, metrics: m}, issuer: iss,
		recorder: w.rec, metrics: m, clock: clk, namespaces: fc, holders: w.live,
	}
	return w
}

// fakeHolders says which holders are live, and how they use their Secret.
type fakeHolders map[string]use

func (f fakeHolders) lookup(_ context.Context, h holder, _ secretRef) (holder, error) {
	h.Use, h.Live = f[h.Key]
	return h, nil
}

const keeperSource = "TLSContext/shop/gw"

func (w *keeperWorld) wish() certSpec {
	return certSpec{
		Source:      &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "gw"}},
		SourceKey:   keeperSource,
		Ref:         secretRef{Namespace: "shop", Name: "gw-tls"},
		Profile:     issuer.ProfileGateway,
		SPIFFEID:    "spiffe://cluster.local/ns/shop/sa/gw",
		DNSNames:    []string{"gw.shop.svc"},
		Duration:    cmp.Or(w.duration, time.Hour),
		RenewBefore: w.renewBefore,
	}
}

func (w *keeperWorld) secret(t *testing.T) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := w.c.Get(context.Background(), client.ObjectKey{Namespace: "shop", Name: "gw-tls"}, s); err != nil {
		t.Fatal(err)
	}
	return s
}

func (w *keeperWorld) edit(t *testing.T, f func(*corev1.Secret)) {
	t.Helper()
	s := w.secret(t)
	f(s)
	if err := w.c.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

// keeperStep is one look of the keeper, after the clock moved by advance
// and before applies its edit.
type keeperStep struct {
	advance time.Duration
	before  func(t *testing.T, w *keeperWorld)
	// wantReason is the reason of a new certificate; "" means none was
	// issued.
	wantReason string
	// wantEvents are the Events of this step, "Type Reason", in order.
	wantEvents []string
	// wantAfter, when set, checks when the keeper wants to look again.
	wantAfter func(t *testing.T, w *keeperWorld, after time.Duration)
}

// TestCertKeeperDecisions: what the keeper does over a certificate's life,
// step by step on a fake clock.
func TestCertKeeperDecisions(t *testing.T) {
	t.Parallel()
	issued := []string{"Normal Issued"}
	renewed := []string{"Normal Renewed"}
	// renewAtIs checks that the next look is the Secret's renew-at, which
	// is between half and the whole of the lifetime away (jittered, by
	// default at 2/3).
	renewAtIs := func(t *testing.T, w *keeperWorld, after time.Duration) {
		t.Helper()
		s := w.secret(t)
		at, err := time.Parse(time.RFC3339, s.Annotations[meta.AnnotationRenewAt])
		if err != nil {
			t.Fatal(err)
		}
		// The annotation holds whole seconds.
		if got := w.clk.Now().Add(after).Truncate(time.Second); !got.Equal(at) {
			t.Errorf("next look at %s, want the Secret's renew-at %s", got, at)
		}
		leaf := leafOf(t, s)
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		if f := float64(at.Sub(leaf.NotBefore)) / float64(life); f < 0.5 || f > 1 {
			t.Errorf("renew-at at %.2f of the lifetime", f)
		}
	}
	tests := map[string][]keeperStep{
		"issue, keep, renew near expiry": {
			{wantReason: rotator.ReasonMissing, wantEvents: issued, wantAfter: renewAtIs},
			{advance: 10 * time.Minute, wantAfter: renewAtIs},
			{advance: 50 * time.Minute, wantReason: rotator.ReasonNearExpiry, wantEvents: renewed, wantAfter: renewAtIs},
		},
		"expired while nobody looked": {
			{wantReason: rotator.ReasonMissing, wantEvents: issued},
			{advance: 3 * time.Hour, wantReason: rotator.ReasonNearExpiry, wantEvents: renewed, wantAfter: renewAtIs},
		},
		"a foreign key is repaired": {
			{wantReason: rotator.ReasonMissing, wantEvents: issued},
			{before: func(t *testing.T, w *keeperWorld) {
				other := newKeeperWorld(t)
				if _, err := other.k.keep(context.Background(), other.wish(), mustSnapshot(t, other.trust)); err != nil {
					t.Fatal(err)
				}
				w.edit(t, func(s *corev1.Secret) {
					s.Data[corev1.TLSPrivateKeyKey] = other.secret(t).Data[corev1.TLSPrivateKeyKey]
				})
			}, wantReason: rotator.ReasonKeyMismatch, wantEvents: renewed},
		},
		"garbage is repaired": {
			{wantReason: rotator.ReasonMissing, wantEvents: issued},
			{before: func(t *testing.T, w *keeperWorld) {
				w.edit(t, func(s *corev1.Secret) { s.Data[corev1.TLSCertKey] = []byte("garbage") })
			}, wantReason: rotator.ReasonUnparsable, wantEvents: renewed},
		},
		"a renewal asked for by annotation": {
			{wantReason: rotator.ReasonMissing, wantEvents: issued},
			{before: func(t *testing.T, w *keeperWorld) {
				w.edit(t, func(s *corev1.Secret) {
					s.Annotations[meta.AnnotationRenewRequested] = s.Annotations[meta.AnnotationSerial]
				})
			}, wantReason: rotator.ReasonManual, wantEvents: renewed},
			// Asked once, done once.
			{advance: time.Minute},
		},
		"a new root in the bundle reaches ca.crt without a new certificate": {
			{wantReason: rotator.ReasonMissing, wantEvents: issued},
			{before: func(t *testing.T, w *keeperWorld) {
				next, err := ca.New(ca.Config{Clock: w.clk, Backdate: -1})
				if err != nil {
					t.Fatal(err)
				}
				if err := w.trust.Set(w.st.WithNext(next, ca.SourceGenerated, w.clk.Now(), nil).Bundle()); err != nil {
					t.Fatal(err)
				}
			}, wantEvents: []string{"Normal BundleUpdated"}, wantAfter: func(t *testing.T, w *keeperWorld, _ time.Duration) {
				if got, want := string(w.secret(t).Data[corev1.ServiceAccountRootCAKey]), string(w.trust.PEM()); got != want {
					t.Error("ca.crt does not hold the new bundle")
				}
			}},
		},
		"a root gone from the bundle is a new certificate": {
			{wantReason: rotator.ReasonMissing, wantEvents: issued},
			{before: func(t *testing.T, w *keeperWorld) {
				other, err := ca.New(ca.Config{Clock: w.clk, Backdate: -1})
				if err != nil {
					t.Fatal(err)
				}
				if err := w.trust.Set(ca.EncodeCertificatesPEM(other.Root)); err != nil {
					t.Fatal(err)
				}
			}, wantReason: rotator.ReasonIssuerNotTrusted, wantEvents: renewed},
		},
		"a holder that keeps its Secret is not overwritten": {
			{wantReason: rotator.ReasonMissing, wantEvents: issued},
			{before: func(t *testing.T, w *keeperWorld) {
				// A live holder with the smaller name keeps it.
				w.live["TLSContext/shop/a"] = useCertificate
				w.edit(t, func(s *corev1.Secret) {
					s.Annotations[meta.AnnotationSource] = "TLSContext/shop/a"
					s.Data[corev1.TLSCertKey] = []byte("theirs")
				})
			}, wantEvents: []string{"Warning SecretConflict"}, wantAfter: func(t *testing.T, w *keeperWorld, after time.Duration) {
				if after != 0 || string(w.secret(t).Data[corev1.TLSCertKey]) != "theirs" {
					t.Errorf("a refused claim wrote the Secret or asked to look again in %s", after)
				}
			}},
		},
		"a takeover writes the new holder": {
			{wantReason: rotator.ReasonMissing, wantEvents: issued},
			{before: func(t *testing.T, w *keeperWorld) {
				w.edit(t, func(s *corev1.Secret) { s.Annotations[meta.AnnotationSource] = "TLSContext/shop/gone" })
			}, wantAfter: func(t *testing.T, w *keeperWorld, _ time.Duration) {
				if got := w.secret(t).Annotations[meta.AnnotationSource]; got != keeperSource {
					t.Errorf("source after the takeover is %q, want %q", got, keeperSource)
				}
			}},
		},
		// A tenant's annotations must not make meshca renew in a loop:
		// with the 1-minute backdate counted in the lifetime, 30 s would
		// be due before it is issued (seen: 34 certificates in 30 s).
		"a duration too short to outlive its renewal is refused": {
			{before: func(_ *testing.T, w *keeperWorld) { w.duration = 30 * time.Second },
				wantEvents: []string{"Warning InvalidSpec"}, wantAfter: noSecret},
		},
		"a renew-before as long as the lifetime is refused": {
			{before: func(_ *testing.T, w *keeperWorld) { w.renewBefore = time.Hour },
				wantEvents: []string{"Warning InvalidSpec"}, wantAfter: noSecret},
		},
		"a refused renewal keeps the certificate there": {
			{wantReason: rotator.ReasonMissing, wantEvents: issued},
			{advance: 40 * time.Minute, before: func(_ *testing.T, w *keeperWorld) { w.renewBefore = 59 * time.Minute },
				wantEvents: []string{"Warning InvalidSpec"}, wantAfter: func(t *testing.T, w *keeperWorld, after time.Duration) {
					if after != 0 || w.secret(t).Annotations[meta.AnnotationReason] != rotator.ReasonMissing {
						t.Error("a refused renewal wrote the Secret or asked to look again")
					}
				}},
		},
		"the shortest sane duration is kept": {
			{before: func(_ *testing.T, w *keeperWorld) { w.duration = 90 * time.Second },
				wantReason: rotator.ReasonMissing, wantEvents: issued, wantAfter: renewAtIs},
			{advance: 10 * time.Second},
		},
		"a Secret meshca does not own is never written": {
			{before: func(t *testing.T, w *keeperWorld) {
				if err := w.c.Create(context.Background(), &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "gw-tls"},
					Data:       map[string][]byte{"user": []byte("data")},
				}); err != nil {
					t.Fatal(err)
				}
			}, wantEvents: []string{"Warning SecretConflict"}, wantAfter: func(t *testing.T, w *keeperWorld, _ time.Duration) {
				if s := w.secret(t); len(s.Data) != 1 || string(s.Data["user"]) != "data" {
					t.Errorf("the foreign Secret was written: %v", s.Data)
				}
			}},
		},
	}
	for name, steps := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w := newKeeperWorld(t)
			for i, step := range steps {
				w.clk.Step(step.advance)
				if step.before != nil {
					step.before(t, w)
				}
				w.rec.reasons = nil
				var serialBefore string
				if s := (&corev1.Secret{}); w.c.Get(context.Background(), client.ObjectKey{Namespace: "shop", Name: "gw-tls"}, s) == nil {
					serialBefore = s.Annotations[meta.AnnotationSerial]
				}
				kept, err := w.k.keep(context.Background(), w.wish(), mustSnapshot(t, w.trust))
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				gotReason := ""
				if kept.Issued {
					gotReason = kept.Reason
					if kept.Serial == serialBefore {
						t.Errorf("step %d: issued, but the serial stayed %s", i, kept.Serial)
					}
				}
				if gotReason != step.wantReason {
					t.Errorf("step %d: issued for %q, want %q", i, gotReason, step.wantReason)
				}
				if got, want := strings.Join(w.rec.reasons, ","), strings.Join(step.wantEvents, ","); got != want {
					t.Errorf("step %d: events %q, want %q", i, got, want)
				}
				if step.wantAfter != nil {
					step.wantAfter(t, w, kept.After)
				}
			}
		})
	}
}

// noSecret checks that nothing was written and no look again asked for.
func noSecret(t *testing.T, w *keeperWorld, after time.Duration) {
	t.Helper()
	err := w.c.Get(context.Background(), client.ObjectKey{Namespace: "shop", Name: "gw-tls"}, &corev1.Secret{})
	if !apierrors.IsNotFound(err) || after != 0 {
		t.Errorf("Secret read: %v, look again in %s; want none and none", err, after)
	}
}

func mustSnapshot(t *testing.T, tr *authority.Trust) *authority.Snapshot {
	t.Helper()
	s, err := tr.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// slowIssuer signs as the wrapped issuer does, the clock moving by delay
// while it does: a loaded machine.
type slowIssuer struct {
	Issuer
	clk   *clocktesting.FakeClock
	delay time.Duration
}

func (s slowIssuer) Issue(ctx context.Context, req issuer.Request) (*issuer.Bundle, error) {
	b, err := s.Issuer.Issue(ctx, req)
	s.clk.Step(s.delay)
	return b, err
}

// TestTooShortRefusedWhenSigningIsSlow: a duration too short to outlive its
// renewal is refused however long the signing took (seen in CI: a signing
// slower than a second made the certificate look cut short by the CA, and
// it was written).
func TestTooShortRefusedWhenSigningIsSlow(t *testing.T) {
	t.Parallel()
	w := newKeeperWorld(t)
	w.k.issuer = slowIssuer{Issuer: w.k.issuer, clk: w.clk, delay: 3 * time.Second}
	w.duration = 30 * time.Second
	kept, err := w.k.keep(context.Background(), w.wish(), mustSnapshot(t, w.trust))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(w.rec.reasons, ","); got != "Warning InvalidSpec" {
		t.Errorf("events %q, want InvalidSpec", got)
	}
	noSecret(t, w, kept.After)
}
