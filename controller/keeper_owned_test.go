package controller

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/internal/meta"
)

// TestMergeSecret: a write leaves meshca's part of a managed Secret exactly
// what it wants and the rest as it was; a Secret already as wanted is not
// written.
func TestMergeSecret(t *testing.T) {
	t.Parallel()
	managed := map[string]string{meta.LabelManagedBy: meta.ManagedByValue}
	tlsData := map[string][]byte{"tls.crt": []byte("c"), "tls.key": []byte("k"), "ca.crt": []byte("b")}
	cases := map[string]struct {
		labels, ann map[string]string
		data        map[string][]byte
		want        desiredSecret
		wantLabels  map[string]string
		wantAnn     map[string]string
		wantData    map[string][]byte
		write       bool
	}{
		"as wanted": {
			labels: managed, ann: map[string]string{meta.AnnotationSerial: "1"}, data: tlsData,
			want:       desiredSecret{annotations: map[string]string{meta.AnnotationSerial: "1"}, data: tlsData},
			wantLabels: managed, wantAnn: map[string]string{meta.AnnotationSerial: "1"}, wantData: tlsData,
		},
		"as wanted, no annotations at all": {
			labels: managed, data: tlsData,
			want:       desiredSecret{annotations: map[string]string{}, data: tlsData},
			wantLabels: managed, wantAnn: nil, wantData: tlsData,
		},
		"the user's label, annotation and key stay, without a write": {
			labels:     map[string]string{meta.LabelManagedBy: meta.ManagedByValue, "team": "a"},
			ann:        map[string]string{meta.AnnotationSerial: "1", "note": "mine", meta.AnnotationRenewRequested: "0A"},
			data:       map[string][]byte{"tls.crt": []byte("c"), "tls.key": []byte("k"), "ca.crt": []byte("b"), "keystore.p12": []byte("u")},
			want:       desiredSecret{annotations: map[string]string{meta.AnnotationSerial: "1"}, data: tlsData},
			wantLabels: map[string]string{meta.LabelManagedBy: meta.ManagedByValue, "team": "a"},
			wantAnn:    map[string]string{meta.AnnotationSerial: "1", "note": "mine", meta.AnnotationRenewRequested: "0A"},
			wantData:   map[string][]byte{"tls.crt": []byte("c"), "tls.key": []byte("k"), "ca.crt": []byte("b"), "keystore.p12": []byte("u")},
		},
		"renewal keeps the user's part": {
			labels:     map[string]string{meta.LabelManagedBy: meta.ManagedByValue, "team": "a"},
			ann:        map[string]string{meta.AnnotationSerial: "1", "note": "mine"},
			data:       map[string][]byte{"tls.crt": []byte("c"), "tls.key": []byte("k"), "ca.crt": []byte("b"), "extra": []byte("u")},
			want:       desiredSecret{annotations: map[string]string{meta.AnnotationSerial: "2"}, data: map[string][]byte{"tls.crt": []byte("c2"), "tls.key": []byte("k2"), "ca.crt": []byte("b")}},
			wantLabels: map[string]string{meta.LabelManagedBy: meta.ManagedByValue, "team": "a"},
			wantAnn:    map[string]string{meta.AnnotationSerial: "2", "note": "mine"},
			wantData:   map[string][]byte{"tls.crt": []byte("c2"), "tls.key": []byte("k2"), "ca.crt": []byte("b"), "extra": []byte("u")},
			write:      true,
		},
		"a stale meshca.io annotation goes": {
			labels:     managed,
			ann:        map[string]string{meta.AnnotationSerial: "1", meta.AnnotationDNSSANs: "old", meta.AnnotationReason: "Missing"},
			data:       tlsData,
			want:       desiredSecret{annotations: map[string]string{meta.AnnotationSerial: "1"}, data: tlsData},
			wantLabels: managed, wantAnn: map[string]string{meta.AnnotationSerial: "1"}, wantData: tlsData,
			write: true,
		},
		"a key of a use the Secret no longer has goes": {
			labels:     managed,
			ann:        map[string]string{meta.AnnotationSource: "TLSContext/a/b"},
			data:       map[string][]byte{"tls.crt": []byte("b"), "ca.crt": []byte("b"), "tls.key": []byte("k"), "other": []byte("u")},
			want:       desiredSecret{annotations: map[string]string{meta.AnnotationSource: "TLSContext/a/b"}, data: map[string][]byte{"tls.crt": []byte("b"), "ca.crt": []byte("b")}},
			wantLabels: managed, wantAnn: map[string]string{meta.AnnotationSource: "TLSContext/a/b"},
			wantData: map[string][]byte{"tls.crt": []byte("b"), "ca.crt": []byte("b"), "other": []byte("u")},
			write:    true,
		},
		"a removed owned key comes back": {
			labels: managed, ann: map[string]string{meta.AnnotationSerial: "1"},
			data:       map[string][]byte{"tls.crt": []byte("c"), "tls.key": []byte("k")},
			want:       desiredSecret{annotations: map[string]string{meta.AnnotationSerial: "1"}, data: tlsData},
			wantLabels: managed, wantAnn: map[string]string{meta.AnnotationSerial: "1"}, wantData: tlsData,
			write: true,
		},
		"an edited meshca annotation is repaired": {
			labels: managed, ann: map[string]string{meta.AnnotationSerial: "edited"}, data: tlsData,
			want:       desiredSecret{annotations: map[string]string{meta.AnnotationSerial: "1"}, data: tlsData},
			wantLabels: managed, wantAnn: map[string]string{meta.AnnotationSerial: "1"}, wantData: tlsData,
			write: true,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			existing := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns", ResourceVersion: "7", Labels: tc.labels, Annotations: tc.ann},
				Type:       corev1.SecretTypeTLS,
				Data:       tc.data,
			}
			before := existing.DeepCopy()
			got := mergeSecret(existing, tc.want)
			if !equality.Semantic.DeepEqual(existing, before) {
				t.Error("mergeSecret changed the Secret it was given")
			}
			if write := !equality.Semantic.DeepEqual(existing, got); write != tc.write {
				t.Errorf("write = %v, want %v", write, tc.write)
			}
			if got.ResourceVersion != "7" {
				t.Errorf("resourceVersion %q: the write must carry the one observed", got.ResourceVersion)
			}
			if !equality.Semantic.DeepEqual(got.Labels, tc.wantLabels) {
				t.Errorf("labels = %v, want %v", got.Labels, tc.wantLabels)
			}
			if !equality.Semantic.DeepEqual(got.Annotations, tc.wantAnn) {
				t.Errorf("annotations = %v, want %v", got.Annotations, tc.wantAnn)
			}
			if !equality.Semantic.DeepEqual(got.Data, tc.wantData) {
				t.Errorf("data keys = %v, want %v", keysOf(got.Data), keysOf(tc.wantData))
			}
		})
	}
}

