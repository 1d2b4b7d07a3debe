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
	"strings"
	"syscall"

	"k8s.io/client-go/tools/clientcmd"

	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshca/meshca/internal/testenv"
)

func main() {
	dir := flag.String("dir", ".cache/run", "folder for the kubeconfig and the control plane's state")
	crds := flag.String("crds", "config/crd", "folder of CRD manifests to install")
	as := flag.String("impersonate", "", "also write kubeconfig-<name> that impersonates this ServiceAccount (namespace/name), so meshca runs with exactly its RBAC")
	flag.Parse()
	if err := run(*dir, *crds, *as); err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}

func run(dir, crds, as string) error {
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
	if as != "" {
		ns, name, ok := strings.Cut(as, "/")
		if !ok {
			return fmt.Errorf("--impersonate %q: want namespace/name", as)
		}
		cfg, err := clientcmd.Load(kc)
		if err != nil {
			return err
		}
		for _, auth := range cfg.AuthInfos {
			auth.Impersonate = "system:serviceaccount:" + ns + ":" + name
			auth.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
		}
		out, err := clientcmd.Write(*cfg)
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, "kubeconfig-"+name), out); err != nil {
			return err
		}
	}
	// The admin kubeconfig is written last: its presence says "ready".
	path := filepath.Join(dir, "kubeconfig")
	if err := writeFile(path, kc); err != nil {
		return err
	}
	fmt.Printf("control plane ready: %s\n", env.Config.Host)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	os.Remove(path)
	return nil
}

// writeFile writes through a temporary file so readers never see half a file.
func writeFile(path string, data []byte) error {
	if err := os.WriteFile(path+".tmp", data, 0o600); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}
