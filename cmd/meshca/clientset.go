package main

import (
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// kubeFlags choose the cluster of the one-shot commands (ca import, ca
// rotate, status, renew, check) the way kubectl does: --kubeconfig, else
// the files in $KUBECONFIG (colon-separated, merged), else ~/.kube/config;
// --context picks a context of the merged config instead of its
// current-context; and when no kubeconfig is found at all, the in-cluster
// config. The zero value means all of those defaults.
type kubeFlags struct {
	kubeconfig string
	context    string
}

// addFlags registers --kubeconfig and --context on fs.
func (k *kubeFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file of the cluster; default: the files in $KUBECONFIG, else ~/.kube/config, else the in-cluster config (as kubectl)")
	fs.StringVar(&k.context, "context", "", "kubeconfig context to use; default: the kubeconfig's current-context")
}

// restConfig resolves the flags with client-go's loading rules, the same
// code kubectl runs, so a kubeconfig that works with kubectl works here.
func (k *kubeFlags) restConfig(qps float32, burst int) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: k.context}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = qps, burst
	cfg.UserAgent = "meshca/" + version
	return cfg, nil
}

// clientset is restConfig's typed client.
func (k *kubeFlags) clientset(qps float32, burst int) (*kubernetes.Clientset, error) {
	cfg, err := k.restConfig(qps, burst)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}
