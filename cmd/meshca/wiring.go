package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/meshca/meshca/authority"
	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/ca/castore"
	"github.com/meshca/meshca/controller"
	"github.com/meshca/meshca/issuer"
	"github.com/meshca/meshca/rotator"
	"github.com/meshca/meshca/webhook"
)

// setupControllers loads (or, on a first start, creates) the CA and adds
// the controllers and the audit sweep to mgr, wired to one Authority that
// owns the CA in force and the trust bundles it implies. The controllers,
// the sweep and the CA rotator run only on the leader.
func setupControllers(ctx context.Context, mgr ctrl.Manager, o *serveOptions, log logr.Logger) error {
	alg, err := ca.ParseKeyAlgorithm(o.keyAlgorithm)
	if err != nil {
		return fmt.Errorf("--key-algorithm: %w", err)
	}
	// The one typed client of the daemon: the CA store, Events on the CA
	// Secret, the webhook's certificate loader and caBundle syncer.
	cs, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return err
	}
	store := castore.Secret{Client: cs, Namespace: o.namespace}
	// Every replica loads the CA; the first of several starting at once
	// creates it and the others load the winner's. An unreadable CA Secret
	// stops meshca here: it is never replaced. A missing one is created
	// only on a first start, not when certificates of a lost CA remain.
	state, err := loadCA(ctx, store, cs, o)
	if err != nil {
		return err
	}
	current := state.Get(ca.SlotCurrent)
	log.Info("CA loaded", "secret", store.String(), "issuer", current.Fingerprint(),
		"notAfter", current.Intermediate.NotAfter)
	// The state loaded here is what the CA metrics show until the leader's
	// CA rotator applies the state it reads, or, on the other replicas, a
	// caFollower observes the CA Secret again.
	auth := authority.New(state)
	caPolicy := rotator.CAPolicy{MaxLeafLifetime: o.leafDuration}
	if err := ctrlmetrics.Registry.Register(newCACollector(auth.State, caPolicy)); err != nil {
		return fmt.Errorf("register CA metrics: %w", err)
	}
	follower := &caFollower{
		store: store, observe: auth.Observe, elected: mgr.Elected(),
		interval: rotator.DefaultCAPollInterval, clock: clock.RealClock{},
		log: log.WithValues("component", "ca-follower"),
	}
	if err := mgr.Add(everyReplica{manager.RunnableFunc(follower.Start)}); err != nil {
		return err
	}

	backend, err := newCertBackend(o, state, issuer.Policy{
		TrustDomain:        o.trustDomain,
		ClusterDomain:      o.clusterDomain,
		AllowedDNSSuffixes: o.allowedDNSSuffixes,
		AllowWildcards:     o.allowWildcards,
		AllowIPSANs:        o.allowIPSANs,
	}, alg)
	if err != nil {
		return err
	}
	// The bundle every ca.crt and bundle ConfigMap holds: the CA's roots,
	// then the backend's (step-ca's), so certificates of either backend
	// stay trusted and are not reissued for a root the bundle lacks. The
	// webhook's serving certificate is always signed by meshca's CA and
	// the API server trusts it through the caBundle, which must not trust
	// more than that CA: the webhook parts get a bundle without the
	// backend's roots.
	trust := &authority.Trust{Extra: backend.roots}
	auth.Publish(trust)
	webhookTrust := trust
	if len(backend.roots) > 0 {
		webhookTrust = &authority.Trust{}
		auth.Publish(webhookTrust)
	}
	auth.Subscribe(authority.Subscriber{Name: "certificate issuer", Stage: authority.StageSign,
		Apply: func(_ context.Context, st *ca.State) error { return backend.setCA(st) }})

	events, err := setupEvents(mgr, o)
	if err != nil {
		return err
	}
	metrics := controller.NewMetrics(ctrlmetrics.Registry)
	resync, err := setupCertificates(ctx, mgr, o, certDeps{
		issuer: backend.issuer, trust: trust, keyAlgorithm: alg, events: events, metrics: metrics,
		// meshca's own Secrets: no TLSContext or workload may name them.
		reserved: controller.ReservedSecrets{
			{Namespace: o.namespace, Name: ca.DefaultSecretName},
			{Namespace: o.namespace, Name: o.webhookSecret},
		},
	})
	if err != nil {
		return err
	}
	audit, err := rotator.NewAudit(rotator.AuditConfig{
		Schedule: o.auditSchedule,
		Sweep: func(ctx context.Context) {
			log.Info("audit sweep")
			resync(ctx)
		},
	})
	if err != nil {
		return fmt.Errorf("--audit-schedule: %w", err)
	}
	if err := mgr.Add(manager.RunnableFunc(audit.Start)); err != nil {
		return err
	}
	if err := setupWebhook(mgr, o, cs, state, auth, webhookTrust, events, metrics); err != nil {
		return err
	}
	// Every certificate and bundle is looked at again after a change.
	auth.Subscribe(authority.Subscriber{Name: "resync", Stage: authority.StageFollow,
		Apply: func(ctx context.Context, _ *ca.State) error { resync(ctx); return nil }})

	// The CA rotator publishes, activates and prunes CAs in the CA Secret,
	// and hands every state it reads or writes to the Authority.
	caRotator, err := rotator.NewCARotator(rotator.CARotatorConfig{
		Store:        store,
		Policy:       caPolicy,
		PublishGrace: publishGrace(o.caPublishGrace),
		// A retired CA stays in the bundles until the last leaf it signed
		// in a managed Secret has expired, whatever its meshca.io/duration.
		Inventory:          controller.LeafInventory{Reader: mgr.GetClient()},
		OnExternalExpiring: externalCAWarning(cs, store, events),
		Log:                log.WithValues("component", "ca-rotator"),
		OnChange:           auth.Apply,
	})
	if err != nil {
		return err
	}
	// A plain Runnable runs only on the leader.
	return mgr.Add(manager.RunnableFunc(caRotator.Start))
}

