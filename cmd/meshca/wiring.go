package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/controller"
	"github.com/meshca/meshca/issuer"
	"github.com/meshca/meshca/rotator"
	"github.com/meshca/meshca/webhook"
)

// setupControllers loads (or, on a first start, creates) the CA and adds
// the controllers and the audit sweep to mgr. The controllers and the sweep
// run only on the leader.
func setupControllers(ctx context.Context, mgr ctrl.Manager, o *serveOptions, log *slog.Logger) error {
	alg, err := ca.ParseKeyAlgorithm(o.keyAlgorithm)
	if err != nil {
		return fmt.Errorf("--key-algorithm: %w", err)
	}
	cs, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return err
	}
	store := ca.SecretStore{Client: cs, Namespace: o.namespace}
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
	// live is the CA state now in force, which the CA metrics show: the
	// CA rotator replaces it on the leader, a caFollower re-reads the CA
	// Secret into it on the other replicas.
	live := &atomic.Pointer[ca.State]{}
	live.Store(state)
	caPolicy := rotator.CAPolicy{MaxLeafLifetime: o.leafDuration}
	if err := ctrlmetrics.Registry.Register(newCACollector(live.Load, caPolicy)); err != nil {
		return fmt.Errorf("register CA metrics: %w", err)
	}
	follower := &caFollower{
		store: store, live: live, elected: mgr.Elected(),
		interval: rotator.DefaultCAPollInterval, clock: clock.RealClock{},
		log: log.With("component", "ca-follower"),
	}
	if err := mgr.Add(everyReplica{manager.RunnableFunc(follower.Start)}); err != nil {
		return err
	}

	selector := labels.Nothing()
	if o.tlsContextSelector != "" {
		if selector, err = labels.Parse(o.tlsContextSelector); err != nil {
			return fmt.Errorf("--tlscontext-selector: %w", err)
		}
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
	iss := backend.issuer
	// The bundle is set by the CA rotator when it has read the CA Secret,
	// on the leader only: the state loaded above may be long out of date
	// when a standby becomes leader, and every writer of Secrets, bundles
	// and the caBundle waits for the bundle. It holds the backend's roots
	// (step-ca's) after the CA's, so certificates of either backend stay
	// trusted and are not reissued for a root the bundle lacks.
	trust := &controller.Trust{Extra: backend.roots}
	// The webhook's serving certificate is always signed by meshca's CA
	// and the API server trusts it through the caBundle, which must not
	// trust more than that CA: the webhook parts get a bundle without the
	// backend's roots.
	webhookTrust := trust
	if len(backend.roots) > 0 {
		webhookTrust = &controller.Trust{}
	}
	setTrust := func(st *ca.State) error {
		if err := trust.Set(st.Bundle()); err != nil {
			return err
		}
		if webhookTrust != trust {
			return webhookTrust.Set(st.Bundle())
		}
		return nil
	}
	burst := int(o.maxIssuanceRate)
	if burst < 1 {
		burst = 1
	}
	metrics := controller.NewMetrics(ctrlmetrics.Registry)
	// One paced recorder for every controller, so --event-qps is the
	// daemon's.
	events, err := controller.NewPacedEvents(mgr.GetEventRecorder("meshca"), mgr.GetScheme(), ctrlmetrics.Registry,
		controller.PacedEventsConfig{Rate: o.eventQPS})
	if err != nil {
		return err
	}
	if err := mgr.Add(manager.RunnableFunc(events.Start)); err != nil {
		return err
	}
	// meshca's own Secrets: no TLSContext or workload may name them.
	reserved := controller.ReservedSecrets{
		{Namespace: o.namespace, Name: ca.DefaultSecretName},
		{Namespace: o.namespace, Name: o.webhookSecret},
	}
	tls := &controller.TLSContextReconciler{
		Client:   mgr.GetClient(),
		Issuer:   iss,
		Trust:    trust,
		Recorder: events,
		Metrics:  metrics,
		Limiter:  rate.NewLimiter(rate.Limit(o.maxIssuanceRate), burst),
		Config: controller.TLSContextConfig{
			TrustDomain:           o.trustDomain,
			Selector:              selector,
			GatewayServiceAccount: o.gatewayServiceAcct,
			KeyAlgorithm:          alg,
			Cleanup:               controller.SecretCleanup(o.secretCleanup),
			AllowCrossNamespace:   o.allowCrossNamespace,
			Namespaces:            o.watchNamespaces,
			Reserved:              reserved,
		},
	}
	if err := tls.SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("set up TLSContext controller: %w", err)
	}
	resync, err := setupWorkloadsAndBundle(ctx, mgr, o, workloadDeps{
		issuer: iss, trust: trust, metrics: metrics, limiter: tls.Limiter, keyAlgorithm: alg, events: events, reserved: reserved,
	})
	if err != nil {
		return err
	}
	audit, err := rotator.NewAudit(rotator.AuditConfig{
		Schedule: o.auditSchedule,
		Sweep: func(ctx context.Context) {
			log.Info("audit sweep")
			tls.ResyncAll(ctx)
			resync(ctx)
		},
	})
	if err != nil {
		return fmt.Errorf("--audit-schedule: %w", err)
	}
	if err := mgr.Add(manager.RunnableFunc(audit.Start)); err != nil {
		return err
	}
	hooks, err := setupWebhook(mgr, o, state, webhookTrust)
	if err != nil {
		return err
	}
	// The CA rotator publishes, activates and prunes CAs in the CA Secret;
	// each change reaches both issuers, the trust bundle, every ca.crt, the
	// bundle ConfigMaps and the webhook's caBundle.
	caRotator, err := rotator.NewCARotator(rotator.CARotatorConfig{
		Store:        store,
		Policy:       caPolicy,
		PublishGrace: publishGrace(o.caPublishGrace),
		// A retired CA stays in the bundles until the last leaf it signed
		// in a managed Secret has expired, whatever its meshca.io/duration.
		Inventory:          controller.LeafInventory{Reader: mgr.GetClient()},
		OnExternalExpiring: externalCAWarning(cs, store, events),
		Log:                log.With("component", "ca-rotator"),
		OnChange: func(ctx context.Context, st *ca.State) error {
			live.Store(st)
			setSigners := func() error {
				if err := backend.setCA(st); err != nil {
					return err
				}
				return hooks.setCA(st)
			}
			if trust.PEM() == nil {
				// The first state this leader reads. Nothing has been
				// signed or written yet (every writer waits for the
				// bundle), so the signers go first and the bundle lets
				// the writers go.
				if err := setSigners(); err != nil {
					return err
				}
				if err := setTrust(st); err != nil {
					return err
				}
			} else {
				// The bundle first: a new CA is trusted before anything
				// it signs can appear.
				if err := setTrust(st); err != nil {
					return err
				}
				if err := setSigners(); err != nil {
					return err
				}
			}
			hooks.bundleChanged()
			tls.ResyncAll(ctx)
			resync(ctx)
			return nil
		},
	})
	if err != nil {
		return err
	}
	// A plain Runnable runs only on the leader.
	return mgr.Add(manager.RunnableFunc(caRotator.Start))
}

