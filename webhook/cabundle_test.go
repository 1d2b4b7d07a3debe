package webhook

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/internal/testpki"
)

func TestCABundleSyncer(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	api := env.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations()
	name := "meshca-syncer-" + env.Namespace(t)

	// Two webhooks, empty caBundles, never called: the object selector
	// matches nothing and failures are ignored, so parallel tests are safe.
	cfg := webhookConfiguration(name, "https://127.0.0.1:1/mutate", nil)
	cfg.Webhooks = append(cfg.Webhooks, *cfg.Webhooks[0].DeepCopy())
	cfg.Webhooks[1].Name = "second.meshca.io"
	for i := range cfg.Webhooks {
		cfg.Webhooks[i].ObjectSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"meshca.io/never": "true"}}
		ignore := admissionregistrationv1.Ignore
		cfg.Webhooks[i].FailurePolicy = &ignore
	}
	if _, err := api.Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Delete(context.Background(), name, metav1.DeleteOptions{}) })

	oldRoot, newRoot := testpki.New(t).RootPEM, testpki.New(t).RootPEM
	var bundle atomic.Pointer[[]byte]
	bundle.Store(&oldRoot)
	changed := make(chan struct{}, 1)
	syncer, err := NewCABundleSyncer(CABundleSyncerConfig{
		Client:  env.Clientset,
		Name:    name,
		Bundle:  func() ([]byte, error) { return *bundle.Load(), nil },
		Changed: changed,
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, "CABundleSyncer", syncer.Start)

	inSync := func(want []byte) func() (bool, error) {
		return func() (bool, error) {
			got, err := api.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, w := range got.Webhooks {
				if !bytes.Equal(w.ClientConfig.CABundle, want) {
					return false, nil
				}
			}
			return true, nil
		}
	}
	eventually(t, 30*time.Second, "empty caBundles filled", inSync(oldRoot))

	// Someone edits the configuration: the syncer repairs it.
	got, err := api.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got.Webhooks[1].ClientConfig.CABundle = newRoot
	if _, err := api.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "edited caBundle repaired", inSync(oldRoot))

	// CA rotation: the bundle holds both roots.
	both := append(append([]byte{}, oldRoot...), newRoot...)
	bundle.Store(&both)
	changed <- struct{}{}
	eventually(t, 30*time.Second, "both roots published", inSync(both))

	// In sync, a signal writes nothing.
	before, err := api.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	changed <- struct{}{}
	changed <- struct{}{} // the second send waits until the first was taken
	after, err := api.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if before.ResourceVersion != after.ResourceVersion {
		t.Errorf("an in-sync configuration was written: resourceVersion %s -> %s", before.ResourceVersion, after.ResourceVersion)
	}
}

func TestNewCABundleSyncerRequires(t *testing.T) {
	t.Parallel()
	if _, err := NewCABundleSyncer(CABundleSyncerConfig{}); err == nil {
		t.Error("no error without Client and Bundle")
	}
}
