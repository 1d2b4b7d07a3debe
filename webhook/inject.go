package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/meshca/meshca/internal/meta"
)

// The annotations that opt a workload in, read from the workload's metadata
// and, failing that, from its pod template's.
const (
	AnnotationInjectTrustBundle = meta.AnnotationInjectTrustBundle
	AnnotationCertificate       = meta.AnnotationCertificate
	AnnotationSecretName        = meta.AnnotationSecretName
)

// What the webhook mounts and where.
const (
	TrustBundleConfigMap = "meshca-trust-bundle"
	TrustBundleKey       = "ca.crt"
	TrustVolumeName      = "meshca-trust"
	TrustMountPath       = "/var/run/meshca/trust"
	TLSVolumeName        = "meshca-tls"
	TLSMountPath         = "/var/run/meshca/tls"
	// SecretNameSuffix follows the workload's name in the default Secret name.
	SecretNameSuffix = meta.WorkloadSecretSuffix

	EnvCAFile   = "MESHCA_CA_FILE"
	EnvCertFile = "MESHCA_CERT_FILE"
	EnvKeyFile  = "MESHCA_KEY_FILE"
)

// ErrConflict is wrapped by the errors that refuse a workload because its pod
// template already uses one of meshca's volume names or mount paths for
// something else.
var ErrConflict = errors.New("conflicts with meshca injection")

// ErrNoSecretName is wrapped by the errors that refuse a workload whose
// certificate Secret cannot be named: meshca.io/secret-name is not a valid
// Secret name, or the object has no name yet (generateName) and no
// meshca.io/secret-name. The controller reads the name the same way
// (meta.WorkloadSecretName) and would issue nothing, so the webhook refuses
// rather than mount a Secret that never comes.
var ErrNoSecretName = meta.ErrInvalidSecretName

// workload is the part of a Deployment, StatefulSet or DaemonSet the webhook
// reads; the three kinds share it.
type workload struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     struct {
		Template corev1.PodTemplateSpec `json:"template"`
	} `json:"spec"`
}

// injection is what a workload asked for.
type injection struct {
	trust      bool
	cert       bool
	secretName string
}

// wants reads the annotations. name is the fallback workload name (the
// AdmissionRequest's) when metadata.name is empty.
func wants(w *workload, name string) (injection, error) {
	// The trust bundle ConfigMap exists in every namespace, so asking for it
	// on the pod template works too. A certificate is only issued for the
	// workload's own annotations (that is what the controller reads), so only
	// those mount one: a template-only annotation would mount a Secret that
	// never comes.
	get := func(key string) string {
		if v, ok := w.Metadata.Annotations[key]; ok {
			return v
		}
		return w.Spec.Template.Annotations[key]
	}
	own := func(key string) string { return w.Metadata.Annotations[key] }
	in := injection{
		trust: strings.EqualFold(get(AnnotationInjectTrustBundle), "true"),
		cert:  strings.EqualFold(own(AnnotationCertificate), "true"),
	}
	if !in.cert {
		return in, nil
	}
	if w.Metadata.Name != "" {
		name = w.Metadata.Name
	}
	secret, err := meta.WorkloadSecretName(w.Metadata.Annotations, name)
	if err != nil {
		return in, err
	}
	in.secretName = secret
	return in, nil
}

// patchOp is one RFC 6902 operation.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

const templateSpec = "/spec/template/spec"

