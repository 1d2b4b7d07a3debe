// Command meshca is meshca's one binary: the daemon (serve), the CA and
// issuance tools for operators (ca, issue), status and version.
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
		Use:   "meshca",
		Short: "Certificate issuance with a mesh-style mini CA for Kubernetes",
		Long: `meshca runs an internal CA (root and intermediate), signs gateway certificates
into the Secrets that Emissary TLSContexts name and workload certificates for
annotated Deployments, renews them before they expire, and injects the trust
bundle into workloads through a mutating admission webhook.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newVersionCommand(), newServeCommand(), newCACommand(), newIssueCommand(), newStatusCommand())
	return root
}
