package controller

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/authority"
	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/issuer"
	"github.com/meshca/meshca/rotator"
)

// Issuer signs certificates; *issuer.Issuer (whatever its Signer) is one.
type Issuer interface {
	Issue(ctx context.Context, req issuer.Request) (*issuer.Bundle, error)
}

var _ Issuer = (*issuer.Issuer)(nil)

// certKeeper keeps one certificate Secret current for a source object:
// observe the Secret, evaluate rotator's ordered checks, claim the Secret,
// issue, write, record an Event and publish metrics. The TLSContext and
// workload reconcilers share it, so both renew for the same reasons and
// leave the same bookkeeping on their Secrets.
type certKeeper struct {
	secrets  *secretWriter
	issuer   Issuer
	recorder EventRecorder
	metrics  *Metrics
	// limiter caps issuance; nil means unlimited.
	limiter *rate.Limiter
	clock   clock.PassiveClock

	// namespaces reads the source's Namespace for the DNS suffixes its
	// administrator allows: the manager's cached client.
	namespaces client.Reader
	// holders looks up whether the recorded holder of a contested Secret
	// still wants it (see decideClaim); nil looks up none.
	holders holderLookup
	// meshcaOwn is set on the keeper of meshca's own certificate (the
	// webhook's serving Secret, reserved to it): no claim is decided,
	// whatever holder the Secret records, since no source may name it.
	meshcaOwn bool
}

// newCertKeeper builds the keeper of a reconciler from its dependencies,
// filling their documented defaults in place: a nil reader becomes the
// manager's direct API reader, a nil clock the real clock.
func newCertKeeper(mgr ctrl.Manager, c client.Client, reader *client.Reader, clk *clock.PassiveClock, iss Issuer, rec EventRecorder, m *Metrics, lim *rate.Limiter, reserved ReservedSecrets, holders holderLookup) *certKeeper {
	if *clk == nil {
		*clk = clock.RealClock{}
	}
	if *reader == nil {
		*reader = mgr.GetAPIReader()
	}
	return &certKeeper{
		secrets:  &secretWriter{client: c, reader: *reader, metrics: m, reserved: reserved},
		issuer:   iss,
		recorder: rec,
		metrics:  m,
		limiter:  lim,
		clock:    *clk,
		// Namespaces are read from the cache, like the reconcilers' own.
		namespaces: c,
		holders:    holders,
	}
}

// certSpec is one certificate a source object wants kept in a Secret.
type certSpec struct {
	// Source receives the Events; SourceKey is its meshca.io/source value.
	Source    client.Object
	SourceKey string
	Ref       secretRef
	Profile   issuer.Profile
	SPIFFEID  string
	DNSNames  []string
	// IPAddresses are IP SANs (meshca's own serving certificate only).
	IPAddresses []net.IP
	// Duration, RenewBefore and KeyAlgorithm: zero means the defaults.
	Duration     time.Duration
	RenewBefore  time.Duration
	KeyAlgorithm string
	// Owners, when set, become the Secret's owner references.
	Owners []metav1.OwnerReference
}

// keepResult is what keep left in the Secret.
type keepResult struct {
	// After is how long until the certificate next needs a look; zero
	// when nothing was written (refused, conflict) and only a change of
	// the source or the Secret brings it back.
	After time.Duration
	// Serial (as meshca.io/serial) and Reason (meshca.io/reason) of the
	// certificate now in the Secret; empty when there is none.
	Serial, Reason string
	// Issued is true when this call signed a new certificate.
	Issued bool
	// Bundle is the digest (bundleDigest) of the ca.crt now in the
	// Secret; IssuedBundle that of the ca.crt when the certificate was
	// issued (meshca.io/issued-bundle; empty on Secrets issued before it
	// was recorded).
	Bundle, IssuedBundle string
}

// keep brings the Secret of w to a current certificate. Refusals (foreign
// Secret, policy, conflict) are Warning Events and a nil error; only
// failures worth a retry return an error.
func (k *certKeeper) keep(ctx context.Context, w certSpec, trust *authority.Snapshot) (kept keepResult, err error) {
	// On a second look the certificate signed on the first is dropped.
	err = retryOnCacheMiss(func() (err error) {
		kept, err = k.keepOnce(ctx, w, trust)
		return err
	})
	return kept, err
}

