package controller

import (
	"context"
	"fmt"
	"net"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshca/meshca/authority"
	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/issuer"
	"github.com/meshca/meshca/rotator"
)

// ServingCertificate keeps meshca's own webhook serving certificate (profile
// serving) in a kubernetes.io/tls Secret in meshca's namespace, renewing it
// on schedule. Every replica's webhook server reloads it from that Secret.
// It runs on the leader.
type ServingCertificate struct {
	// Client writes the Secret; Reader reads it, directly from the API
	// server (meshca's namespace may be outside the cache). A nil Reader
	// means Client.
	Client client.Client
	Reader client.Reader
	Issuer Issuer
	Trust  *authority.Trust
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
	// Metrics counts the Secret's writes with the controllers' (nil: not
	// counted).
	Metrics *Metrics
}

// Start keeps the certificate current until ctx is done.
func (s *ServingCertificate) Start(ctx context.Context) error {
	if s.Clock == nil {
		s.Clock = clock.RealClock{}
	}
	if s.Retry == 0 {
		s.Retry = 10 * time.Second
	}
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

// ensure issues the certificate if it is missing, drifted or due, and
// returns how long until it is due.
func (s *ServingCertificate) ensure(ctx context.Context) (time.Duration, error) {
	var dns, ips []string
	var ipAddrs []net.IP
	for _, n := range s.Names {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip.String())
			ipAddrs = append(ipAddrs, ip)
		} else {
			dns = append(dns, n)
		}
	}
	// Nothing is written before the first bundle: on a new leader that is
	// the CA Secret as its CA rotator reads it, not as it was at start.
	trust, err := s.Trust.Snapshot(ctx)
	if err != nil {
		return 0, err
	}
	reader := s.Reader
	if reader == nil {
		reader = s.Client
	}
	w := &secretWriter{client: readThrough{s.Client, reader}, reader: reader, metrics: s.Metrics}
	ref := secretRef{s.Namespace, s.Name}
	existing, err := w.get(ctx, ref)
	if err != nil {
		return 0, err
	}
	observed := rotator.Observe(existing != nil, nil, nil)
	if existing != nil {
		observed = rotator.Observe(true, existing.Data[corev1.TLSCertKey], existing.Data[corev1.TLSPrivateKeyKey])
	}
	now := s.Clock.Now()
	d := rotator.Evaluate(rotator.Input{Now: now, Observed: observed, Wanted: rotator.Wanted{DNSNames: dns, IPAddresses: ips},
		Roots: trust.Pool}, rotator.DefaultChecks)
	if !d.Needed {
		return d.RenewAt.Sub(now), nil
	}
	b, err := s.Issuer.Issue(ctx, issuer.Request{Profile: issuer.ProfileServing, Namespace: s.Namespace, DNSNames: dns, IPAddresses: ipAddrs})
	if err != nil {
		return 0, fmt.Errorf("issue webhook serving certificate: %w", err)
	}
	renewAt := rotator.RenewalTime(b.Leaf.NotBefore, b.Leaf.NotAfter, rotator.Policy{}, b.Leaf.SerialNumber.Bytes())
	want := desiredSecret{
		ref: ref, typ: corev1.SecretTypeTLS,
		data: map[string][]byte{corev1.TLSCertKey: b.CertificatePEM, corev1.TLSPrivateKeyKey: b.PrivateKeyPEM, corev1.ServiceAccountRootCAKey: trust.PEM},
		annotations: map[string]string{
			meta.AnnotationSerial:   serialHex(b.Leaf),
			meta.AnnotationNotAfter: b.Leaf.NotAfter.UTC().Format(time.RFC3339),
			meta.AnnotationRenewAt:  renewAt.UTC().Format(time.RFC3339),
			meta.AnnotationIssuer:   b.IssuerFingerprint,
			meta.AnnotationSource:   "meshca/" + s.Namespace + "/webhook",
			meta.AnnotationReason:   d.Reason,
		},
	}
	if _, err := w.apply(ctx, existing, want); err != nil {
		return 0, err
	}
	log.FromContext(ctx).Info("webhook serving certificate issued", "secret", ref.String(), "reason", d.Reason, "notAfter", b.Leaf.NotAfter)
	return renewAt.Sub(now), nil
}

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