// setupEvents returns the paced Event recorder every controller shares, so
// --event-qps is the daemon's.
func setupEvents(mgr ctrl.Manager, o *serveOptions) (*controller.PacedEvents, error) {
	events, err := controller.NewPacedEvents(mgr.GetEventRecorder("meshca"), mgr.GetScheme(), ctrlmetrics.Registry,
		controller.PacedEventsConfig{Rate: o.eventQPS})
	if err != nil {
		return nil, err
	}
	return events, mgr.Add(manager.RunnableFunc(events.Start))
}

// externalCAWarning records a Warning Event on the CA Secret, in meshca's
// namespace, when a bring-your-own CA nears its end: `kubectl get events`
// there and `kubectl describe secret meshca-ca` show it.
func externalCAWarning(cs kubernetes.Interface, store castore.Secret, events controller.EventRecorder) func(context.Context, *ca.State, time.Time) {
	return func(ctx context.Context, st *ca.State, notAfter time.Time) {
		name := store.Name
		if name == "" {
			name = ca.DefaultSecretName
		}
		// The reference needs the Secret's UID; without it the Event still
		// names the Secret.
		sec, err := cs.CoreV1().Secrets(store.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			sec = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: store.Namespace, Name: name}}
		}
		regarding := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: sec.Namespace, Name: sec.Name, UID: sec.UID, ResourceVersion: sec.ResourceVersion}}
		events.Eventf(regarding, nil, corev1.EventTypeWarning, reasonExternalCAExpiring, "Rotate",
			"bring-your-own CA %s expires at %s and meshca does not replace it: load its successor as the next CA (docs/byo-ca.md), or run meshca ca rotate --replace-external-ca",
			st.Current.Fingerprint(), notAfter.UTC().Format(time.RFC3339))
	}
}

// reasonExternalCAExpiring is the reason of the Event externalCAWarning
// records.
const reasonExternalCAExpiring = "ExternalCAExpiring"

// everyReplica marks a runnable that runs with or without the Lease.
type everyReplica struct{ manager.Runnable }

