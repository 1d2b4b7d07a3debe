package check

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/ca/castore"
	"github.com/meshca/meshca/internal/meta"
)

// TLSContextGroupVersion is the API meshca watches TLSContexts in.
const TLSContextGroupVersion = "getambassador.io/v3alpha1"

// leaseName is the leader election Lease in meshca's namespace.
const leaseName = "meshca"

// selected lists the namespaces the selector selects, once per run.
func (r *run) selected(ctx context.Context) ([]corev1.Namespace, error) {
	if !r.listed {
		r.listed = true
		list, err := r.cfg.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: r.cfg.Namespaces.String()})
		if err != nil {
			r.namespacesErr = fmt.Errorf("list namespaces: %w", err)
		} else {
			r.namespaces = list.Items
		}
	}
	return r.namespaces, r.namespacesErr
}

func checkCRD(_ context.Context, r *run) (Status, string) {
	list, err := r.cfg.Client.Discovery().ServerResourcesForGroupVersion(TLSContextGroupVersion)
	if apierrors.IsNotFound(err) {
		return Fail, fmt.Sprintf("the API server does not serve %s: install the TLSContext CRD (tlscontexts.getambassador.io, Emissary's or the chart's)", TLSContextGroupVersion)
	}
	if err != nil {
		return Fail, fmt.Sprintf("discover %s: %v", TLSContextGroupVersion, err)
	}
	for _, res := range list.APIResources {
		if res.Name == "tlscontexts" {
			return OK, "tlscontexts.getambassador.io serves " + TLSContextGroupVersion
		}
	}
	return Fail, fmt.Sprintf("%s is served but has no tlscontexts resource", TLSContextGroupVersion)
}

func checkCA(ctx context.Context, r *run) (Status, string) {
	store := castore.Secret{Client: r.cfg.Client, Namespace: r.cfg.Namespace, Name: r.cfg.CASecret}
	r.state, r.caErr = store.Load(ctx)
	if r.caErr != nil {
		return Fail, fmt.Sprintf("%v (has meshca started in namespace %s?)", r.caErr, r.cfg.Namespace)
	}
	cur := r.state.Get(ca.SlotCurrent)
	notAfter := cur.Intermediate.NotAfter
	if cur.Root.NotAfter.Before(notAfter) {
		notAfter = cur.Root.NotAfter
	}
	msg := fmt.Sprintf("%s signs with %.12s, expires %s (%s); %d root(s) in the bundle",
		store, cur.Fingerprint(), until(r.cfg.Now, notAfter), notAfter.UTC().Format(time.RFC3339), len(r.state.Roots()))
	switch {
	case !r.cfg.Now.Before(notAfter):
		return Fail, msg
	case notAfter.Sub(r.cfg.Now) > r.cfg.CAExpiryThreshold:
		return OK, msg
	case r.state.Next != nil:
		return OK, msg + "; the next CA is published"
	}
	return Warn, fmt.Sprintf("%s: within %s and no next CA is published (meshca ca rotate)", msg, r.cfg.CAExpiryThreshold)
}

func checkLeader(ctx context.Context, r *run) (Status, string) {
	l, err := r.cfg.Client.CoordinationV1().Leases(r.cfg.Namespace).Get(ctx, leaseName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Fail, fmt.Sprintf("no Lease %s/%s: no replica has led (is meshca running, with --leader-elect?)", r.cfg.Namespace, leaseName)
	}
	if err != nil {
		return Fail, fmt.Sprintf("get Lease %s/%s: %v", r.cfg.Namespace, leaseName, err)
	}
	holder := ""
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	if holder == "" || l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return Fail, fmt.Sprintf("Lease %s/%s is not held: no leader issues or renews certificates", r.cfg.Namespace, leaseName)
	}
	renewed := l.Spec.RenewTime.Time
	expires := renewed.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second)
	if r.cfg.Now.After(expires) {
		return Fail, fmt.Sprintf("Lease %s/%s was held by %s but not renewed since %s: the leader is gone and none took over",
			r.cfg.Namespace, leaseName, holder, renewed.UTC().Format(time.RFC3339))
	}
	return OK, fmt.Sprintf("%s leads (Lease %s/%s renewed %s ago)", holder, r.cfg.Namespace, leaseName, r.cfg.Now.Sub(renewed).Round(time.Second))
}

