package webhook_test

import (
	"context"
	"os"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	"github.com/meshca/meshca/webhook"
)

// Example wires the webhook the way `meshca serve` does on every replica:
// the serving certificate comes from a Secret that another part of meshca
// (the issuer, through a controller) keeps signed for --webhook-names, and
// the configuration's caBundle follows the CA's trust bundle.
func Example() {
	var (
		client      kubernetes.Interface       // from --kubeconfig
		trustBundle func() ([]byte, error)     // the CA's current bundle (both roots while rotating)
		bundleMoved <-chan struct{}            // signalled when the bundle changes
		registry    = prometheus.NewRegistry() // served at --metrics-address
	)
	certs, err := webhook.NewSecretCertificate(webhook.SecretCertificateConfig{
		Client: client, Namespace: "meshca-system", Name: "meshca-webhook-tls",
	})
	if err != nil {
		os.Exit(1)
	}
	server, err := webhook.New(webhook.Config{Addr: ":9443", Certificates: certs, Registry: registry})
	if err != nil {
		os.Exit(1)
	}
	syncer, err := webhook.NewCABundleSyncer(webhook.CABundleSyncerConfig{
		Client: client, Name: "meshca", Bundle: trustBundle, Changed: bundleMoved,
	})
	if err != nil {
		os.Exit(1)
	}
	// Each part blocks until ctx is done; the daemon runs them side by
	// side (errgroup-style) and cancels ctx on the first error or a signal.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for _, start := range []func(context.Context) error{certs.Start, server.Start, syncer.Start} {
		wg.Go(func() {
			if err := start(ctx); err != nil {
				cancel()
			}
		})
	}
	wg.Wait()
}
