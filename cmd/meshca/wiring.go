package main

import (
	"context"
	"fmt"
	"log/slog"

	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/controller"
	"github.com/meshca/meshca/issuer"
	"github.com/meshca/meshca/rotator"
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
	// stops meshca here: it is never replaced.
	state, err := store.LoadOrCreate(ctx, ca.Config{TrustDomain: o.trustDomain})
	if err != nil {
		return fmt.Errorf("load CA from %s: %w", store, err)
	}
	current := state.Get(ca.SlotCurrent)
	log.Info("CA loaded", "secret", store.String(), "issuer", current.Fingerprint(),
		"notAfter", current.Intermediate.NotAfter)

	selector := labels.Nothing()
	if o.tlsContextSelector != "" {
		if selector, err = labels.Parse(o.tlsContextSelector); err != nil {
			return fmt.Errorf("--tlscontext-selector: %w", err)
		}
	}
	iss, err := issuer.NewLocal(issuer.LocalConfig{
		CA: state,
		Policy: issuer.Policy{
			TrustDomain:        o.trustDomain,
			ClusterDomain:      o.clusterDomain,
			AllowedDNSSuffixes: o.allowedDNSSuffixes,
			NamespaceSuffixes:  controller.NamespaceSuffixes(mgr.GetCache()),
			AllowWildcards:     o.allowWildcards,
			AllowIPSANs:        o.allowIPSANs,
		},
		DefaultDuration:     o.leafDuration,
		DefaultKeyAlgorithm: alg,
	})
	if err != nil {
		return err
	}
	trust := &controller.Trust{}
	if err := trust.Set(state.Bundle()); err != nil {
		return err
	}
	burst := int(o.maxIssuanceRate)
	if burst < 1 {
		burst = 1
	}
	metrics := controller.NewMetrics(ctrlmetrics.Registry)
	tls := &controller.TLSContextReconciler{
		Client:   mgr.GetClient(),
		Issuer:   iss,
		Trust:    trust,
		Recorder: mgr.GetEventRecorder("meshca"),
		Metrics:  metrics,
		Limiter:  rate.NewLimiter(rate.Limit(o.maxIssuanceRate), burst),
		Config: controller.TLSContextConfig{
			TrustDomain:           o.trustDomain,
			Selector:              selector,
			GatewayServiceAccount: o.gatewayServiceAcct,
			KeyAlgorithm:          alg,
			Cleanup:               controller.SecretCleanup(o.secretCleanup),
			AllowCrossNamespace:   o.allowCrossNamespace,
		},
	}
	if err := tls.SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("set up TLSContext controller: %w", err)
	}
	audit, err := rotator.NewAudit(rotator.AuditConfig{
		Schedule: o.auditSchedule,
		Sweep: func(ctx context.Context) {
			log.Info("audit sweep")
			tls.ResyncAll(ctx)
		},
	})
	if err != nil {
		return fmt.Errorf("--audit-schedule: %w", err)
	}
	// The CA rotator publishes, activates and prunes CAs in the CA Secret;
	// each change reaches the issuer, the trust bundle and every ca.crt.
	caRotator, err := rotator.NewCARotator(rotator.CARotatorConfig{
		Store:  store,
		Policy: rotator.CAPolicy{MaxLeafLifetime: o.leafDuration},
		Log:    log.With("component", "ca-rotator"),
		OnChange: func(ctx context.Context, st *ca.State) error {
			if err := iss.SetCA(st); err != nil {
				return err
			}
			if err := trust.Set(st.Bundle()); err != nil {
				return err
			}
			tls.ResyncAll(ctx)
			return nil
		},
	})
	if err != nil {
		return err
	}
	// A plain Runnable runs only on the leader.
	if err := mgr.Add(manager.RunnableFunc(caRotator.Start)); err != nil {
		return err
	}
	return mgr.Add(manager.RunnableFunc(audit.Start))
}
