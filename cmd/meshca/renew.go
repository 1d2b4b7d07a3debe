package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/spf13/cobra"

	"github.com/meshca/meshca/internal/meta"
)

// exitRenewRefused is renew's exit code for a Secret meshca does not keep.
const exitRenewRefused = 3

// errNotRenewable is wrapped by renew's refusals.
var errNotRenewable = errors.New("not a certificate Secret meshca keeps")

func newRenewCommand() *cobra.Command {
	var (
		kube kubeFlags
		wait time.Duration
	)
	cmd := &cobra.Command{
		Use:   "renew NAMESPACE/SECRET",
		Short: "Have the running leader replace a managed certificate now (reason Manual)",
		Long: `Ask meshca to re-issue the certificate in a Secret it manages now, before its
renewal time, as cmctl renew does for cert-manager. The command only marks the
Secret: it sets the annotation meshca.io/renew-requested to the serial of the
certificate in it, and the running leader replaces exactly that certificate
within moments, recording the reason Manual (meshca.io/reason, the Event and
the reason label of meshca_certificates_issued_total). --max-issuance-rate
still applies, and a request whose certificate was replaced is spent.

With --wait D the command waits up to D for the new certificate and prints its
serial.

Exit codes: 0 the renewal was requested (and, with --wait, done); 1 an error
(the Secret is missing, the API server refused, --wait ran out); 3 the Secret
is not a certificate meshca keeps (no app.kubernetes.io/managed-by=meshca
label, no meshca.io/source or meshca.io/serial, or the webhook's own serving
certificate, which meshca renews on its schedule only).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, name, ok := strings.Cut(args[0], "/")
			if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
				return fmt.Errorf("want NAMESPACE/SECRET, got %q", args[0])
			}
			cs, err := kube.clientset(5, 10)
			if err != nil {
				return err
			}
			serial, err := requestRenewal(cmd.Context(), cs, ns, name)
			if errors.Is(err, errNotRenewable) {
				return &exitError{code: exitRenewRefused, err: err}
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "renewal of %s/%s requested: the leader replaces serial %s (reason Manual)\n", ns, name, serial)
			if wait <= 0 {
				return nil
			}
			return waitRenewed(cmd.Context(), out, cs, ns, name, serial, wait)
		},
	}
	kube.addFlags(cmd.Flags())
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait this long for the new certificate and print its serial; 0: do not wait")
	return cmd
}

// requestRenewal marks Secret ns/name for renewal of the certificate in it
// and returns that certificate's serial. The annotation is written at the
// resourceVersion read, so a certificate replaced in between is not marked
// by mistake: on a conflict it reads the Secret again, once.
func requestRenewal(ctx context.Context, cs kubernetes.Interface, ns, name string) (string, error) {
	for attempt := 0; ; attempt++ {
		s, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("get Secret %s/%s: %w", ns, name, err)
		}
		serial, err := renewable(s)
		if err != nil {
			return "", err
		}
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
			"resourceVersion": s.ResourceVersion,
			"annotations":     map[string]string{meta.AnnotationRenewRequested: serial},
		}})
		if err != nil {
			return "", err
		}
		_, err = cs.CoreV1().Secrets(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "meshca-renew"})
		if apierrors.IsConflict(err) && attempt == 0 {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("annotate Secret %s/%s: %w", ns, name, err)
		}
		return serial, nil
	}
}

// renewable returns the serial of the certificate meshca keeps in s, or an
// error wrapping errNotRenewable.
func renewable(s *corev1.Secret) (string, error) {
	ref := s.Namespace + "/" + s.Name
	source := s.Annotations[meta.AnnotationSource]
	serial := strings.TrimSpace(s.Annotations[meta.AnnotationSerial])
	switch {
	case s.Labels[meta.LabelManagedBy] != meta.ManagedByValue:
		return "", fmt.Errorf("secret %s: %w: it lacks the label %s=%s", ref, errNotRenewable, meta.LabelManagedBy, meta.ManagedByValue)
	case source == "":
		return "", fmt.Errorf("secret %s: %w: it names no source object (%s)", ref, errNotRenewable, meta.AnnotationSource)
	case strings.HasPrefix(source, "meshca/"):
		return "", fmt.Errorf("secret %s: %w: it holds meshca's own certificate (%s), renewed on its schedule only", ref, errNotRenewable, source)
	case serial == "":
		return "", fmt.Errorf("secret %s: %w: it holds no certificate meshca issued (%s)", ref, errNotRenewable, meta.AnnotationSerial)
	}
	return serial, nil
}

// waitRenewed polls Secret ns/name until its serial is no longer old, for
// at most timeout.
func waitRenewed(ctx context.Context, out io.Writer, cs kubernetes.Interface, ns, name, old string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		s, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && s.Annotations[meta.AnnotationSerial] != old && s.Annotations[meta.AnnotationSerial] != "" {
			fmt.Fprintf(out, "renewed: serial %s (reason %s), valid until %s\n",
				s.Annotations[meta.AnnotationSerial], s.Annotations[meta.AnnotationReason], s.Annotations[meta.AnnotationNotAfter])
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("secret %s/%s still holds serial %s after %s: is a meshca leader running? (meshca check): %w", ns, name, old, timeout, ctx.Err())
		case <-tick.C:
		}
	}
}