func (k *certKeeper) keepOnce(ctx context.Context, w certSpec, trust *authority.Snapshot) (keepResult, error) {
	existing, err := k.secrets.observe(ctx, w.Ref)
	if k.refused(w.Source, err) {
		return keepResult{}, nil
	}
	if err != nil {
		return keepResult{}, err
	}
	policy := rotator.Policy{RenewBefore: w.RenewBefore}
	observed := rotator.Observe(false, nil, nil)
	renew := ""
	if existing != nil {
		observed = rotator.Observe(true, existing.Data[corev1.TLSCertKey], existing.Data[corev1.TLSPrivateKeyKey])
		renew = existing.Annotations[meta.AnnotationRenewRequested]
	}
	wanted := rotator.Wanted{DNSNames: w.DNSNames, KeyAlgorithm: w.KeyAlgorithm}
	if w.SPIFFEID != "" {
		wanted.URIs = []string{w.SPIFFEID}
	}
	for _, ip := range w.IPAddresses {
		wanted.IPAddresses = append(wanted.IPAddresses, ip.String())
	}
	decision := rotator.Evaluate(rotator.Input{
		Now: k.clock.Now(), Observed: observed, Wanted: wanted, Roots: trust.Pool, Policy: policy, RenewRequested: renew,
	}, rotator.DefaultChecks)

	holder := w.SourceKey
	if existing != nil && !k.meshcaOwn {
		kind, ns, _, _ := parseSourceKey(w.SourceKey)
		v, err := k.claim(ctx, claimant{
			Key: w.SourceKey, Kind: kind, Namespace: ns, Use: useCertificate,
			Satisfied: !decision.Needed, CreatedFor: k.createdFor(w, existing, observed.Leaf),
		}, existing)
		if err != nil {
			return keepResult{}, err
		}
		if !v.Write {
			k.conflict(w.Source, existing, v)
			return keepResult{}, nil
		}
		holder = v.Holder
	}
	if !decision.Needed {
		return k.refresh(ctx, w, existing, observed.Leaf, decision.RenewAt, trust, holder)
	}

	suffixes, err := namespaceSuffixes(ctx, k.namespaces, w.Source.GetNamespace())
	if err != nil {
		return keepResult{}, err
	}
	if k.limiter != nil {
		if err := k.limiter.Wait(ctx); err != nil {
			return keepResult{}, err
		}
	}
	// Read before signing: a certificate's NotAfter is at least this plus
	// the requested duration unless the CA cut it short (dueAtOnce).
	asked := k.clock.Now()
	b, err := k.issuer.Issue(ctx, issuer.Request{
		Profile:      w.Profile,
		Namespace:    w.Source.GetNamespace(),
		SPIFFEID:     w.SPIFFEID,
		DNSNames:     w.DNSNames,
		IPAddresses:  w.IPAddresses,
		Duration:     w.Duration,
		KeyAlgorithm: ca.KeyAlgorithm(w.KeyAlgorithm),
		// The policy is a pure function of the request: what the
		// namespace's administrator allows is resolved here.
		NamespaceSuffixes: suffixes,
	})
	if errors.Is(err, issuer.ErrPolicy) {
		k.metrics.Rejected.WithLabelValues("policy").Inc()
		k.recorder.Eventf(w.Source, nil, corev1.EventTypeWarning, EventPolicyRejected, "Issue", "Secret %s: %v", w.Ref, err)
		return keepResult{}, nil
	}
	if interrupted(ctx, err) {
		return keepResult{}, err
	}
	if err != nil {
		k.metrics.Failures.WithLabelValues(string(w.Profile), "sign").Inc()
		k.recorder.Eventf(w.Source, nil, corev1.EventTypeWarning, EventIssueFailed, "Issue", "Secret %s: %v", w.Ref, err)
		return keepResult{}, err
	}
	renewAt := rotator.RenewalTime(b.Leaf.NotBefore, b.Leaf.NotAfter, policy, b.Leaf.SerialNumber.Bytes())
	if k.dueAtOnce(w, b.Leaf, asked, renewAt) {
		// Written, it would be renewed at once, and again, for as long as
		// the object asks: the certificate is dropped instead.
		k.metrics.Rejected.WithLabelValues("spec").Inc()
		k.recorder.Eventf(w.Source, nil, corev1.EventTypeWarning, EventInvalidSpec, "Issue",
			"Secret %s: a certificate of %s with %s=%s and %s=%s would be due for renewal %s after it is issued; "+
				"nothing was written: lengthen %s or shorten %s",
			w.Ref, b.Leaf.NotAfter.Sub(b.Leaf.NotBefore), meta.AnnotationDuration, w.Duration, meta.AnnotationRenewBefore, w.RenewBefore,
			renewAt.Sub(k.clock.Now()).Round(time.Second), meta.AnnotationDuration, meta.AnnotationRenewBefore)
		return keepResult{}, nil
	}
	// ca.crt always comes from Trust, the one source of the bundle: the
	// issuer's CAPEM may run ahead of or behind it during a CA change.
	d := tlsSecret(w, b.CertificatePEM, b.PrivateKeyPEM, trust.PEM, b.Leaf, b.IssuerFingerprint, decision.Reason, renewAt)
	bundle := bundleDigest(trust.PEM)
	d.annotations[meta.AnnotationIssuedBundle] = bundle
	if _, err := k.secrets.apply(ctx, existing, d); err != nil {
		if !errors.Is(err, errExists) && !interrupted(ctx, err) {
			k.metrics.Failures.WithLabelValues(string(w.Profile), "write").Inc()
		}
		return keepResult{}, err
	}
	k.metrics.Issued.WithLabelValues(string(w.Profile), decision.Reason).Inc()
	reason, verb := EventRenewed, "renewed"
	if decision.Reason == rotator.ReasonMissing {
		reason, verb = EventIssued, "issued"
	}
	k.recorder.Eventf(w.Source, nil, corev1.EventTypeNormal, reason, "Issue",
		"Secret %s: certificate %s (%s: %s), serial %s, valid until %s",
		w.Ref, verb, decision.Reason, decision.Message, serialHex(b.Leaf), b.Leaf.NotAfter.UTC().Format(time.RFC3339))
	k.metrics.setExpiry(w.SourceKey, w.Ref, b.Leaf, renewAt)
	return keepResult{After: k.until(renewAt), Serial: serialHex(b.Leaf), Reason: decision.Reason, Issued: true, Bundle: bundle, IssuedBundle: bundle}, nil
}

