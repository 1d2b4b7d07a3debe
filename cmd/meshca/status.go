package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/meshca/meshca/internal/status"
)

func newStatusCommand() *cobra.Command {
	var namespace, output string
	var kube kubeFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show managed certificates, CA slots, the trust bundle and the leader",
		Long: `Show what meshca manages: every Secret it wrote (namespace, Secret, source,
identity, expiry, renewal time, state and the reason of the last issue), the CA
slots with their expiry, the number of roots in the trust bundle, and which
replica leads. Private keys are never read into the output.

On a terminal, times are relative and states coloured; -o json is for scripts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o must be table or json, got %q", output)
			}
			cs, err := kube.clientset(20, 40)
			if err != nil {
				return err
			}
			r, err := status.Collect(cmd.Context(), cs, namespace, time.Now())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				return status.JSON(out, r)
			}
			tty := false
			if f, ok := out.(*os.File); ok {
				tty = term.IsTerminal(int(f.Fd()))
			}
			return status.Table(out, r, status.Style{Color: tty && os.Getenv("NO_COLOR") == "", Relative: tty})
		},
	}
	kube.addFlags(cmd.Flags())
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "meshca-system", "meshca's namespace (the CA Secret and the leader Lease)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}