// plan computes the JSON patch that makes w's pod template carry what in
// asks for. It never removes anything, and changes only meshca's own
// volumes (updateOps); an empty result means the template is already as
// wanted.
func plan(w *workload, in injection) ([]patchOp, error) {
	if !in.trust && !in.cert {
		return nil, nil
	}
	spec := &w.Spec.Template.Spec
	if len(spec.Containers)+len(spec.InitContainers) == 0 {
		// Nothing to inject into; validation will refuse the object.
		return nil, nil
	}
	// Unnamed (or null) containers fail validation; patching one would
	// fail first with a less helpful error. (Checked in place: a Container
	// is large, and copying the lists cost more than the rest of the plan.)
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range list {
			if list[i].Name == "" {
				return nil, nil
			}
		}
	}
	var vols []corev1.Volume
	var mounts []corev1.VolumeMount
	var env []corev1.EnvVar
	if in.trust {
		vols = append(vols, trustVolume())
		mounts = append(mounts, corev1.VolumeMount{Name: TrustVolumeName, MountPath: TrustMountPath, ReadOnly: true})
	}
	if in.cert {
		vols = append(vols, tlsVolume(in.secretName))
		mounts = append(mounts, corev1.VolumeMount{Name: TLSVolumeName, MountPath: TLSMountPath, ReadOnly: true})
	}
	switch {
	case in.trust:
		env = append(env, corev1.EnvVar{Name: EnvCAFile, Value: TrustMountPath + "/" + TrustBundleKey})
	default:
		env = append(env, corev1.EnvVar{Name: EnvCAFile, Value: TLSMountPath + "/ca.crt"})
	}
	if in.cert {
		env = append(env,
			corev1.EnvVar{Name: EnvCertFile, Value: TLSMountPath + "/" + corev1.TLSCertKey},
			corev1.EnvVar{Name: EnvKeyFile, Value: TLSMountPath + "/" + corev1.TLSPrivateKeyKey},
		)
	}

	var ops []patchOp
	volOps, err := planVolumes(spec.Volumes, vols)
	if err != nil {
		return nil, err
	}
	ops = append(ops, volOps...)
	for _, group := range []struct {
		field      string
		containers []corev1.Container
	}{{"initContainers", spec.InitContainers}, {"containers", spec.Containers}} {
		for i := range group.containers {
			c := &group.containers[i]
			base := fmt.Sprintf("%s/%s/%d", templateSpec, group.field, i)
			mOps, err := planMounts(base, c, mounts)
			if err != nil {
				return nil, err
			}
			ops = append(ops, mOps...)
			ops = append(ops, planEnv(base, c.Env, env)...)
		}
	}
	return ops, nil
}

// trustVolume is optional: the ConfigMap exists only in the namespaces of
// --bundle-namespace-selector, and a Pod elsewhere should start (and fail
// visibly on the missing file) rather than hang in ContainerCreating.
func trustVolume() corev1.Volume {
	return corev1.Volume{Name: TrustVolumeName, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: TrustBundleConfigMap},
		Items:                []corev1.KeyToPath{{Key: TrustBundleKey, Path: TrustBundleKey}},
		Optional:             ptr.To(true),
	}}}
}

// tlsVolume is not optional: a Pod created before the controller has
// written the Secret waits in ContainerCreating until it is there (seconds),
// as with a cert-manager Secret, instead of starting without a certificate.
func tlsVolume(secret string) corev1.Volume {
	return corev1.Volume{Name: TLSVolumeName, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
		SecretName: secret,
	}}}
}

// isOurs reports whether an existing volume with one of meshca's names is
// one meshca added: the trust bundle ConfigMap, or a whole Secret (of any
// name: meshca.io/secret-name may have changed since). Fields the API server
// defaults (defaultMode) and harmless variations are accepted so that
// stored objects re-admit cleanly.
func isOurs(have, want corev1.Volume) bool {
	switch {
	case want.ConfigMap != nil:
		cm := have.ConfigMap
		if cm == nil || cm.Name != want.ConfigMap.Name || have.Secret != nil {
			return false
		}
		if len(cm.Items) == 0 {
			return true
		}
		for _, it := range cm.Items {
			if it.Key == TrustBundleKey && it.Path == TrustBundleKey {
				return true
			}
		}
		return false
	case want.Secret != nil:
		s := have.Secret
		return s != nil && len(s.Items) == 0 && have.ConfigMap == nil
	}
	return false
}

// updateOps bring a volume of meshca's (isOurs) to what meshca adds now,
// field by field so that what a user set on it (defaultMode) stays: the
// Secret renamed by meshca.io/secret-name, the trust volume made optional
// (volumes injected before it was).
func updateOps(p string, have, want corev1.Volume) []patchOp {
	var ops []patchOp
	switch {
	case want.ConfigMap != nil:
		if w := want.ConfigMap.Optional; w != nil && !ptr.Equal(have.ConfigMap.Optional, w) {
			ops = append(ops, patchOp{Op: "add", Path: p + "/configMap/optional", Value: *w})
		}
	case want.Secret != nil:
		if have.Secret.SecretName != want.Secret.SecretName {
			ops = append(ops, patchOp{Op: "add", Path: p + "/secret/secretName", Value: want.Secret.SecretName})
		}
	}
	return ops
}

