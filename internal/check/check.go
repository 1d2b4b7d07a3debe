package check

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/meshca/meshca/ca"
)

// Status is the outcome of one check.
type Status string

// The outcomes, from good to bad. Skipped means the check could not be run
// from where the command runs; it does not make the run unhealthy.
const (
	OK      Status = "OK"
	Skipped Status = "SKIP"
	Warn    Status = "WARN"
	Fail    Status = "FAIL"
)

// Result is what one check found.
type Result struct {
	Name    string `json:"name"`
	Status  Status `json:"status"`
	Message string `json:"message"`
}

// Config says what to check and how strictly. Zero fields mean the
// documented defaults.
type Config struct {
	// Client reads the cluster; required.
	Client kubernetes.Interface
	// Namespace is meshca's: the CA Secret and the Lease "meshca".
	Namespace string
	// CASecret is the CA Secret's name; empty: ca.DefaultSecretName.
	CASecret string
	// WebhookConfiguration names the MutatingWebhookConfiguration; empty:
	// "meshca".
	WebhookConfiguration string
	// Namespaces selects the namespaces whose trust bundle ConfigMap and
	// managed Secrets are checked; nil: every namespace.
	Namespaces labels.Selector
	// CAExpiryThreshold: a signing CA that expires sooner warns (unless a
	// next CA is published). Zero: 30 days.
	CAExpiryThreshold time.Duration
	// SecretExpiryThreshold: a managed certificate that expires sooner
	// warns; an expired one fails. Zero: 1 hour.
	SecretExpiryThreshold time.Duration
	// InCluster is true when Service addresses resolve where the command
	// runs; otherwise a webhook behind a Service is not dialled.
	InCluster bool
	// Timeout bounds each connection attempt; zero: 5 seconds.
	Timeout time.Duration
	// Now is the time of the run; zero: time.Now().
	Now time.Time
	// DialTLS connects to a webhook; nil: tls.Dialer with Timeout.
	DialTLS func(ctx context.Context, addr string, cfg *tls.Config) error
}

func (c *Config) defaults() {
	if c.CASecret == "" {
		c.CASecret = ca.DefaultSecretName
	}
	if c.WebhookConfiguration == "" {
		c.WebhookConfiguration = "meshca"
	}
	if c.Namespaces == nil {
		c.Namespaces = labels.Everything()
	}
	if c.CAExpiryThreshold == 0 {
		c.CAExpiryThreshold = 30 * 24 * time.Hour
	}
	if c.SecretExpiryThreshold == 0 {
		c.SecretExpiryThreshold = time.Hour
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Now.IsZero() {
		c.Now = time.Now()
	}
	if c.DialTLS == nil {
		timeout := c.Timeout
		c.DialTLS = func(ctx context.Context, addr string, cfg *tls.Config) error {
			d := &tls.Dialer{Config: cfg}
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return err
			}
			return conn.Close()
		}
	}
}

// run is the state one Run shares between checks: the CA and the selected
// namespaces are read once.
type run struct {
	cfg   Config
	state *ca.State
	caErr error
	// namespaces are those --namespace-selector selects, listed by the
	// first check that needs them (selected).
	namespaces    []corev1.Namespace
	namespacesErr error
	listed        bool
}

// checks run in this order; later ones use the CA the "ca" check read.
var checks = []struct {
	name string
	fn   func(context.Context, *run) (Status, string)
}{
	{"crd", checkCRD},
	{"ca", checkCA},
	{"leader", checkLeader},
	{"webhook-config", checkWebhookConfig},
	{"webhook-reachable", checkWebhookReachable},
	{"trust-bundles", checkBundles},
	{"secrets", checkSecrets},
}

// Run runs every check and returns their results in order.
func Run(ctx context.Context, cfg Config) []Result {
	cfg.defaults()
	r := &run{cfg: cfg}
	out := make([]Result, 0, len(checks))
	for _, c := range checks {
		st, msg := c.fn(ctx, r)
		out = append(out, Result{Name: c.name, Status: st, Message: msg})
	}
	return out
}

// Exit codes of `meshca check`.
const (
	ExitHealthy  = 0
	ExitFailed   = 1
	ExitWarnings = 2
)

// ExitCode is ExitFailed when any check failed, else ExitWarnings when any
// warned, else ExitHealthy (skipped checks count as healthy).
func ExitCode(rs []Result) int {
	code := ExitHealthy
	for _, r := range rs {
		switch r.Status {
		case Fail:
			return ExitFailed
		case Warn:
			code = ExitWarnings
		}
	}
	return code
}

// Text writes one line per check, then a summary line.
func Text(w io.Writer, rs []Result) error {
	for _, r := range rs {
		if _, err := fmt.Fprintf(w, "%-4s  %-17s  %s\n", r.Status, r.Name, r.Message); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintln(w, summary(rs))
	return err
}

// JSON writes {"results": [...], "exitCode": N}.
func JSON(w io.Writer, rs []Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Results  []Result `json:"results"`
		ExitCode int      `json:"exitCode"`
	}{rs, ExitCode(rs)})
}

func summary(rs []Result) string {
	switch ExitCode(rs) {
	case ExitFailed:
		return "meshca is not healthy (exit 1)"
	case ExitWarnings:
		return "meshca works, with warnings (exit 2)"
	}
	return "meshca is healthy"
}

// certSet is a set of certificates by their raw bytes.
type certSet map[string]bool

func setOf(certs []*x509.Certificate) certSet {
	s := certSet{}
	for _, c := range certs {
		s[string(c.Raw)] = true
	}
	return s
}

// contains reports whether s holds every certificate of o.
func (s certSet) contains(o certSet) bool {
	for k := range o {
		if !s[k] {
			return false
		}
	}
	return true
}

func until(now, t time.Time) string {
	d := t.Sub(now)
	if d < 0 {
		return "expired " + (-d).Round(time.Second).String() + " ago"
	}
	if d > 48*time.Hour {
		return fmt.Sprintf("in %dd", int(d.Hours()/24))
	}
	return "in " + d.Round(time.Second).String()
}
