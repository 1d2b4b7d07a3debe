package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/ca/castore"
)

func newCAImportCommand() *cobra.Command {
	var namespace, from, format string
	var kube kubeFlags
	cmd := &cobra.Command{
		Use:   "import --from NAMESPACE/SECRET --format cert-manager|istio",
		Short: "Bring your own CA: create meshca-ca from a cert-manager or Istio cacerts Secret",
		Long: `Create the meshca-ca Secret from a CA you already have, before meshca's first
start, so meshca signs with your intermediate instead of minting its own CA.

  --format cert-manager   tls.crt (signing certificate and chain), tls.key, ca.crt (root)
  --format istio          ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem

The root's private key is not needed: only the intermediate signs. The CA is
checked (chain, key match, CA flags) before anything is written, and an
existing meshca-ca is never replaced: the command fails instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			srcNS, srcName, ok := strings.Cut(from, "/")
			if !ok || srcNS == "" || srcName == "" {
				return fmt.Errorf("--from %q: want NAMESPACE/SECRET", from)
			}
			parse := map[string]func(map[string][]byte) (*ca.CA, error){
				"cert-manager": ca.FromCertManagerSecret,
				"istio":        ca.FromIstioSecret,
			}[format]
			if parse == nil {
				return fmt.Errorf("--format must be cert-manager or istio, got %q", format)
			}
			if namespace == "" {
				namespace = podNamespace()
			}
			cs, err := kube.clientset(5, 10)
			if err != nil {
				return err
			}
			src, err := cs.CoreV1().Secrets(srcNS).Get(cmd.Context(), srcName, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("read %s: %w", from, err)
			}
			c, err := parse(src.Data)
			if err != nil {
				return fmt.Errorf("%s is not a usable %s CA: %w", from, format, err)
			}
			store := castore.Secret{Client: cs, Namespace: namespace}
			if _, err := store.Save(cmd.Context(), ca.NewState(c, format, time.Now())); err != nil {
				if errors.Is(err, ca.ErrAlreadyExists) {
					return fmt.Errorf("%s already exists; meshca never replaces a CA (use meshca ca rotate to change it): %w", store, err)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %s (%s) into %s\n  signing: %s\n  fingerprint: %s\n  not after: %s\n",
				from, format, store, c.Intermediate.Subject, c.Fingerprint(), c.Intermediate.NotAfter.UTC().Format(time.RFC3339))
			return nil
		},
	}
	f := cmd.Flags()
	kube.addFlags(f)
	f.StringVar(&namespace, "namespace", "", "meshca's namespace, where meshca-ca is created; default: the pod's namespace, else meshca-system")
	f.StringVar(&from, "from", "", "the Secret holding your CA, as NAMESPACE/NAME")
	f.StringVar(&format, "format", "", "the Secret's shape: cert-manager or istio")
	return cmd
}
