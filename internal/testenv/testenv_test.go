package testenv_test

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshca/meshca/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func tlsContext(version, ns, name string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "getambassador.io/" + version,
		"kind":       "TLSContext",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec":       spec,
	}}
}

// TestTLSContextRoundTrip creates TLSContexts through the real API server in
// both served versions and reads them back in the storage version.
func TestTLSContextRoundTrip(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	ctx := context.Background()
	for _, version := range []string{"v3alpha1", "v2"} {
		t.Run(version, func(t *testing.T) {
			name := "upstream-" + version
			obj := tlsContext(version, ns, name, map[string]any{
				"hosts":              []any{},
				"secret":             "upstream-certs",
				"ca_secret":          "upstream-ca",
				"cert_required":      true,
				"min_tls_version":    "v1.2",
				"alpn_protocols":     "h2",
				"secret_namespacing": false,
			})
			if err := env.Client.Create(ctx, obj); err != nil {
				t.Fatalf("create: %v", err)
			}
			got := &unstructured.Unstructured{}
			got.SetAPIVersion("getambassador.io/v3alpha1")
			got.SetKind("TLSContext")
			if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, got); err != nil {
				t.Fatalf("get: %v", err)
			}
			secret, _, _ := unstructured.NestedString(got.Object, "spec", "secret")
			required, _, _ := unstructured.NestedBool(got.Object, "spec", "cert_required")
			if secret != "upstream-certs" || !required {
				t.Errorf("read back spec.secret=%q cert_required=%v, want upstream-certs true", secret, required)
			}
		})
	}
}

// TestTLSContextSchemaRejects proves the CRD's structural schema is enforced
// by the API server, not by meshca.
func TestTLSContextSchemaRejects(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	cases := map[string]struct {
		spec map[string]any
		want string
	}{
		"hosts not a list":           {map[string]any{"hosts": "example.com"}, "spec.hosts"},
		"unknown tls version":        {map[string]any{"min_tls_version": "v9"}, "spec.min_tls_version"},
		"cert_required not a bool":   {map[string]any{"cert_required": "yes"}, "spec.cert_required"},
		"redirect port out of range": {map[string]any{"redirect_cleartext_from": int64(70000)}, "spec.redirect_cleartext_from"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := env.Client.Create(context.Background(), tlsContext("v3alpha1", ns, testenvName(name), tc.spec))
			if !apierrors.IsInvalid(err) {
				t.Fatalf("create: got %v, want an Invalid error", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %s", err, tc.want)
			}
		})
	}
}

// TestKubectl proves the kubeconfig handed to tests works with kubectl.
func TestKubectl(t *testing.T) {
	env := testenv.Get(t)
	out, err := env.Kubectl(t, "get", "tlscontexts", "-A")
	if err != nil {
		t.Fatalf("kubectl get tlscontexts: %v\n%s", err, out)
	}
}

func testenvName(s string) string { return strings.ReplaceAll(s, " ", "-") }