// minRenewalShare is the least part of a new certificate's lifetime that
// must pass before it is due for renewal.
const minRenewalShare = 10

// dueAtOnce reports whether a certificate just signed for w would be due
// for renewal (renewAt) before a tenth of its lifetime has passed: with
// meshca.io/duration too short for the issuer's backdate (which counts in
// the lifetime), or meshca.io/renew-before close to the lifetime, every
// renewal would make another at once. Only what the object asked for is
// refused: with the daemon's defaults, or a lifetime cut short by a CA
// near its end, the certificate is kept.
func (k *certKeeper) dueAtOnce(w certSpec, leaf *x509.Certificate, asked, renewAt time.Time) bool {
	if w.Duration <= 0 && w.RenewBefore <= 0 {
		return false
	}
	now := k.clock.Now()
	// Measured from asked, the time before signing: measured from now, a
	// signing slower than a second (a loaded machine) made every
	// certificate look cut short, and a looping spec was written.
	if w.Duration > 0 && leaf.NotAfter.Before(asked.Add(w.Duration-time.Second)) {
		return false // cut short by the CA, not by the object
	}
	lifetime := leaf.NotAfter.Sub(leaf.NotBefore)
	return renewAt.Sub(now) < lifetime/minRenewalShare
}

// refresh keeps a good certificate's Secret current: ca.crt follows the
// trust bundle and the bookkeeping annotations stay right; holder is the
// meshca.io/source the claim decided on.
func (k *certKeeper) refresh(ctx context.Context, w certSpec, existing *corev1.Secret, leaf *x509.Certificate, renewAt time.Time, trust *authority.Snapshot, holder string) (keepResult, error) {
	reason := existing.Annotations[meta.AnnotationReason]
	d := tlsSecret(w, existing.Data[corev1.TLSCertKey], existing.Data[corev1.TLSPrivateKeyKey], trust.PEM,
		leaf, existing.Annotations[meta.AnnotationIssuer], reason, renewAt)
	d.annotations[meta.AnnotationSource] = holder
	issuedBundle := existing.Annotations[meta.AnnotationIssuedBundle]
	if issuedBundle != "" {
		d.annotations[meta.AnnotationIssuedBundle] = issuedBundle
	}
	if holder != w.SourceKey {
		// Refreshed for a source that shares it: the holder's owners
		// stay, or the two would take turns rewriting them.
		d.owners = nil
	}
	wrote, err := k.secrets.apply(ctx, existing, d)
	if err != nil {
		return keepResult{}, err
	}
	if wrote && string(existing.Data[corev1.ServiceAccountRootCAKey]) != string(trust.PEM) {
		k.recorder.Eventf(w.Source, nil, corev1.EventTypeNormal, EventBundleUpdated, "Issue", "Secret %s: ca.crt follows the new trust bundle", w.Ref)
	}
	k.metrics.setExpiry(w.SourceKey, w.Ref, leaf, renewAt)
	return keepResult{After: k.until(renewAt), Serial: serialHex(leaf), Reason: reason, Bundle: bundleDigest(trust.PEM), IssuedBundle: issuedBundle}, nil
}

