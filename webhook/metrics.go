package webhook

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the webhook's Prometheus collectors.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	rejected *prometheus.CounterVec
}

// Reasons recorded in the rejection counter.
const (
	rejectBusy     = "busy"      // 429: an in-flight cap was reached
	rejectTooLarge = "too_large" // 413: body over MaxRequestBytes
	rejectSlow     = "slow"      // 408: body not received within ReadTimeout
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshca",
			Subsystem: "webhook",
			Name:      "requests_total",
			Help:      "Admission requests by workload kind (Deployment, StatefulSet, DaemonSet, other, unknown) and result (patched, unchanged, ignored, denied, badrequest, busy).",
		}, []string{"kind", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "meshca",
			Subsystem: "webhook",
			Name:      "request_duration_seconds",
			Help:      "Time from receiving an admission request to writing its response, by workload kind.",
			Buckets:   []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"kind"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshca",
			Subsystem: "webhook",
			Name:      "rejected_total",
			Help:      "Requests the webhook refused to protect itself, by reason: busy (429, an in-flight cap reached), too_large (413), slow (408, body not received in time).",
		}, []string{"reason"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.rejected} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register webhook metrics: %w", err)
		}
	}
	return m, nil
}
