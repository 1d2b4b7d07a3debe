package ca_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca"
)

// TestRotationSlotsRoundTrip moves CAs through the slots and checks that
// each state, recorded times included, survives the Secret layout.
func TestRotationSlotsRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, b := newCA(t), newCA(t)
	st := ca.NewState(a, "generated", now)
	forced := now.Add(time.Hour)
	prepared := st.WithNext(b, "generated", now.Add(time.Minute), &forced)
	if st.Next != nil || st.Record.Next != nil {
		t.Fatal("WithNext changed its receiver")
	}
	activated, err := prepared.ActivateNext(now.Add(2*time.Hour), now.Add(26*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if prepared.Previous != nil || prepared.Record.Current.RetiredAt != nil {
		t.Fatal("ActivateNext changed its receiver")
	}
	pruned := activated.WithoutPrevious()

	cases := map[string]struct {
		st        *ca.State
		roots     int
		signer    *ca.CA
		checkRecs func(t *testing.T, r ca.StateRecord)
	}{
		"prepared": {prepared, 2, a, func(t *testing.T, r ca.StateRecord) {
			if r.Next.ActivateAt == nil || !r.Next.ActivateAt.Equal(forced) || r.Next.ActivatedAt != nil {
				t.Errorf("next record %+v, want activateAt %s", r.Next, forced)
			}
		}},
		"activated": {activated, 2, b, func(t *testing.T, r ca.StateRecord) {
			if r.Current.ActivatedAt == nil || !r.Current.ActivatedAt.Equal(now.Add(2*time.Hour)) || r.Current.ActivateAt != nil {
				t.Errorf("current record %+v", r.Current)
			}
			if r.Previous.RetiredAt == nil || !r.Previous.RetiredAt.Equal(now.Add(2*time.Hour)) ||
				r.Previous.PruneAt == nil || !r.Previous.PruneAt.Equal(now.Add(26*time.Hour)) {
				t.Errorf("previous record %+v", r.Previous)
			}
		}},
		"pruned": {pruned, 1, b, func(t *testing.T, r ca.StateRecord) {
			if r.Previous != nil || r.Next != nil {
				t.Errorf("record %+v still has previous or next", r)
			}
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data, err := tc.st.SecretData()
			if err != nil {
				t.Fatal(err)
			}
			got, err := ca.StateFromSecretData(data)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Roots()) != tc.roots || !bytes.Equal(got.Bundle(), tc.st.Bundle()) {
				t.Errorf("%d roots, want %d", len(got.Roots()), tc.roots)
			}
			if got.Current.Fingerprint() != tc.signer.Fingerprint() {
				t.Errorf("current is %s, want %s", got.Current.Fingerprint(), tc.signer.Fingerprint())
			}
			tc.checkRecs(t, got.Record)
		})
	}
	if _, err := pruned.ActivateNext(now, now); err == nil {
		t.Error("ActivateNext without a next CA succeeded")
	}
}

// TestStateRecordWithoutRotationFields loads a state.json written before
// activateAt and pruneAt existed.
func TestStateRecordWithoutRotationFields(t *testing.T) {
	t.Parallel()
	a, b := newCA(t), newCA(t)
	st := ca.NewState(a, "generated", time.Now())
	st.Previous = b
	data, err := st.SecretData()
	if err != nil {
		t.Fatal(err)
	}
	old, _ := json.Marshal(map[string]any{"version": 1,
		"current":  map[string]any{"fingerprint": a.Fingerprint(), "source": "generated", "createdAt": "2026-01-01T00:00:00Z"},
		"previous": map[string]any{"fingerprint": b.Fingerprint(), "createdAt": "2025-01-01T00:00:00Z", "retiredAt": "2026-01-01T00:00:00Z"}})
	data[ca.KeyState] = old
	got, err := ca.StateFromSecretData(data)
	if err != nil {
		t.Fatal(err)
	}
	if r := got.Record.Previous; r.RetiredAt == nil || r.PruneAt != nil {
		t.Errorf("previous record %+v", r)
	}
}

func TestSuccessorConfig(t *testing.T) {
	t.Parallel()
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	cases := map[string]ca.Config{
		"default":            {Clock: clk},
		"p384, example.org":  {Clock: clk, KeyAlgorithm: ca.ECDSAP384, TrustDomain: "example.org"},
		"name constraints":   {Clock: clk, TrustDomain: "td.test", PermittedDNSDomains: []string{"svc.cluster.local"}},
		"short, no backdate": {Clock: clk, IntermediateLifetime: time.Minute, RootLifetime: time.Hour, Backdate: -1},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cur, err := ca.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			sc, err := ca.SuccessorConfig(cur, clk)
			if err != nil {
				t.Fatal(err)
			}
			next, err := ca.New(sc)
			if err != nil {
				t.Fatal(err)
			}
			if next.Fingerprint() == cur.Fingerprint() {
				t.Fatal("successor is the same CA")
			}
			ka, _ := ca.KeyAlgorithmOf(cur.Intermediate.PublicKey)
			kb, _ := ca.KeyAlgorithmOf(next.Intermediate.PublicKey)
			if ka != kb || cur.Intermediate.Subject.String() != next.Intermediate.Subject.String() ||
				cur.Root.Subject.String() != next.Root.Subject.String() {
				t.Errorf("successor %s %s, want %s %s", kb, next.Intermediate.Subject, ka, cur.Intermediate.Subject)
			}
			if len(cfg.PermittedDNSDomains) > 0 && (len(next.Intermediate.PermittedURIDomains) != 1 || next.Intermediate.PermittedURIDomains[0] != cfg.TrustDomain) {
				t.Errorf("successor URI constraints %v, want [%s]", next.Intermediate.PermittedURIDomains, cfg.TrustDomain)
			}
			if d := next.Intermediate.NotAfter.Sub(cur.Intermediate.NotAfter); d < 0 || d > time.Hour {
				t.Errorf("successor intermediate ends %s after the current one", d)
			}
		})
	}
}
