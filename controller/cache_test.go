package controller

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"
)

// TestTrimForCache: what the cache drops, and that it keeps what the
// reconcilers read or write back.
func TestTrimForCache(t *testing.T) {
	t.Parallel()
	managed := []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}
	ann := func() map[string]string {
		return map[string]string{lastApplied: `{"big":"copy"}`, "meshca.io/issue": "true"}
	}

	t.Run("Secret keeps data and annotations", func(t *testing.T) {
		t.Parallel()
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "s", Annotations: ann(), ManagedFields: managed},
			Data:       map[string][]byte{"tls.crt": []byte("c")},
		}
		out, err := trimForCache(s)
		if err != nil {
			t.Fatal(err)
		}
		got := out.(*corev1.Secret)
		if got.ManagedFields != nil {
			t.Errorf("managedFields kept")
		}
		// Secrets are written back with Update: an annotation dropped here
		// would be dropped from the API server too.
		if len(got.Annotations) != 2 || string(got.Data["tls.crt"]) != "c" {
			t.Errorf("Secret lost annotations or data: %v %v", got.Annotations, got.Data)
		}
	})

	t.Run("TLSContext keeps spec and meshca annotations", func(t *testing.T) {
		t.Parallel()
		u := tlsContext("ns", "tc", ann(), map[string]any{"secret": "s", "hosts": []any{"a"}})
		u.SetManagedFields(managed)
		u.Object["status"] = map[string]any{"x": "y"}
		out, err := trimForCache(u)
		if err != nil {
			t.Fatal(err)
		}
		got := out.(*unstructured.Unstructured)
		if got.GetManagedFields() != nil || got.Object["status"] != nil {
			t.Errorf("managedFields or status kept: %v", got.Object)
		}
		if a := got.GetAnnotations(); len(a) != 1 || a["meshca.io/issue"] != "true" {
			t.Errorf("annotations %v, want only meshca.io/issue", a)
		}
		w, err := parseGatewaySpec(got, "sa", "")
		if err != nil || w.Secret == nil || w.Secret.Name != "s" || len(w.DNSNames) != 1 {
			t.Errorf("trimmed TLSContext reads as %+v, %v", w, err)
		}
	})

	t.Run("workload keeps what the reconciler reads", func(t *testing.T) {
		t.Parallel()
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "d", UID: "u", Annotations: ann(), ManagedFields: managed},
			Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"meshca.io/cert-revision": "1"}},
				Spec: corev1.PodSpec{
					ServiceAccountName: "sa",
					Containers:         []corev1.Container{{Name: "c", Image: "i"}},
				},
			}},
			Status: appsv1.DeploymentStatus{Replicas: 3},
		}
		out, err := trimForCache(d)
		if err != nil {
			t.Fatal(err)
		}
		got := out.(*appsv1.Deployment)
		if got.ManagedFields != nil || got.Annotations[lastApplied] != "" || len(got.Spec.Template.Spec.Containers) != 0 || got.Status.Replicas != 0 {
			t.Errorf("not trimmed: %+v", got)
		}
		if got.UID != "u" || got.Annotations["meshca.io/issue"] != "true" ||
			got.Spec.Template.Spec.ServiceAccountName != "sa" || got.Spec.Template.Annotations["meshca.io/cert-revision"] != "1" {
			t.Errorf("lost what the reconciler reads: %+v", got)
		}
	})

	t.Run("tombstone passes through", func(t *testing.T) {
		t.Parallel()
		in := cache.DeletedFinalStateUnknown{Key: "ns/x"}
		out, err := trimForCache(in)
		if err != nil || out != in {
			t.Errorf("got %v, %v", out, err)
		}
	})
}