func checkWebhookConfig(ctx context.Context, r *run) (Status, string) {
	mwc, err := r.cfg.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, r.cfg.WebhookConfiguration, metav1.GetOptions{})
	if err != nil {
		return Fail, fmt.Sprintf("MutatingWebhookConfiguration %s: %v", r.cfg.WebhookConfiguration, err)
	}
	if r.caErr != nil {
		return Skipped, fmt.Sprintf("MutatingWebhookConfiguration %s exists; its caBundle cannot be compared without the CA", mwc.Name)
	}
	want := setOf(r.state.Roots())
	var bad []string
	for _, w := range mwc.Webhooks {
		got, err := ca.ParseCertificatesPEM(w.ClientConfig.CABundle)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: caBundle unreadable (%v)", w.Name, err))
			continue
		}
		if s := setOf(got); len(s) != len(want) || !s.contains(want) {
			bad = append(bad, fmt.Sprintf("%s: caBundle is not the CA's bundle (%d certificate(s) where the CA has %d root(s))", w.Name, len(got), len(want)))
		}
	}
	if len(bad) > 0 {
		return Fail, fmt.Sprintf("MutatingWebhookConfiguration %s: %s: the API server cannot trust the webhook (is the leader running?)", mwc.Name, strings.Join(bad, "; "))
	}
	return OK, fmt.Sprintf("MutatingWebhookConfiguration %s: the caBundle of %d webhook(s) is the CA's bundle", mwc.Name, len(mwc.Webhooks))
}

func checkWebhookReachable(ctx context.Context, r *run) (Status, string) {
	mwc, err := r.cfg.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, r.cfg.WebhookConfiguration, metav1.GetOptions{})
	if err != nil {
		return Skipped, fmt.Sprintf("no MutatingWebhookConfiguration %s to reach", r.cfg.WebhookConfiguration)
	}
	status, msgs := OK, []string{}
	worst := func(s Status) {
		if rank(s) > rank(status) {
			status = s
		}
	}
	for _, w := range mwc.Webhooks {
		s, m := r.reachWebhook(ctx, w.ClientConfig)
		worst(s)
		msgs = append(msgs, w.Name+": "+m)
	}
	if len(msgs) == 0 {
		return Fail, fmt.Sprintf("MutatingWebhookConfiguration %s has no webhooks", mwc.Name)
	}
	return status, strings.Join(msgs, "; ")
}

func rank(s Status) int { return slices.Index([]Status{OK, Skipped, Warn, Fail}, s) }

// reachWebhook completes a TLS handshake with the webhook behind cc,
// trusting only its caBundle, as the API server would.
func (r *run) reachWebhook(ctx context.Context, cc admissionregistrationv1.WebhookClientConfig) (Status, string) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(cc.CABundle) {
		return Fail, "no usable caBundle"
	}
	var addr, serverName, where string
	switch {
	case cc.URL != nil:
		u, err := url.Parse(*cc.URL)
		if err != nil {
			return Fail, fmt.Sprintf("url %q: %v", *cc.URL, err)
		}
		serverName, addr, where = u.Hostname(), u.Host, *cc.URL
		if u.Port() == "" {
			addr = net.JoinHostPort(u.Hostname(), "443")
		}
	case cc.Service != nil:
		svc := cc.Service
		port := int32(443)
		if svc.Port != nil {
			port = *svc.Port
		}
		where = fmt.Sprintf("Service %s/%s port %d", svc.Namespace, svc.Name, port)
		if !r.cfg.InCluster {
			return r.serviceEndpoints(ctx, svc.Namespace, svc.Name, where)
		}
		serverName = svc.Name + "." + svc.Namespace + ".svc"
		addr = net.JoinHostPort(serverName, fmt.Sprint(port))
	default:
		return Fail, "clientConfig has neither url nor service"
	}
	err := r.cfg.DialTLS(ctx, addr, &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12})
	if err != nil {
		return Fail, fmt.Sprintf("%s unreachable: %v", where, err)
	}
	return OK, where + " answers with a certificate the caBundle trusts"
}

// serviceEndpoints stands in for a dial from outside the cluster: the
// Service must have ready endpoints; the dial itself is skipped.
func (r *run) serviceEndpoints(ctx context.Context, ns, name, where string) (Status, string) {
	list, err := r.cfg.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		return Fail, fmt.Sprintf("%s: list EndpointSlices: %v", where, err)
	}
	ready := 0
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				ready++
			}
		}
	}
	if ready == 0 {
		return Fail, where + " has no ready endpoints: the API server cannot call the webhook"
	}
	return Skipped, fmt.Sprintf("%s has %d ready endpoint(s); not dialled: Service addresses do not resolve outside the cluster (run meshca check in a pod to dial it)", where, ready)
}

