package controller

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshca/meshca/issuer"
)

// Metrics are the controllers' Prometheus metrics.
type Metrics struct {
	Issued    *prometheus.CounterVec
	Failures  *prometheus.CounterVec
	Conflicts *prometheus.CounterVec
	Writes    *prometheus.CounterVec
	NotAfter  *prometheus.GaugeVec
	RenewAt   *prometheus.GaugeVec
	Rejected  *prometheus.CounterVec
	// BundleWrites counts writes to trust bundle ConfigMaps by operation;
	// BundleConflicts counts refusals to overwrite a foreign one.
	BundleWrites    *prometheus.CounterVec
	BundleConflicts prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, for tests that only read them).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_certificates_issued_total",
			Help: "Certificates signed and written, by profile and reason (Missing is a first issue; the others are renewals or repairs).",
		}, []string{"profile", "reason"}),
		Failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_certificate_failures_total",
			Help: "Failed attempts to issue or write a certificate, by profile and cause.",
		}, []string{"profile", "cause"}),
		Conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_secret_conflicts_total",
			Help: "Writes refused because the Secret is not meshca's (foreign) or is held by another source (owner).",
		}, []string{"kind"}),
		Writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_secret_writes_total",
			Help: "Writes to Secrets by operation (create, update, delete).",
		}, []string{"operation"}),
		NotAfter: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshca_certificate_not_after_timestamp_seconds",
			Help: "Expiry of each managed certificate, by Secret.",
		}, []string{"namespace", "secret"}),
		RenewAt: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshca_certificate_renew_at_timestamp_seconds",
			Help: "Scheduled renewal of each managed certificate, by Secret.",
		}, []string{"namespace", "secret"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_requests_rejected_total",
			Help: "Requests refused before signing, by rule (policy, spec, cross-namespace).",
		}, []string{"rule"}),
		BundleWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshca_trust_bundle_writes_total",
			Help: "Writes to meshca-trust-bundle ConfigMaps by operation (create, update).",
		}, []string{"operation"}),
		BundleConflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshca_trust_bundle_conflicts_total",
			Help: "Refusals to overwrite a meshca-trust-bundle ConfigMap that is not meshca's.",
		}),
	}
	// Series that mean trouble exist at 0 from the start, so that alerts on
	// their rate see a baseline rather than a series that appears later.
	for _, p := range []issuer.Profile{issuer.ProfileGateway, issuer.ProfileWorkload} {
		for _, cause := range []string{"sign", "write"} {
			m.Failures.WithLabelValues(string(p), cause)
		}
	}
	for _, kind := range []string{"foreign", "owner"} {
		m.Conflicts.WithLabelValues(kind)
	}
	for _, rule := range []string{"policy", "spec", "cross-namespace"} {
		m.Rejected.WithLabelValues(rule)
	}
	if reg != nil {
		reg.MustRegister(m.Issued, m.Failures, m.Conflicts, m.Writes, m.NotAfter, m.RenewAt, m.Rejected, m.BundleWrites, m.BundleConflicts)
	}
	return m
}
