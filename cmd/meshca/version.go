package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version and commit are set at build time: -ldflags "-X main.version=v1.2.3
// -X main.commit=<git commit>" (the Dockerfile, make build, hack/node). An
// empty commit falls back to the commit Go records when it builds in a git
// checkout.
var (
	version = "dev"
	commit  = ""
)

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print meshca's version, commit and Go version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			commit, dirty := commit, ""
			if commit == "" {
				commit = "unknown"
			}
			if info, ok := debug.ReadBuildInfo(); ok && commit == "unknown" {
				for _, s := range info.Settings {
					switch s.Key {
					case "vcs.revision":
						commit = s.Value
					case "vcs.modified":
						if s.Value == "true" {
							dirty = "-dirty"
						}
					}
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "meshca %s (commit %s%s, %s, %s/%s)\n",
				version, commit, dirty, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}
