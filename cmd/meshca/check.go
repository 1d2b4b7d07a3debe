package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/check"
)

func newCheckCommand() *cobra.Command {
	var (
		kube                               kubeFlags
		namespace, secret, webhookConfig   string
		selector, output                   string
		caThreshold, secretThreshold, dial time.Duration
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Pre-flight and health checks of a meshca install, one line each, with an exit code",
		Long: `Check a meshca install from the API server, as linkerd check does, and print
one line per check:

  crd                tlscontexts.getambassador.io serves v3alpha1
  ca                 the CA Secret is readable; WARN when its signing chain
                     expires within --ca-expiry-threshold and no next CA is
                     published, FAIL when expired
  leader             the Lease "meshca" is held and not expired
  webhook-config     the MutatingWebhookConfiguration exists and each
                     webhook's caBundle holds exactly the CA's roots
  webhook-reachable  a TLS handshake with each webhook, trusting only its
                     caBundle; a webhook behind a Service is dialled only from
                     inside a pod: from outside it is SKIP when the Service
                     has ready endpoints and FAIL when it has none
  trust-bundles      every selected namespace has a meshca-trust-bundle
                     ConfigMap holding every root of the CA
  secrets            no managed certificate in a selected namespace is expired
                     (FAIL) or expires within --secret-expiry-threshold (WARN)

Exit codes: 0 every check passed or was skipped; 1 at least one FAIL; 2 no
FAIL but at least one WARN. Only reads the cluster.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o must be text or json, got %q", output)
			}
			sel, err := labels.Parse(selector)
			if err != nil {
				return fmt.Errorf("--namespace-selector: %w", err)
			}
			if namespace == "" {
				namespace = podNamespace()
			}
			cs, err := kube.clientset(20, 40)
			if err != nil {
				return err
			}
			results := check.Run(cmd.Context(), check.Config{
				Client:                cs,
				Namespace:             namespace,
				CASecret:              secret,
				WebhookConfiguration:  webhookConfig,
				Namespaces:            sel,
				CAExpiryThreshold:     caThreshold,
				SecretExpiryThreshold: secretThreshold,
				InCluster:             os.Getenv("KUBERNETES_SERVICE_HOST") != "",
				Timeout:               dial,
			})
			out := cmd.OutOrStdout()
			if output == "json" {
				err = check.JSON(out, results)
			} else {
				err = check.Text(out, results)
			}
			if err != nil {
				return err
			}
			if code := check.ExitCode(results); code != check.ExitHealthy {
				return &exitError{code: code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	kube.addFlags(f)
	f.StringVarP(&namespace, "namespace", "n", "", "meshca's namespace (the CA Secret and the Lease); default: the pod's namespace, else meshca-system")
	f.StringVar(&secret, "secret", ca.DefaultSecretName, "name of the CA Secret")
	f.StringVar(&webhookConfig, "webhook-configuration", "meshca", "name of the MutatingWebhookConfiguration meshca keeps (serve's --webhook-configuration)")
	f.StringVar(&selector, "namespace-selector", "", "label selector of the namespaces whose trust bundle and managed Secrets are checked (match serve's --bundle-namespace-selector and --watch-namespaces); empty: all")
	f.DurationVar(&caThreshold, "ca-expiry-threshold", 30*24*time.Hour, "warn when the CA's signing chain expires within this and no next CA is published")
	f.DurationVar(&secretThreshold, "secret-expiry-threshold", time.Hour, "warn when a managed certificate expires within this")
	f.DurationVar(&dial, "timeout", 5*time.Second, "time allowed for each connection to a webhook")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
