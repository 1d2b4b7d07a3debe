package controller

import (
	"crypto/x509"
	"sync"
	"time"

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

	// expiry remembers which source last set each Secret's NotAfter and
	// RenewAt series, so the series go when the Secret or its source does.
	expiry expirySeries
}

// expirySeries tracks the Secrets that have NotAfter and RenewAt series and
// the source that keeps each. A source keeps one certificate Secret at a
// time (a TLSContext's spec.secret, a workload's Secret).
type expirySeries struct {
	mu       sync.Mutex
	bySecret map[secretRef]string
	bySource map[string]secretRef
}

// setExpiry publishes the expiry and renewal time of the certificate that
// source keeps in ref; the series of a Secret the source kept before go.
func (m *Metrics) setExpiry(source string, ref secretRef, leaf *x509.Certificate, renewAt time.Time) {
	m.expiry.mu.Lock()
	defer m.expiry.mu.Unlock()
	if m.expiry.bySecret == nil {
		m.expiry.bySecret, m.expiry.bySource = map[secretRef]string{}, map[string]secretRef{}
	}
	if old, ok := m.expiry.bySource[source]; ok && old != ref && m.expiry.bySecret[old] == source {
		m.deleteExpiryLocked(old)
	}
	m.expiry.bySource[source] = ref
	m.expiry.bySecret[ref] = source
	m.NotAfter.WithLabelValues(ref.Namespace, ref.Name).Set(float64(leaf.NotAfter.Unix()))
	m.RenewAt.WithLabelValues(ref.Namespace, ref.Name).Set(float64(renewAt.Unix()))
}

// forgetSource removes the series of the Secret that source keeps, if it
// still keeps it: the source is gone or no longer wants a certificate.
func (m *Metrics) forgetSource(source string) {
	m.expiry.mu.Lock()
	defer m.expiry.mu.Unlock()
	ref, ok := m.expiry.bySource[source]
	if !ok {
		return
	}
	delete(m.expiry.bySource, source)
	if m.expiry.bySecret[ref] == source {
		m.deleteExpiryLocked(ref)
	}
}

// forgetSecret removes the series of a Secret that is gone. Nil m (a writer
// without metrics) has none.
func (m *Metrics) forgetSecret(ref secretRef) {
	if m == nil {
		return
	}
	m.expiry.mu.Lock()
	defer m.expiry.mu.Unlock()
	m.deleteExpiryLocked(ref)
}

func (m *Metrics) deleteExpiryLocked(ref secretRef) {
	delete(m.expiry.bySecret, ref)
	m.NotAfter.DeleteLabelValues(ref.Namespace, ref.Name)
	m.RenewAt.DeleteLabelValues(ref.Namespace, ref.Name)
}

// The objects and operations of meshca's writes, as wrote takes them.
const (
	writeSecret    = "Secret"
	writeConfigMap = "ConfigMap"

	writeCreate = "create"
	writeUpdate = "update"
	writeDelete = "delete"
)

// wrote records one successful write (op) of a managed object of kind:
// every writer of Secrets and trust bundle ConfigMaps counts its writes
// here and nowhere else. Nil m records nothing.
func (m *Metrics) wrote(kind, op string) {
	if m == nil {
		return
	}
	switch kind {
	case writeConfigMap:
		m.BundleWrites.WithLabelValues(op).Inc()
	default:
		m.Writes.WithLabelValues(op).Inc()
	}
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
			Help: "Writes refused because the Secret is not meshca's (foreign), is held by another source (owner) or is one of meshca's own (reserved).",
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
			Help: "Requests refused, with nothing written, by rule (policy, spec, cross-namespace).",
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
	for _, kind := range []string{"foreign", "owner", "reserved"} {
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
