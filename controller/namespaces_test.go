package controller

import (
	"context"
	"errors"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/meshca/meshca/internal/meta"
)

// brokenReader fails every read, as a cache that is not ready might.
type brokenReader struct{ client.Reader }

func (brokenReader) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return errors.New("cache not ready")
}

// TestNamespaceSuffixes: the suffixes come from the annotation; a missing
// Namespace allows nothing more; a failed read is an error, never an empty
// (or any) list.
func TestNamespaceSuffixes(t *testing.T) {
	t.Parallel()
	c := fake.NewClientBuilder().WithObjects(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop",
			Annotations: map[string]string{meta.AnnotationAllowedDNSSuffixes: "shop.example.com, ,corp.example"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "plain"}},
	).Build()
	cases := map[string]struct {
		reader  client.Reader
		ns      string
		want    []string
		wantErr bool
	}{
		"annotated":     {reader: c, ns: "shop", want: []string{"shop.example.com", "corp.example"}},
		"not annotated": {reader: c, ns: "plain"},
		"no such":       {reader: c, ns: "gone"},
		"read fails":    {reader: brokenReader{}, ns: "shop", wantErr: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := namespaceSuffixes(context.Background(), tc.reader, tc.ns)
			if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
				t.Fatalf("namespaceSuffixes = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
