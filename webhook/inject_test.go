package webhook

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

var update = flag.Bool("update", false, "rewrite golden files and the seed corpus in testdata")

// podTemplate is a pod template with the given containers (name:image) and
// nothing else.
func podTemplate(containers ...string) corev1.PodTemplateSpec {
	t := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}}
	for _, c := range containers {
		t.Spec.Containers = append(t.Spec.Containers, corev1.Container{Name: c, Image: "registry.example/" + c + ":1"})
	}
	return t
}

func deployment(name string, ann map[string]string, tmpl corev1.PodTemplateSpec) *appsv1.Deployment {
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: tmpl,
		},
	}
}

func statefulSet(name string, ann map[string]string, tmpl corev1.PodTemplateSpec) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann},
		Spec: appsv1.StatefulSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: tmpl,
		},
	}
}

func daemonSet(name string, ann map[string]string, tmpl corev1.PodTemplateSpec) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: tmpl,
		},
	}
}

var (
	trustAnn = map[string]string{AnnotationInjectTrustBundle: "true"}
	certAnn  = map[string]string{AnnotationCertificate: "true"}
	bothAnn  = map[string]string{AnnotationInjectTrustBundle: "true", AnnotationCertificate: "true"}
)

// request wraps obj in an AdmissionRequest the way the API server does.
func request(t testing.TB, op admissionv1.Operation, obj runtime.Object) *admissionv1.AdmissionRequest {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	meta := obj.(metav1.Object)
	return &admissionv1.AdmissionRequest{
		UID:       types.UID("705ab4f5-6393-11e8-b7cc-42010a800002"),
		Kind:      metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
		Resource:  metav1.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: strings.ToLower(gvk.Kind) + "s"},
		Name:      meta.GetName(),
		Namespace: "team-a",
		Operation: op,
		Object:    runtime.RawExtension{Raw: raw},
	}
}

// outcome is what the golden files record for one request.
type outcome struct {
	Allowed bool            `json:"allowed"`
	Result  string          `json:"result"`
	Message string          `json:"message,omitempty"`
	Code    int32           `json:"code,omitempty"`
	Patch   json.RawMessage `json:"patch,omitempty"`
}