func describeVolume(v corev1.Volume) string {
	switch {
	case v.ConfigMap != nil:
		return fmt.Sprintf("ConfigMap %q", v.ConfigMap.Name)
	case v.Secret != nil && len(v.Secret.Items) > 0:
		return fmt.Sprintf("a selection of keys of Secret %q", v.Secret.SecretName)
	case v.Secret != nil:
		return fmt.Sprintf("Secret %q", v.Secret.SecretName)
	}
	// Name the source by its field: an emptyDir volume, a hostPath volume.
	if b, err := json.Marshal(v.VolumeSource); err == nil {
		var fields map[string]json.RawMessage
		if json.Unmarshal(b, &fields) == nil {
			for k := range fields {
				return "a volume of type " + k
			}
		}
	}
	return "another kind of volume"
}

func planVolumes(have, want []corev1.Volume) ([]patchOp, error) {
	var ops []patchOp
	var missing []corev1.Volume
	for _, w := range want {
		found := false
		for i, h := range have {
			if h.Name != w.Name {
				continue
			}
			if !isOurs(h, w) {
				return nil, fmt.Errorf("volume %q is %s, not %s: %w", h.Name, describeVolume(h), describeVolume(w), ErrConflict)
			}
			ops = append(ops, updateOps(fmt.Sprintf("%s/volumes/%d", templateSpec, i), h, w)...)
			found = true
			break
		}
		if !found {
			missing = append(missing, w)
		}
	}
	return append(ops, appendOps(templateSpec+"/volumes", len(have), missing)...), nil
}

func planMounts(base string, c *corev1.Container, want []corev1.VolumeMount) ([]patchOp, error) {
	var ops []patchOp
	var missing []corev1.VolumeMount
	for _, w := range want {
		found := false
		for j, h := range c.VolumeMounts {
			if path.Clean(h.MountPath) != w.MountPath {
				continue
			}
			if h.Name != w.Name {
				return nil, fmt.Errorf("container %q mounts volume %q at %s, where meshca mounts %q: %w",
					c.Name, h.Name, h.MountPath, w.Name, ErrConflict)
			}
			if h.SubPath != "" || h.SubPathExpr != "" {
				return nil, fmt.Errorf("container %q mounts only a subPath of %q at %s, where meshca mounts the whole volume: %w",
					c.Name, h.Name, h.MountPath, ErrConflict)
			}
			if !h.ReadOnly {
				ops = append(ops, patchOp{Op: "add", Path: fmt.Sprintf("%s/volumeMounts/%d/readOnly", base, j), Value: true})
			}
			found = true
			break
		}
		if !found {
			missing = append(missing, w)
		}
	}
	return append(ops, appendOps(base+"/volumeMounts", len(c.VolumeMounts), missing)...), nil
}

// planEnv sets meshca's variables. They belong to meshca: a different value
// (say, MESHCA_CA_FILE from before the trust bundle was asked for) is
// replaced, in every duplicate entry, since the last one wins in a pod.
func planEnv(base string, have, want []corev1.EnvVar) []patchOp {
	var ops []patchOp
	var missing []corev1.EnvVar
	for _, w := range want {
		found := false
		for j, h := range have {
			if h.Name != w.Name {
				continue
			}
			found = true
			if h.Value != w.Value || h.ValueFrom != nil {
				ops = append(ops, patchOp{Op: "replace", Path: fmt.Sprintf("%s/env/%d", base, j), Value: w})
			}
		}
		if !found {
			missing = append(missing, w)
		}
	}
	return append(ops, appendOps(base+"/env", len(have), missing)...)
}

// appendOps adds items to the list at p: the whole list when it is empty or
// absent (add replaces a null member), else one "-" append per item.
func appendOps[T any](p string, have int, items []T) []patchOp {
	if len(items) == 0 {
		return nil
	}
	if have == 0 {
		return []patchOp{{Op: "add", Path: p, Value: items}}
	}
	ops := make([]patchOp, 0, len(items))
	for _, it := range items {
		ops = append(ops, patchOp{Op: "add", Path: p + "/-", Value: it})
	}
	return ops
}
