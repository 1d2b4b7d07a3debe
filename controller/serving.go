package controller

import (
	"context"
	"fmt"
	"net"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshca/meshca/authority"
	"github.com/meshca/meshca/issuer"
)

// ServingCertificate keeps meshca's own webhook serving certificate (profile
// serving) in a kubernetes.io/tls Secret in meshca's namespace, renewing it
// on schedule. Every replica's webhook server reloads it from that Secret.
// It runs on the leader. The certificate is kept by the same certKeeper as
// every tenant's, with the differences that make it meshca's: the Secret is
// one of meshca's reserved ones, which only this keeper may write, no claim
// is decided (no source may hold it), issuance is not paced by the tenants'
// limiter, and its Events regard the Secret itself.
type ServingCertificate struct {
	// Client writes the Secret; Reader reads it, directly from the API
	// server (meshca's namespace may be outside the cache). A nil Reader
	// means Client.
	Client client.Client
	Reader client.Reader
	Issuer Issuer
	Trust  *authority.Trust
	// Recorder records the Events of the certificate on its Secret; nil
	// records none.
	Recorder EventRecorder
	// Namespace and Name of the Secret.
	Namespace, Name string
	// Names are DNS names or IP addresses of the webhook.
	Names []string
	// Clock; nil means the real clock.
	Clock clock.WithTicker
	// Retry is the wait after a failure; 0 means 10s.
	Retry time.Duration
	// Changed, when set, makes the loop look again at once (the trust
	// bundle changed).
	Changed <-chan struct{}
	// Metrics counts the Secret's writes and exports its expiry with the
	// controllers' (nil: a private, unregistered set).
	Metrics *Metrics

	keeper *certKeeper
	spec   certSpec
}

// Start keeps the certificate current until ctx is done.
func (s *ServingCertificate) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithValues("secret", s.Namespace+"/"+s.Name)
	for {
		wait, err := s.ensure(ctx)
		if err != nil {
			logger.Error(err, "webhook serving certificate")
			wait = s.Retry
		}
		t := s.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		case <-s.Changed:
			t.Stop()
		}
	}
}

// ensure keeps the certificate and returns how long until it next needs a
// look.
func (s *ServingCertificate) ensure(ctx context.Context) (time.Duration, error) {
	if s.keeper == nil {
		s.keeper, s.spec = s.newKeeper()
	}
	// Nothing is written before the first bundle: on a new leader that is
	// the CA Secret as its CA rotator reads it, not as it was at start.
	trust, err := s.Trust.Snapshot(ctx)
	if err != nil {
		return 0, err
	}
	kept, err := s.keeper.keep(ctx, s.spec, trust)
	if err != nil {
		return 0, fmt.Errorf("webhook serving certificate: %w", err)
	}
	if kept.After == 0 {
		// Refused (a Secret without meshca's label is in the way): the
		// Event says why; look again later.
		return s.Retry, nil
	}
	if kept.Issued {
		log.FromContext(ctx).Info("webhook serving certificate issued", "secret", s.spec.Ref.String(), "reason", kept.Reason, "serial", kept.Serial)
	}
	return kept.After, nil
}

// newKeeper fills the defaults and builds the keeper of meshca's own
// certificate and what it keeps, which does not change while meshca runs.
func (s *ServingCertificate) newKeeper() (*certKeeper, certSpec) {
	if s.Clock == nil {
		s.Clock = clock.RealClock{}
	}
	if s.Retry == 0 {
		s.Retry = 10 * time.Second
	}
	reader := s.Reader
	if reader == nil {
		reader = s.Client
	}
	m := s.Metrics
	if m == nil {
		m = NewMetrics(nil)
	}
	rec := s.Recorder
	if rec == nil {
		rec = noEvents{}
	}
	var dns []string
	var ips []net.IP
	for _, n := range s.Names {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, n)
		}
	}
	spec := certSpec{
		// The Secret stands for meshca: the Events are on it.
		Source:      &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name}},
		SourceKey:   sourceKey(holderKindMeshca, s.Namespace, "webhook"),
		Ref:         secretRef{s.Namespace, s.Name},
		Profile:     issuer.ProfileServing,
		DNSNames:    dns,
		IPAddresses: ips,
	}
	return &certKeeper{
		// No reserved Secrets: this writer keeps one of them.
		secrets:    &secretWriter{client: readThrough{s.Client, reader}, reader: reader, metrics: m},
		issuer:     s.Issuer,
		recorder:   rec,
		metrics:    m,
		clock:      s.Clock,
		namespaces: reader,
		meshcaOwn:  true,
	}, spec
}

// noEvents records nothing.
type noEvents struct{}

func (noEvents) Eventf(runtime.Object, runtime.Object, string, string, string, string, ...any) {}

// readThrough is a client whose reads go to reader: the serving
// certificate's Secret is always read from the API server, never from a
// cache that may not hold meshca's namespace.
type readThrough struct {
	client.Client
	reader client.Reader
}

func (r readThrough) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	return r.reader.Get(ctx, key, obj, opts...)
}