func summarize(t testing.TB, resp *admissionv1.AdmissionResponse, result string) []byte {
	t.Helper()
	o := outcome{Allowed: resp.Allowed, Result: result, Patch: resp.Patch}
	if resp.Result != nil {
		o.Message, o.Code = resp.Result.Message, resp.Result.Code
	}
	b, err := json.MarshalIndent(o, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs (run with -update after review):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

type admitCase struct {
	op  admissionv1.Operation
	obj runtime.Object
	// result is the expected counter result; the golden file holds the rest.
	result string
}

// admitCases are the mutation cases; their requests also seed the fuzz corpus.
func admitCases() map[string]admitCase {
	withInit := podTemplate("app", "proxy")
	withInit.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "registry.example/migrate:1"}}
	withInit.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	withInit.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	withInit.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "debug"}}

	tmplAnnotated := podTemplate("agent")
	tmplAnnotated.Annotations = map[string]string{AnnotationInjectTrustBundle: "true"}
	// A certificate annotation only on the template gets no certificate from
	// the controller, so it must not mount one either.
	tmplCertOnly := podTemplate("agent")
	tmplCertOnly.Annotations = map[string]string{AnnotationCertificate: "true"}

	// stored is what the API server keeps after injecting both: defaults
	// added (defaultMode) and the mounts' readOnly intact.
	stored := podTemplate("app")
	mode := int32(0o644)
	stored.Spec.Volumes = []corev1.Volume{
		{Name: TrustVolumeName, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: TrustBundleConfigMap},
			Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}, DefaultMode: &mode, Optional: ptr.To(true)}}},
		{Name: TLSVolumeName, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "web-meshca-tls", DefaultMode: &mode}}},
	}
	stored.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{
		{Name: TrustVolumeName, MountPath: TrustMountPath, ReadOnly: true},
		{Name: TLSVolumeName, MountPath: TLSMountPath + "/", ReadOnly: true},
	}
	stored.Spec.Containers[0].Env = []corev1.EnvVar{
		{Name: EnvCAFile, Value: "/var/run/meshca/trust/ca.crt"},
		{Name: EnvCertFile, Value: "/var/run/meshca/tls/tls.crt"},
		{Name: EnvKeyFile, Value: "/var/run/meshca/tls/tls.key"},
	}

	// certOnly was injected for meshca.io/certificate alone; now the trust
	// bundle is asked for too, so MESHCA_CA_FILE moves to the trust mount.
	certOnly := podTemplate("app")
	certOnly.Spec.Volumes = stored.Spec.Volumes[1:]
	certOnly.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: TLSVolumeName, MountPath: TLSMountPath}}
	certOnly.Spec.Containers[0].Env = []corev1.EnvVar{
		{Name: EnvCAFile, Value: "/var/run/meshca/tls/ca.crt"},
		{Name: EnvCertFile, Value: "/var/run/meshca/tls/tls.crt"},
		{Name: EnvKeyFile, Value: "/var/run/meshca/tls/tls.key"},
	}

	// beforeOptional was injected when the trust volume was not optional
	// yet; a user set defaultMode 0400 on the Secret volume.
	beforeOptional := *stored.DeepCopy()
	beforeOptional.Spec.Volumes[0].ConfigMap.Optional = nil
	beforeOptional.Spec.Volumes[1].Secret.DefaultMode = ptr.To[int32](0o400)

	userEnv := podTemplate("app")
	userEnv.Spec.Containers[0].Env = []corev1.EnvVar{
		{Name: EnvCAFile, Value: "/etc/ssl/ca.pem"},
		{Name: "OTHER", Value: "x"},
		{Name: EnvCAFile, ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "roots"}, Key: "ca.crt"}}},
	}

	foreignVolume := podTemplate("app")
	foreignVolume.Spec.Volumes = []corev1.Volume{{Name: TrustVolumeName, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: "corporate-roots"}}}}}
	emptyDirVolume := podTemplate("app")
	emptyDirVolume.Spec.Volumes = []corev1.Volume{{Name: TLSVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	// renamed was injected as web; now it is api (a copied manifest) or
	// meshca.io/secret-name changed: the Secret volume follows the name.
	renamed := *stored.DeepCopy()
	renamed.Spec.Volumes[1].Secret.DefaultMode = ptr.To[int32](0o400)
	secretItems := podTemplate("app")
	secretItems.Spec.Volumes = []corev1.Volume{{Name: TLSVolumeName, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
		SecretName: "web-meshca-tls", Items: []corev1.KeyToPath{{Key: "tls.crt", Path: "cert.pem"}}}}}}
	foreignMount := podTemplate("app", "sidecar")
	foreignMount.Spec.Volumes = []corev1.Volume{{Name: "roots", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	foreignMount.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{{Name: "roots", MountPath: "/var/run/meshca/trust/"}}
	subPathMount := podTemplate("app")
	subPathMount.Spec.Volumes = stored.Spec.Volumes[:1]
	subPathMount.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: TrustVolumeName, MountPath: TrustMountPath, SubPath: "ca.crt"}}

	generated := deployment("", bothAnn, podTemplate("app"))
	generated.GenerateName = "web-"
	generatedNamed := deployment("", map[string]string{AnnotationCertificate: "true", AnnotationSecretName: "web-certs"}, podTemplate("app"))
	generatedNamed.GenerateName = "web-"

	replicaSet := &appsv1.ReplicaSet{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ReplicaSet"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Annotations: bothAnn}, Spec: appsv1.ReplicaSetSpec{Template: podTemplate("app")}}

	return map[string]admitCase{
		"deployment-trust":                  {admissionv1.Create, deployment("web", trustAnn, podTemplate("app")), resultPatched},
		"deployment-certificate":            {admissionv1.Create, deployment("web", certAnn, podTemplate("app")), resultPatched},
		"deployment-both-init-existing":     {admissionv1.Create, deployment("web", bothAnn, withInit), resultPatched},
		"deployment-update":                 {admissionv1.Update, deployment("web", bothAnn, podTemplate("app")), resultPatched},
		"deployment-stored-unchanged":       {admissionv1.Update, deployment("web", bothAnn, stored), resultUnchanged},
		"deployment-stored-before-optional": {admissionv1.Update, deployment("web", bothAnn, beforeOptional), resultPatched},
		"deployment-secret-renamed":         {admissionv1.Update, deployment("web", map[string]string{AnnotationInjectTrustBundle: "true", AnnotationCertificate: "true", AnnotationSecretName: "web-certs"}, renamed), resultPatched},
		"deployment-copied-as-other-name":   {admissionv1.Create, deployment("api", bothAnn, *stored.DeepCopy()), resultPatched},
		"deployment-secret-name-invalid":    {admissionv1.Create, deployment("web", map[string]string{AnnotationCertificate: "true", AnnotationSecretName: "web/certs"}, podTemplate("app")), resultDenied},
		"deployment-secret-name-blank":      {admissionv1.Create, deployment("web", map[string]string{AnnotationCertificate: "true", AnnotationSecretName: " "}, podTemplate("app")), resultPatched},
		"deployment-add-trust-to-cert":      {admissionv1.Update, deployment("web", bothAnn, certOnly), resultPatched},
		"deployment-env-overridden":         {admissionv1.Create, deployment("web", trustAnn, userEnv), resultPatched},
		"deployment-unannotated":            {admissionv1.Create, deployment("web", nil, podTemplate("app")), resultIgnored},
		"deployment-annotation-false":       {admissionv1.Create, deployment("web", map[string]string{AnnotationInjectTrustBundle: "false"}, podTemplate("app")), resultIgnored},
		"deployment-generate-name":          {admissionv1.Create, generated, resultDenied},
		"deployment-generate-name-secret":   {admissionv1.Create, generatedNamed, resultPatched},
		"statefulset-secret-name":           {admissionv1.Create, statefulSet("db", map[string]string{AnnotationCertificate: "true", AnnotationSecretName: "db-certs"}, podTemplate("db")), resultPatched},
		"daemonset-template-annotation":     {admissionv1.Create, daemonSet("agent", nil, tmplAnnotated), resultPatched},
		"daemonset-template-certificate":    {admissionv1.Create, daemonSet("agent", nil, tmplCertOnly), resultIgnored},
		"deployment-annotation-True":        {admissionv1.Create, deployment("web", map[string]string{AnnotationInjectTrustBundle: "True"}, podTemplate("app")), resultPatched},
		"conflict-volume-other-configmap":   {admissionv1.Create, deployment("web", trustAnn, foreignVolume), resultDenied},
		"conflict-volume-emptydir":          {admissionv1.Create, deployment("web", certAnn, emptyDirVolume), resultDenied},
		"conflict-volume-secret-items":      {admissionv1.Create, deployment("web", certAnn, secretItems), resultDenied},
		"conflict-mount-path":               {admissionv1.Create, deployment("web", trustAnn, foreignMount), resultDenied},
		"conflict-mount-subpath":            {admissionv1.Create, deployment("web", trustAnn, subPathMount), resultDenied},
		"other-kind-replicaset":             {admissionv1.Create, replicaSet, resultIgnored},
		"delete":                            {admissionv1.Delete, deployment("web", bothAnn, podTemplate("app")), resultIgnored},
	}
}

