package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/rotator"
)

func newCARotateCommand() *cobra.Command {
	var (
		kubeconfig, namespace, secret string
		activateAfter                 time.Duration
	)
	cmd := &cobra.Command{
		Use:   "rotate [--kubeconfig K] [--namespace N] [--activate-after 1h]",
		Short: "Start a CA rotation now: publish the next CA at once and activate it after a delay",
		Long: "Prepare the next CA in the meshca-ca Secret now (same key algorithm and trust domain as the\n" +
			"current one) unless one is already published, and set it to start signing after --activate-after.\n" +
			"The running meshca picks the change up within its poll interval, publishes the new root in every\n" +
			"trust bundle at once, activates it at the recorded time (but never sooner than its --ca-publish-grace,\n" +
			"2m by default, after it published it) and prunes the old root once every leaf it\n" +
			"signed has expired. Choose a delay long enough for every consumer to reload its bundle.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if namespace == "" {
				namespace = podNamespace()
			}
			cs, err := cliClientset(kubeconfig, 5, 10)
			if err != nil {
				return err
			}
			store := ca.SecretStore{Client: cs, Namespace: namespace, Name: secret}
			st, err := rotateCA(cmd.Context(), store, clock.RealClock{}, activateAfter)
			if err != nil {
				return err
			}
			return showRotation(cmd.OutOrStdout(), store.String(), st)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the cluster; default $KUBECONFIG, else the in-cluster config")
	f.StringVar(&namespace, "namespace", "", "namespace of the CA Secret; default: the pod's namespace, else meshca-system")
	f.StringVar(&secret, "secret", ca.DefaultSecretName, "name of the CA Secret")
	f.DurationVar(&activateAfter, "activate-after", time.Hour, "how long the next CA is published before it starts signing")
	return cmd
}

// rotateCA loads the CA state, forces a rotation and saves it at the
// resourceVersion it read. If the Secret changed in between (the rotator or
// another operator wrote), it reads it again and retries once.
func rotateCA(ctx context.Context, store rotator.CAStore, clk clock.PassiveClock, activateAfter time.Duration) (*ca.State, error) {
	newCA := func(cur *ca.CA) (*ca.CA, error) {
		cfg, err := ca.SuccessorConfig(cur, clk)
		if err != nil {
			return nil, err
		}
		return ca.New(cfg)
	}
	var lastErr error
	for range 2 {
		st, err := store.Load(ctx)
		if err != nil {
			return nil, fmt.Errorf("rotate CA: %w", err)
		}
		next, err := rotator.ForceRotation(st, clk.Now(), activateAfter, newCA)
		if err != nil {
			return nil, err
		}
		saved, err := store.Save(ctx, next)
		if err == nil {
			return saved, nil
		}
		if !errors.Is(err, ca.ErrConflict) {
			return nil, fmt.Errorf("rotate CA: %w", err)
		}
		lastErr = err
	}
	return nil, fmt.Errorf("rotate CA: the CA Secret changed twice while it was being rotated; try again: %w", lastErr)
}

func showRotation(w io.Writer, where string, st *ca.State) error {
	fmt.Fprintf(w, "CA rotation started in %s\n", where)
	fmt.Fprintf(w, "  current (signs until activation): %s\n", st.Current.Fingerprint())
	fmt.Fprintf(w, "  next (in the bundle now):         %s\n", st.Next.Fingerprint())
	if r := st.Record.Next; r != nil && r.ActivateAt != nil {
		fmt.Fprintf(w, "  next activates at:                %s\n", r.ActivateAt.UTC().Format(time.RFC3339))
	}
	return nil
}