// TestMergeBundle: the trust bundle ConfigMap holds ca.crt alone, and
// keeps the user's labels and annotations but no meshca.io/ annotation.
func TestMergeBundle(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		cm       corev1.ConfigMap
		wantAnn  map[string]string
		wantData map[string]string
		write    bool
	}{
		"as wanted": {
			cm:       corev1.ConfigMap{Data: map[string]string{"ca.crt": "B"}},
			wantData: map[string]string{"ca.crt": "B"},
		},
		"the user's annotation stays without a write": {
			cm:       corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"note": "mine"}}, Data: map[string]string{"ca.crt": "B"}},
			wantAnn:  map[string]string{"note": "mine"},
			wantData: map[string]string{"ca.crt": "B"},
		},
		"a meshca.io annotation goes": {
			cm:       corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"note": "mine", "meshca.io/old": "x"}}, Data: map[string]string{"ca.crt": "B"}},
			wantAnn:  map[string]string{"note": "mine"},
			wantData: map[string]string{"ca.crt": "B"},
			write:    true,
		},
		"extra keys go": {
			cm:       corev1.ConfigMap{Data: map[string]string{"ca.crt": "B", "extra": "x"}, BinaryData: map[string][]byte{"blob": {1}}},
			wantData: map[string]string{"ca.crt": "B"},
			write:    true,
		},
		"a stale bundle is replaced": {
			cm:       corev1.ConfigMap{Data: map[string]string{"ca.crt": "A"}},
			wantData: map[string]string{"ca.crt": "B"},
			write:    true,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cm := tc.cm.DeepCopy()
			cm.Labels = map[string]string{meta.LabelManagedBy: meta.ManagedByValue, "team": "a"}
			got := mergeBundle(cm, []byte("B"))
			if write := !equality.Semantic.DeepEqual(cm, got); write != tc.write {
				t.Errorf("write = %v, want %v", write, tc.write)
			}
			if got.Labels["team"] != "a" || got.Labels[meta.LabelManagedBy] != meta.ManagedByValue {
				t.Errorf("labels = %v", got.Labels)
			}
			if !equality.Semantic.DeepEqual(got.Annotations, tc.wantAnn) {
				t.Errorf("annotations = %v, want %v", got.Annotations, tc.wantAnn)
			}
			if !equality.Semantic.DeepEqual(got.Data, tc.wantData) || len(got.BinaryData) != 0 {
				t.Errorf("data = %v, binary %v; want %v", got.Data, got.BinaryData, tc.wantData)
			}
		})
	}
}
