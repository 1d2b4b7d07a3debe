package controller

import (
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/internal/meta"
)

// workloadSpec is what an annotated workload asks of meshca.
type workloadSpec struct {
	Secret          secretRef
	ServiceAccount  string
	DNSNames        []string
	RestartOnRotate bool
	certOptions
}

// parseWorkloadSpec reads a workload's annotations and pod template.
func parseWorkloadSpec(o client.Object, cfg WorkloadConfig) (*workloadSpec, error) {
	ann := o.GetAnnotations()
	ns, name := o.GetNamespace(), o.GetName()
	// The webhook mounts the Secret of the same name (meta.WorkloadSecretName).
	secret, err := meta.WorkloadSecretName(ann, name)
	if err != nil {
		return nil, specErrorf("%v", err)
	}
	w := &workloadSpec{
		Secret:          secretRef{Namespace: ns, Name: secret},
		ServiceAccount:  podTemplate(o).Spec.ServiceAccountName,
		RestartOnRotate: strings.EqualFold(ann[meta.AnnotationRestartOnRotate], "true"),
	}
	if w.ServiceAccount == "" {
		w.ServiceAccount = "default"
	}
	own := []string{name + "." + ns + ".svc", name + "." + ns + ".svc." + cfg.ClusterDomain}
	if w.DNSNames, err = dnsNameSet(own, ann[meta.AnnotationDNSNames]); err != nil {
		return nil, err
	}
	if w.certOptions, err = parseCertOptions(ann, string(cfg.KeyAlgorithm)); err != nil {
		return nil, err
	}
	return w, nil
}
