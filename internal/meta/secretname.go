package meta

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// WorkloadSecretSuffix follows a workload's name in its default Secret name.
const WorkloadSecretSuffix = "-meshca-tls"

// ErrInvalidSecretName is wrapped by WorkloadSecretName's errors: the name
// is not a valid Secret name, or there is no name to derive it from.
var ErrInvalidSecretName = errors.New("invalid workload Secret name")

// WorkloadSecretName is the name of the Secret that holds a workload's
// certificate, as the controller writes it and the webhook mounts it:
// AnnotationSecretName with surrounding space trimmed, or, when that is
// absent or blank, workloadName + WorkloadSecretSuffix. The name must be a
// DNS-1123 subdomain in the workload's namespace (there is no
// name.namespace form here). workloadName may be empty (an object created
// with generateName has no name yet); then the annotation is required.
func WorkloadSecretName(annotations map[string]string, workloadName string) (string, error) {
	name := strings.TrimSpace(annotations[AnnotationSecretName])
	if name == "" {
		if workloadName == "" {
			return "", fmt.Errorf("%w: the workload has no name yet (generateName); set annotation %s", ErrInvalidSecretName, AnnotationSecretName)
		}
		name = workloadName + WorkloadSecretSuffix
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "", fmt.Errorf("%w: %q (annotation %s): %s", ErrInvalidSecretName, name, AnnotationSecretName, strings.Join(errs, "; "))
	}
	return name, nil
}