func (everyReplica) NeedLeaderElection() bool { return false }

// setupWebhook adds the admission webhook and its serving certificate to
// every replica, and to the leader the issuance of that certificate and the
// upkeep of the MutatingWebhookConfiguration's caBundle, both following
// auth.
func setupWebhook(mgr ctrl.Manager, o *serveOptions, cs kubernetes.Interface, state *ca.State, auth *authority.Authority, trust *authority.Trust, events controller.EventRecorder, metrics *controller.Metrics) error {
	logger := mgr.GetLogger().WithName("webhook")
	cert, err := webhook.NewSecretCertificate(webhook.SecretCertificateConfig{
		Client: cs, Namespace: o.namespace, Name: o.webhookSecret, Logger: logger,
	})
	if err != nil {
		return err
	}
	srv, err := webhook.New(webhook.Config{
		Addr:         fmt.Sprintf(":%d", o.webhookPort),
		Certificates: cert,
		Registry:     ctrlmetrics.Registry,
		Logger:       logger,
	})
	if err != nil {
		return err
	}
	for _, r := range []manager.Runnable{manager.RunnableFunc(cert.Start), manager.RunnableFunc(srv.Start)} {
		if err := mgr.Add(everyReplica{r}); err != nil {
			return err
		}
	}
	// Ready once the serving certificate is loaded: before that the API
	// server's calls to this replica would fail.
	if err := mgr.AddReadyzCheck("webhook-certificate", func(*http.Request) error {
		select {
		case <-cert.Loaded():
			return nil
		default:
			return errors.New("webhook serving certificate not loaded yet")
		}
	}); err != nil {
		return err
	}

	// meshca's own serving certificate carries names from its own flags, set
	// by the operator, so it is issued with the operator's policy (an IP
	// such as 127.0.0.1 is allowed for out-of-cluster runs). It lives
	// --leaf-duration like every other leaf: the CA rotator prunes a retired
	// CA that long after retirement, so a longer-lived certificate would
	// lose its root while still in use.
	servingIssuer, err := issuer.NewLocal(issuer.LocalConfig{CA: state, Policy: issuer.OperatorPolicy(), DefaultDuration: o.leafDuration})
	if err != nil {
		return err
	}
	// changed pokes the serving certificate and the caBundle syncer when
	// the trust bundle changes, instead of waiting for their next round.
	servingChanged, syncerChanged := make(chan struct{}, 1), make(chan struct{}, 1)
	serving := &controller.ServingCertificate{
		// Reads go to the API server: the Secret is in meshca's namespace,
		// which the cache may not watch.
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Issuer: servingIssuer, Trust: trust, Metrics: metrics, Recorder: events,
		Namespace: o.namespace, Name: o.webhookSecret, Names: o.webhookNames,
		Changed: servingChanged,
	}
	syncer, err := webhook.NewCABundleSyncer(webhook.CABundleSyncerConfig{
		Client:  cs,
		Name:    o.webhookConfiguration,
		Bundle:  func() ([]byte, error) { return trust.PEM(), nil },
		Changed: syncerChanged,
		Logger:  logger,
	})
	if err != nil {
		return err
	}
	syncOnceTrusted := func(ctx context.Context) error {
		if err := trust.Wait(ctx); err != nil {
			return nil // stopped before leading for real
		}
		return syncer.Start(ctx)
	}
	for _, r := range []manager.Runnable{manager.RunnableFunc(serving.Start), manager.RunnableFunc(syncOnceTrusted)} {
		if err := mgr.Add(r); err != nil {
			return err
		}
	}
	auth.Subscribe(
		authority.Subscriber{Name: "webhook serving issuer", Stage: authority.StageSign,
			Apply: func(_ context.Context, st *ca.State) error { return servingIssuer.SetCA(st) }},
		authority.Subscriber{Name: "webhook serving certificate and caBundle", Stage: authority.StageFollow,
			Apply: func(context.Context, *ca.State) error {
				for _, ch := range []chan struct{}{servingChanged, syncerChanged} {
					select {
					case ch <- struct{}{}:
					default:
					}
				}
				return nil
			}})
	return nil
}

