// Command meshca is meshca's one binary: the daemon (serve), the CA and
// issuance tools for operators (ca, issue), status and version.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	err := newRootCommand().Execute()
	if err == nil {
		return
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
		err = ee.err
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshca:", err)
	}
	os.Exit(code)
}

// exitError ends meshca with an exit code other than 1 (renew's refusal,
// check's warnings); err, when not nil, is printed first.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

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
	root.AddCommand(newVersionCommand(), newServeCommand(), newCACommand(), newIssueCommand(), newStatusCommand(), newRenewCommand(), newCheckCommand())
	return root
}
