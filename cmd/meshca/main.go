// Command meshca is meshca's one binary. This minimal root registers the
// ca and issue commands; the full root (serve, status, version) lives on
// the main branch and is merged with it.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "meshca:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "meshca",
		Short:         "Certificate issuance with a mesh-style mini CA for Kubernetes",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newCACommand(), newIssueCommand())
	return root
}