// createdFor reports evidence that meshca created the Secret s for the
// source of w: this process wrote it last for that source, or it is owned
// by the source (a workload's owner reference), or the certificate in it
// carries the source's identity (its SPIFFE ID, which names the Secret's
// own namespace). A Secret whose meshca.io/source was lost or edited goes
// back to that source and to no other.
func (k *certKeeper) createdFor(w certSpec, s *corev1.Secret, leaf *x509.Certificate) bool {
	if k.secrets.createdFor(s, w.SourceKey) {
		return true
	}
	for _, o := range w.Owners {
		if o.Controller != nil && *o.Controller && slices.ContainsFunc(s.OwnerReferences, func(r metav1.OwnerReference) bool {
			return r.UID == o.UID && r.Kind == o.Kind && r.Controller != nil && *r.Controller
		}) {
			return true
		}
	}
	if leaf == nil || s.Namespace != w.Source.GetNamespace() {
		return false
	}
	return slices.ContainsFunc(leaf.URIs, func(u *url.URL) bool { return u.String() == w.SPIFFEID })
}

// claim decides whether c may write the existing managed Secret s (see
// decideClaim): the holder it records is looked up only when it is not
// the claimant.
func (k *certKeeper) claim(ctx context.Context, c claimant, s *corev1.Secret) (claimVerdict, error) {
	h := parseHolder(s.Annotations[meta.AnnotationSource])
	if k.holders != nil && h.Key != c.Key {
		var err error
		if h, err = k.holders.lookup(ctx, h, secretRef{s.Namespace, s.Name}); err != nil {
			return claimVerdict{}, err
		}
	}
	return decideClaim(s.Namespace, c, h), nil
}

// conflict records that the claim on Secret s was refused: another source
// holds it, and v.Rule says why that holder keeps it.
func (k *certKeeper) conflict(src client.Object, s *corev1.Secret, v claimVerdict) {
	k.metrics.Conflicts.WithLabelValues("owner").Inc()
	holder := v.Holder
	if holder == "" {
		holder = "no source"
	}
	k.recorder.Eventf(src, nil, corev1.EventTypeWarning, EventSecretConflict, "Issue",
		"Secret %s/%s is held by %s and is not written for this object (%s)", s.Namespace, s.Name, holder, v.Rule)
}

// refused records the refusals that come before any claim, and reports
// whether err was one: a Secret meshca does not own is in the way, or the
// reference names one of meshca's own Secrets.
func (k *certKeeper) refused(src client.Object, err error) bool {
	var fe *errForeignSecret
	var re *errReserved
	switch {
	case errors.As(err, &fe):
		k.metrics.Conflicts.WithLabelValues("foreign").Inc()
		k.recorder.Eventf(src, nil, corev1.EventTypeWarning, EventSecretConflict, "Issue", "%v", err)
	case errors.As(err, &re):
		k.metrics.Conflicts.WithLabelValues("reserved").Inc()
		k.recorder.Eventf(src, nil, corev1.EventTypeWarning, EventSecretReserved, "Issue", "%v", err)
	default:
		return false
	}
	return true
}

// until is how long to wait for t, at least a second.
func (k *certKeeper) until(t time.Time) time.Duration {
	d := t.Sub(k.clock.Now())
	if d < time.Second {
		d = time.Second
	}
	return d
}

// tlsSecret is the kubernetes.io/tls Secret of a certificate, with the
// annotations that make its state readable with kubectl.
func tlsSecret(w certSpec, certPEM, keyPEM, bundle []byte, leaf *x509.Certificate, issuerFP, reason string, renewAt time.Time) desiredSecret {
	ann := map[string]string{
		meta.AnnotationSerial:   serialHex(leaf),
		meta.AnnotationNotAfter: leaf.NotAfter.UTC().Format(time.RFC3339),
		meta.AnnotationRenewAt:  renewAt.UTC().Format(time.RFC3339),
		meta.AnnotationIssuer:   issuerFP,
		meta.AnnotationSource:   w.SourceKey,
	}
	if len(leaf.URIs) > 0 {
		ann[meta.AnnotationSPIFFEID] = leaf.URIs[0].String()
	}
	if reason != "" {
		ann[meta.AnnotationReason] = reason
	}
	return desiredSecret{
		ref: w.Ref,
		typ: corev1.SecretTypeTLS,
		data: map[string][]byte{
			corev1.TLSCertKey:              certPEM,
			corev1.TLSPrivateKeyKey:        keyPEM,
			corev1.ServiceAccountRootCAKey: bundle,
		},
		annotations: ann,
		owners:      w.Owners,
	}
}

// bundleDigest names a trust bundle in meshca.io/issued-bundle and
// meshca.io/cert-revision: the first 8 bytes of its SHA-256, in hex.
func bundleDigest(pem []byte) string {
	sum := sha256.Sum256(pem)
	return hex.EncodeToString(sum[:8])
}

// serialHex formats a serial number the way openssl x509 -serial does.
func serialHex(c *x509.Certificate) string {
	return fmt.Sprintf("%X", c.SerialNumber)
}