// externalCAWarning records a Warning Event on the CA Secret, in meshca's
// namespace, when a bring-your-own CA nears its end: `kubectl get events`
// there and `kubectl describe secret meshca-ca` show it.
func externalCAWarning(cs kubernetes.Interface, store ca.SecretStore, events controller.EventRecorder) func(context.Context, *ca.State, time.Time) {
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

// webhookHooks let a CA change reach the webhook's parts.
type webhookHooks struct {
	setCA         func(*ca.State) error
	bundleChanged func()
}

// everyReplica marks a runnable that runs with or without the Lease.
type everyReplica struct{ manager.Runnable }

func (everyReplica) NeedLeaderElection() bool { return false }

// setupWebhook adds the admission webhook and its serving certificate to
// every replica, and to the leader the issuance of that certificate and the
// upkeep of the MutatingWebhookConfiguration's caBundle.
func setupWebhook(mgr ctrl.Manager, o *serveOptions, state *ca.State, trust *controller.Trust) (*webhookHooks, error) {
	cs, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return nil, err
	}
	logger := mgr.GetLogger().WithName("webhook")
	cert, err := webhook.NewSecretCertificate(webhook.SecretCertificateConfig{
		Client: cs, Namespace: o.namespace, Name: o.webhookSecret, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	srv, err := webhook.New(webhook.Config{
		Addr:         fmt.Sprintf(":%d", o.webhookPort),
		Certificates: cert,
		Registry:     ctrlmetrics.Registry,
		Logger:       logger,
	})
	if err != nil {
		return nil, err
	}
	for _, r := range []manager.Runnable{manager.RunnableFunc(cert.Start), manager.RunnableFunc(srv.Start)} {
		if err := mgr.Add(everyReplica{r}); err != nil {
			return nil, err
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
		return nil, err
	}

	// meshca's own serving certificate carries names from its own flags, set
	// by the operator, so it is issued with the operator's policy (an IP
	// such as 127.0.0.1 is allowed for out-of-cluster runs). It lives
	// --leaf-duration like every other leaf: the CA rotator prunes a retired
	// CA that long after retirement, so a longer-lived certificate would
	// lose its root while still in use.
	servingIssuer, err := issuer.NewLocal(issuer.LocalConfig{CA: state, Policy: issuer.OperatorPolicy(), DefaultDuration: o.leafDuration})
	if err != nil {
		return nil, err
	}
	direct, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		return nil, err
	}
	// changed pokes the serving certificate and the caBundle syncer when
	// the trust bundle changes, instead of waiting for their next round.
	servingChanged, syncerChanged := make(chan struct{}, 1), make(chan struct{}, 1)
	serving := &controller.ServingCertificate{
		Client: direct, Issuer: servingIssuer, Trust: trust,
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
		return nil, err
	}
	syncOnceTrusted := func(ctx context.Context) error {
		if err := trust.Wait(ctx); err != nil {
			return nil // stopped before leading for real
		}
		return syncer.Start(ctx)
	}
	for _, r := range []manager.Runnable{manager.RunnableFunc(serving.Start), manager.RunnableFunc(syncOnceTrusted)} {
		if err := mgr.Add(r); err != nil {
			return nil, err
		}
	}
	return &webhookHooks{
		setCA: servingIssuer.SetCA,
		bundleChanged: func() {
			for _, ch := range []chan struct{}{servingChanged, syncerChanged} {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		},
	}, nil
}

// workloadDeps are what the workload and trust bundle controllers share
// with the TLSContext controller.
type workloadDeps struct {
	issuer       controller.Issuer
	trust        *controller.Trust
	metrics      *controller.Metrics
	limiter      *rate.Limiter
	keyAlgorithm ca.KeyAlgorithm
	events       controller.EventRecorder
	reserved     controller.ReservedSecrets
}

// setupWorkloadsAndBundle adds the workload certificate and trust bundle
// controllers. The returned function resyncs both: the audit sweep calls
// it, and so must whatever changes the trust bundle (after Trust.Set).
func setupWorkloadsAndBundle(ctx context.Context, mgr ctrl.Manager, o *serveOptions, d workloadDeps) (func(context.Context), error) {
	work := &controller.WorkloadReconciler{
		Client:   mgr.GetClient(),
		Issuer:   d.issuer,
		Trust:    d.trust,
		Recorder: d.events,
		Metrics:  d.metrics,
		Limiter:  d.limiter,
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
		Metrics:  d.metrics,
		Config:   controller.BundleConfig{Selector: nsSelector},
	}
	if err := bundle.SetupWithManager(ctx, mgr); err != nil {
		return nil, fmt.Errorf("set up trust bundle controller: %w", err)
	}
	return func(ctx context.Context) {
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
