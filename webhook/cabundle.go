package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
)

// FieldManager is the field manager of meshca's writes to the API server.
const FieldManager = "meshca-webhook"

// CABundleSyncerConfig configures a CABundleSyncer.
type CABundleSyncerConfig struct {
	// Client reads, watches and updates the MutatingWebhookConfiguration.
	// Required.
	Client kubernetes.Interface
	// Name is the MutatingWebhookConfiguration's name. Empty means "meshca".
	Name string
	// Bundle returns the PEM trust bundle that every webhook's
	// clientConfig.caBundle must equal: during a CA rotation, both roots.
	// Required. An error or an empty bundle leaves the configuration alone
	// (an empty caBundle would mean the API server's own roots).
	Bundle func() ([]byte, error)
	// Changed, if not nil, tells the syncer that Bundle's value changed; it
	// reconciles at once. Without it a new bundle is seen at the next resync.
	Changed <-chan struct{}
	// ResyncPeriod re-checks the configuration periodically. Zero means 5m.
	ResyncPeriod time.Duration
	// RetryPeriod is the first wait after a failed update; it doubles up to
	// 5m. Zero means 1s.
	RetryPeriod time.Duration
	// Clock drives retries. Nil means the real clock.
	Clock clock.Clock
	// Logger reports repairs and failures. The zero Logger discards.
	Logger logr.Logger
}

// CABundleSyncer keeps webhooks[*].clientConfig.caBundle of one
// MutatingWebhookConfiguration equal to the trust bundle. It watches the
// configuration, so an edit is repaired at once, and writes only when a
// caBundle differs. Every replica may run one: writes are conditional on the
// resourceVersion and retried on conflict.
type CABundleSyncer struct {
	cfg CABundleSyncerConfig
}

// NewCABundleSyncer checks cfg and fills its defaults.
func NewCABundleSyncer(cfg CABundleSyncerConfig) (*CABundleSyncer, error) {
	if cfg.Client == nil || cfg.Bundle == nil {
		return nil, errors.New("webhook: CABundleSyncerConfig needs Client and Bundle")
	}
	if cfg.Name == "" {
		cfg.Name = "meshca"
	}
	setDefault(&cfg.ResyncPeriod, 5*time.Minute)
	setDefault(&cfg.RetryPeriod, time.Second)
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	return &CABundleSyncer{cfg: cfg}, nil
}

// Start reconciles until ctx is done.
func (s *CABundleSyncer) Start(ctx context.Context) error {
	log := s.cfg.Logger.WithValues("mutatingWebhookConfiguration", s.cfg.Name)
	factory := informers.NewSharedInformerFactoryWithOptions(s.cfg.Client, s.cfg.ResyncPeriod,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", s.cfg.Name).String()
		}))
	informer := factory.Admissionregistration().V1().MutatingWebhookConfigurations()
	lister := informer.Lister()
	trigger := make(chan struct{}, 1)
	poke := func() {
		select {
		case trigger <- struct{}{}:
		default:
		}
	}
	if _, err := informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
	}); err != nil {
		return fmt.Errorf("webhook: watch MutatingWebhookConfiguration %s: %w", s.cfg.Name, err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	factory.WaitForCacheSync(ctx.Done())

	changed := s.cfg.Changed
	var retryC <-chan time.Time
	var retryTimer clock.Timer
	defer func() {
		if retryTimer != nil {
			retryTimer.Stop()
		}
	}()
	backoff := s.cfg.RetryPeriod
	poke()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-trigger:
		case _, ok := <-changed:
			if !ok {
				changed = nil // closed: never fires again
			}
		case <-retryC:
		}
		retryC = nil
		if retryTimer != nil {
			retryTimer.Stop()
			retryTimer = nil
		}
		if err := s.sync(ctx, lister.Get); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Error(err, "caBundle not synced; retrying", "in", backoff)
			retryTimer = s.cfg.Clock.NewTimer(backoff)
			retryC = retryTimer.C()
			backoff = min(2*backoff, 5*time.Minute)
			continue
		}
		backoff = s.cfg.RetryPeriod
	}
}

// sync makes the caBundles equal to the bundle. cached reads the informer's
// copy so that an in-sync configuration costs no API call; a conflicting
// write retries from a fresh read.
func (s *CABundleSyncer) sync(ctx context.Context, cached func(string) (*admissionregistrationv1.MutatingWebhookConfiguration, error)) error {
	bundle, err := s.cfg.Bundle()
	if err != nil {
		return fmt.Errorf("get trust bundle: %w", err)
	}
	if len(bytes.TrimSpace(bundle)) == 0 {
		return errors.New("trust bundle is empty")
	}
	api := s.cfg.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	first := true
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var cur *admissionregistrationv1.MutatingWebhookConfiguration
		var err error
		if first {
			first = false
			cur, err = cached(s.cfg.Name)
		} else {
			cur, err = api.Get(ctx, s.cfg.Name, metav1.GetOptions{})
		}
		if apierrors.IsNotFound(err) {
			return nil // nothing to keep in sync yet; its creation will be watched
		}
		if err != nil {
			return fmt.Errorf("get MutatingWebhookConfiguration %s: %w", s.cfg.Name, err)
		}
		var stale []string
		for _, w := range cur.Webhooks {
			if !bytes.Equal(w.ClientConfig.CABundle, bundle) {
				stale = append(stale, w.Name)
			}
		}
		if len(stale) == 0 {
			return nil
		}
		upd := cur.DeepCopy()
		for i := range upd.Webhooks {
			upd.Webhooks[i].ClientConfig.CABundle = bundle
		}
		if _, err := api.Update(ctx, upd, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
			return fmt.Errorf("update caBundle of MutatingWebhookConfiguration %s: %w", s.cfg.Name, err)
		}
		s.cfg.Logger.Info("caBundle updated", "mutatingWebhookConfiguration", s.cfg.Name, "webhooks", stale)
		return nil
	})
}
