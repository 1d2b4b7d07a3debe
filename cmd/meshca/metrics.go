package main

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshca/meshca/ca"
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
// every CA slot that holds a CA. It reads the state at scrape time through
// get, so a rotation shows without anyone updating a gauge.
type caCollector struct {
	get  func() *ca.State
	desc *prometheus.Desc
}

var _ prometheus.Collector = (*caCollector)(nil)

func newCACollector(get func() *ca.State) *caCollector {
	return &caCollector{get: get, desc: prometheus.NewDesc(
		"meshca_ca_not_after_timestamp_seconds",
		"Expiry of the CA certificates by slot (current, next, previous) and certificate (root, intermediate).",
		[]string{"slot", "cert"}, nil)}
}

func (c *caCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *caCollector) Collect(ch chan<- prometheus.Metric) {
	state := c.get()
	if state == nil {
		return
	}
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
