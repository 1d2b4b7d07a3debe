// Command localcluster runs the local control plane (kube-apiserver and etcd
// from the tool cache) for `make run`: it installs meshca's CRDs, writes an
// administrator kubeconfig into --dir and serves until SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshca/meshca/internal/testenv"
)

func main() {
	dir := flag.String("dir", ".cache/run", "folder for the kubeconfig and the control plane's state")
	crds := flag.String("crds", "config/crd", "folder of CRD manifests to install")
	flag.Parse()
	if err := run(*dir, *crds); err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}

func run(dir, crds string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "etcd"), 0o700); err != nil {
		return err
	}
	bin := testenv.BinDir()
	if os.Getenv("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT") == "" {
		os.Setenv("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT", "90s")
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: bin,
		CRDDirectoryPaths:     []string{crds},
		ErrorIfCRDPathMissing: true,
	}
	env.ControlPlane.Etcd = &envtest.Etcd{DataDir: filepath.Join(dir, "etcd")}
	if _, err := env.Start(); err != nil {
		return fmt.Errorf("start control plane from %s: %w", bin, err)
	}
	defer env.Stop()
	user, err := env.ControlPlane.AddUser(envtest.User{Name: "meshca-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("add admin user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path+".tmp", kc, 0o600); err != nil {
		return err
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return err
	}
	fmt.Printf("control plane ready: %s\n", env.Config.Host)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	os.Remove(path)
	return nil
}
