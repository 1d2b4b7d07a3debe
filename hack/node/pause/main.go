// Command pause is the node harness's sandbox image: it holds a Pod's
// namespaces open and exits on SIGTERM or SIGINT. It stands in for
// registry.k8s.io/pause, which cannot be pulled on these machines.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