// certDeps are what the certificate and trust bundle controllers share.
type certDeps struct {
	issuer       controller.Issuer
	trust        *authority.Trust
	keyAlgorithm ca.KeyAlgorithm
	events       controller.EventRecorder
	metrics      *controller.Metrics
	reserved     controller.ReservedSecrets
}

// setupCertificates adds the TLSContext, workload certificate and trust
// bundle controllers. The returned function resyncs all three: the audit
// sweep calls it, and so does every CA change.
func setupCertificates(ctx context.Context, mgr ctrl.Manager, o *serveOptions, d certDeps) (func(context.Context), error) {
	selector := labels.Nothing()
	if o.tlsContextSelector != "" {
		var err error
		if selector, err = labels.Parse(o.tlsContextSelector); err != nil {
			return nil, fmt.Errorf("--tlscontext-selector: %w", err)
		}
	}
	burst := max(int(o.maxIssuanceRate), 1)
	// One limiter for both certificate controllers: --max-issuance-rate is
	// the daemon's.
	limiter := rate.NewLimiter(rate.Limit(o.maxIssuanceRate), burst)
	metrics := d.metrics
	tls := &controller.TLSContextReconciler{
		Client:   mgr.GetClient(),
		Issuer:   d.issuer,
		Trust:    d.trust,
		Recorder: d.events,
		Metrics:  metrics,
		Limiter:  limiter,
		Config: controller.TLSContextConfig{
			TrustDomain:           o.trustDomain,
			Selector:              selector,
			GatewayServiceAccount: o.gatewayServiceAcct,
			KeyAlgorithm:          d.keyAlgorithm,
			Cleanup:               controller.SecretCleanup(o.secretCleanup),
			AllowCrossNamespace:   o.allowCrossNamespace,
			Namespaces:            o.watchNamespaces,
			Reserved:              d.reserved,
		},
	}
	if err := tls.SetupWithManager(ctx, mgr); err != nil {
		return nil, fmt.Errorf("set up TLSContext controller: %w", err)
	}
	work := &controller.WorkloadReconciler{
		Client:   mgr.GetClient(),
		Issuer:   d.issuer,
		Trust:    d.trust,
		Recorder: d.events,
		Metrics:  metrics,
		Limiter:  limiter,
		Config: controller.WorkloadConfig{
			TrustDomain:   o.trustDomain,
			ClusterDomain: o.clusterDomain,
			KeyAlgorithm:  d.keyAlgorithm,
			Reserved:      d.reserved,
			// With --restart-on-rotate=false the chart grants no patch on
			// workloads: meshca must not try one.
			DisableRestartOnRotate: !o.restartOnRotate,
			Namespace:              o.namespace,
		},
	}
	if err := work.SetupWithManager(ctx, mgr); err != nil {
		return nil, fmt.Errorf("set up workload controllers: %w", err)
	}
	// validate has parsed the selector already; "" selects every namespace.
	nsSelector, err := bundleNamespaces(o)
	if err != nil {
		return nil, fmt.Errorf("--bundle-namespace-selector: %w", err)
	}
	bundle := &controller.BundleReconciler{
		Client:   mgr.GetClient(),
		Trust:    d.trust,
		Recorder: d.events,
		Metrics:  metrics,
		Config:   controller.BundleConfig{Selector: nsSelector},
	}
	if err := bundle.SetupWithManager(ctx, mgr); err != nil {
		return nil, fmt.Errorf("set up trust bundle controller: %w", err)
	}
	return func(ctx context.Context) {
		tls.ResyncAll(ctx)
		work.ResyncAll(ctx)
		bundle.ResyncAll(ctx)
	}, nil
}

// publishGrace maps --ca-publish-grace to the rotator's setting, where 0
// means the default and a negative value none.
func publishGrace(flag time.Duration) time.Duration {
	if flag == 0 {
		return -1
	}
	return flag
}
