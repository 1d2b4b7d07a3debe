package main

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/ca/castore"
	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/internal/testpki"
)

// TestCAImport brings a CA in cert-manager's and Istio's shapes into
// meshca-ca on the real API server, and refuses to replace an existing CA or
// to import a broken one.
func TestCAImport(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	pki := testpki.New(t)
	shapes := map[string]map[string][]byte{
		"cert-manager": {"tls.crt": pki.IntermediatePEM, "tls.key": pki.IntermediateKeyPEM, "ca.crt": pki.RootPEM},
		"istio": {"ca-cert.pem": pki.IntermediatePEM, "ca-key.pem": pki.IntermediateKeyPEM, "root-cert.pem": pki.RootPEM,
			"cert-chain.pem": pki.IntermediatePEM},
	}
	for format, data := range shapes {
		t.Run(format, func(t *testing.T) {
			src := env.Namespace(t)
			home := env.Namespace(t)
			if _, err := env.Clientset.CoreV1().Secrets(src).Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: "my-ca"}, Data: data,
			}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			args := []string{"ca", "import", "--kubeconfig", env.Kubeconfig, "--namespace", home, "--from", src + "/my-ca", "--format", format}
			out, err := run(t, args...)
			if err != nil {
				t.Fatalf("import: %v\n%s", err, out)
			}
			st, err := castore.Secret{Client: env.Clientset, Namespace: home}.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			cur := st.Get(ca.SlotCurrent)
			if !cur.Intermediate.Equal(pki.Intermediate) || !cur.Root.Equal(pki.Root) || cur.RootKey != nil || !cur.CanSign() {
				t.Errorf("imported CA does not match the source (root key present: %v)", cur.RootKey != nil)
			}
			if _, err := run(t, args...); err == nil || !strings.Contains(err.Error(), "never replaces") {
				t.Errorf("second import: got %v, want a refusal to replace the CA", err)
			}
		})
	}
	t.Run("broken", func(t *testing.T) {
		src := env.Namespace(t)
		home := env.Namespace(t)
		other := testpki.New(t)
		if _, err := env.Clientset.CoreV1().Secrets(src).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "mismatch"},
			Data:       map[string][]byte{"tls.crt": pki.IntermediatePEM, "tls.key": other.IntermediateKeyPEM, "ca.crt": pki.RootPEM},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err := run(t, "ca", "import", "--kubeconfig", env.Kubeconfig, "--namespace", home, "--from", src+"/mismatch", "--format", "cert-manager")
		if err == nil || !strings.Contains(err.Error(), "not a usable") {
			t.Fatalf("got %v, want a refusal naming the problem", err)
		}
		if _, err := (castore.Secret{Client: env.Clientset, Namespace: home}).Load(ctx); err == nil {
			t.Error("a broken CA was written")
		}
	})
}
