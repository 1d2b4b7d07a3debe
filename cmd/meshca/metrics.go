package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/rotator"
)

// leaderGauge is meshca_leader: 1 on the replica that holds the Lease (or
// runs without leader election), 0 on the others.
func leaderGauge(reg prometheus.Registerer) (prometheus.Gauge, error) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "meshca_leader",
		Help: "1 when this replica holds the Lease and runs the controllers, else 0.",
	})
	if err := reg.Register(g); err != nil {
		return nil, err
	}
	return g, nil
}

// leading is a leader-elected runnable: the manager starts it when this
// replica wins the Lease, and it holds the gauge at 1 until it stops.
func leading(g prometheus.Gauge) func(context.Context) error {
	return func(ctx context.Context) error {
		g.Set(1)
		<-ctx.Done()
		g.Set(0)
		return nil
	}
}

// caCollector exports meshca_ca_not_after_timestamp_seconds{slot,cert} for
// every CA slot that holds a CA, and meshca_ca_external_expiring. It reads
// the state at scrape time through get, so a rotation shows without anyone
// updating a gauge.
type caCollector struct {
	get    func() *ca.State
	policy rotator.CAPolicy
	now    func() time.Time
	desc   *prometheus.Desc
	// external is meshca_ca_external_expiring.
	external *prometheus.Desc
}

var _ prometheus.Collector = (*caCollector)(nil)

// newCACollector reads the state through get; policy is the rotator's, to
// tell when a bring-your-own CA would have been rotated.
func newCACollector(get func() *ca.State, policy rotator.CAPolicy) *caCollector {
	return &caCollector{get: get, policy: policy, now: time.Now,
		desc: prometheus.NewDesc(
			"meshca_ca_not_after_timestamp_seconds",
			"Expiry of the CA certificates by slot (current, next, previous) and certificate (root, intermediate).",
			[]string{"slot", "cert"}, nil),
		external: prometheus.NewDesc(
			"meshca_ca_external_expiring",
			"1 when the current CA is a bring-your-own CA, no next CA is loaded, and it is past the time meshca would have "+
				"prepared a successor for a CA of its own; meshca does not replace it, its owner must. Else 0.",
			nil, nil),
	}
}

func (c *caCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desc
	ch <- c.external
}

func (c *caCollector) Collect(ch chan<- prometheus.Metric) {
	state := c.get()
	if state == nil {
		return
	}
	expiring := 0.0
	if at, ok := rotator.ExternalExpiring(rotator.ViewOf(state), c.policy); ok && !at.After(c.now()) {
		expiring = 1
	}
	ch <- prometheus.MustNewConstMetric(c.external, prometheus.GaugeValue, expiring)
	for _, slot := range ca.Slots {
		cur := state.Get(slot)
		if cur == nil {
			continue
		}
		if cur.Root != nil {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(cur.Root.NotAfter.Unix()), string(slot), "root")
		}
		if cur.Intermediate != nil {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(cur.Intermediate.NotAfter.Unix()), string(slot), "intermediate")
		}
	}
}