func checkBundles(ctx context.Context, r *run) (Status, string) {
	if r.caErr != nil {
		return Skipped, "trust bundles cannot be compared without the CA"
	}
	nss, err := r.selected(ctx)
	if err != nil {
		return Fail, err.Error()
	}
	cms, err := r.cfg.Client.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", meta.TrustBundleConfigMap).String()})
	if err != nil {
		return Fail, fmt.Sprintf("list ConfigMaps %s: %v", meta.TrustBundleConfigMap, err)
	}
	byNS := map[string]*corev1.ConfigMap{}
	for i := range cms.Items {
		byNS[cms.Items[i].Namespace] = &cms.Items[i]
	}
	want := setOf(r.state.Roots())
	var bad []string
	checked := 0
	for _, ns := range nss {
		if ns.Status.Phase == corev1.NamespaceTerminating {
			continue
		}
		checked++
		cm := byNS[ns.Name]
		if cm == nil {
			bad = append(bad, ns.Name+" (missing)")
			continue
		}
		// The bundle may hold more roots (an external issuer's); it must
		// hold every root of the CA.
		got, err := ca.ParseCertificatesPEM([]byte(cm.Data[corev1.ServiceAccountRootCAKey]))
		if err != nil || !setOf(got).contains(want) {
			bad = append(bad, ns.Name+" (stale)")
		}
	}
	if len(bad) > 0 {
		return Fail, fmt.Sprintf("%d of %d selected namespace(s) lack the CA's current bundle in ConfigMap %s: %s",
			len(bad), checked, meta.TrustBundleConfigMap, abbreviate(bad, 5))
	}
	return OK, fmt.Sprintf("%d selected namespace(s) hold the CA's current bundle in ConfigMap %s", checked, meta.TrustBundleConfigMap)
}

func checkSecrets(ctx context.Context, r *run) (Status, string) {
	nss, err := r.selected(ctx)
	if err != nil {
		return Fail, err.Error()
	}
	selected := map[string]bool{}
	for _, ns := range nss {
		selected[ns.Name] = true
	}
	list, err := r.cfg.Client.CoreV1().Secrets("").List(ctx, metav1.ListOptions{LabelSelector: meta.LabelManagedBy + "=" + meta.ManagedByValue})
	if err != nil {
		return Fail, fmt.Sprintf("list managed Secrets: %v", err)
	}
	var expired, soon []string
	n := 0
	var soonest time.Time
	soonestName := ""
	for i := range list.Items {
		s := &list.Items[i]
		if !selected[s.Namespace] || s.Type != corev1.SecretTypeTLS || s.Annotations[meta.AnnotationSerial] == "" {
			continue
		}
		n++
		ref := s.Namespace + "/" + s.Name
		certs, err := ca.ParseCertificatesPEM(s.Data[corev1.TLSCertKey])
		if err != nil {
			expired = append(expired, ref+" (unreadable)")
			continue
		}
		na := certs[0].NotAfter
		switch {
		case !r.cfg.Now.Before(na):
			expired = append(expired, ref)
		case na.Sub(r.cfg.Now) < r.cfg.SecretExpiryThreshold:
			soon = append(soon, ref+" ("+until(r.cfg.Now, na)+")")
		}
		if soonestName == "" || na.Before(soonest) {
			soonest, soonestName = na, ref
		}
	}
	switch {
	case len(expired) > 0:
		return Fail, fmt.Sprintf("%d of %d managed certificate(s) expired: %s (is the leader renewing? see meshca status)", len(expired), n, abbreviate(expired, 5))
	case len(soon) > 0:
		return Warn, fmt.Sprintf("%d of %d managed certificate(s) expire within %s: %s", len(soon), n, r.cfg.SecretExpiryThreshold, abbreviate(soon, 5))
	case n == 0:
		return OK, "no managed certificates in the selected namespaces"
	}
	return OK, fmt.Sprintf("%d managed certificate(s), none expiring within %s; the soonest: %s %s", n, r.cfg.SecretExpiryThreshold, soonestName, until(r.cfg.Now, soonest))
}

func abbreviate(items []string, limit int) string {
	if len(items) <= limit {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:limit], ", ") + fmt.Sprintf(" and %d more", len(items)-limit)
}
