package main

import (
	"os"

	"k8s.io/client-go/kubernetes"
)

// cliClientset is the API client of the one-shot commands (ca import, ca
// rotate, status): --kubeconfig, else $KUBECONFIG as kubectl reads it, else
// the in-cluster config.
func cliClientset(kubeconfig string, qps float32, burst int) (*kubernetes.Clientset, error) {
	if kubeconfig == "" {
		kubeconfig = os.Getenv("KUBECONFIG")
	}
	cfg, err := restConfig(kubeconfig, qps, burst)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}