func TestAdmit(t *testing.T) {
	t.Parallel()
	for name, tc := range admitCases() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			req := request(t, tc.op, tc.obj)
			resp, result := admit(req)
			if resp.UID != req.UID {
				t.Errorf("response UID %q, want the request's %q", resp.UID, req.UID)
			}
			if result != tc.result {
				t.Errorf("result %q, want %q", result, tc.result)
			}
			if (resp.Patch != nil) != (result == resultPatched) || (resp.PatchType != nil) != (resp.Patch != nil) {
				t.Errorf("result %s with patch %s and patch type %v", result, resp.Patch, resp.PatchType)
			}
			golden(t, filepath.Join("testdata", "admit", name+".json"), summarize(t, resp, result))
			if resp.Patch == nil {
				return
			}
			// Admitting the webhook's own output changes nothing.
			p, err := jsonpatch.DecodePatch(resp.Patch)
			if err != nil {
				t.Fatalf("decode patch: %v", err)
			}
			mutated, err := p.Apply(req.Object.Raw)
			if err != nil {
				t.Fatalf("apply patch: %v", err)
			}
			again := *req
			again.Object.Raw = mutated
			if resp2, result2 := admit(&again); result2 != resultUnchanged || resp2.Patch != nil {
				t.Errorf("re-admitting the output: result %s, patch %s; want unchanged", result2, resp2.Patch)
			}
			checkInjected(t, mutated)
		})
	}
}

// checkInjected checks the mutated object semantically: every container has
// the mounts and the variables its annotations ask for.
func checkInjected(t *testing.T, raw []byte) {
	t.Helper()
	var w workload
	if err := json.Unmarshal(raw, &w); err != nil {
		t.Fatal(err)
	}
	in, err := wants(&w, "")
	if err != nil {
		t.Fatal(err)
	}
	spec := w.Spec.Template.Spec
	all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	for _, c := range all {
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		mounts := map[string]corev1.VolumeMount{}
		for _, m := range c.VolumeMounts {
			mounts[m.Name] = m
		}
		wantCA := "/var/run/meshca/tls/ca.crt"
		if in.trust {
			wantCA = "/var/run/meshca/trust/ca.crt"
			if m := mounts[TrustVolumeName]; m.MountPath != "/var/run/meshca/trust" || !m.ReadOnly {
				t.Errorf("container %s: trust mount %+v", c.Name, m)
			}
		}
		if in.cert {
			if m := mounts[TLSVolumeName]; strings.TrimSuffix(m.MountPath, "/") != "/var/run/meshca/tls" || !m.ReadOnly {
				t.Errorf("container %s: tls mount %+v", c.Name, m)
			}
			if env[EnvCertFile] != "/var/run/meshca/tls/tls.crt" || env[EnvKeyFile] != "/var/run/meshca/tls/tls.key" {
				t.Errorf("container %s: env %v", c.Name, env)
			}
		}
		if env[EnvCAFile] != wantCA {
			t.Errorf("container %s: %s=%q, want %q", c.Name, EnvCAFile, env[EnvCAFile], wantCA)
		}
	}
}
