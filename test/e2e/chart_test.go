package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshca/meshca/internal/testenv"
)

// release is the chart installed (without its Deployment) for meshca to
// run out of cluster with its RBAC.
type release struct {
	namespace      string
	serviceAccount string
	webhookConfig  string
	// args are the meshca container's arguments from the Deployment.
	args []string
}

// user is the name the API server knows the release's ServiceAccount by.
func (r release) user() string {
	return fmt.Sprintf("system:serviceaccount:%s:%s", r.namespace, r.serviceAccount)
}

func (r release) groups() []string {
	return []string{"system:serviceaccounts", "system:serviceaccounts:" + r.namespace}
}

// installChart renders the chart with helm template (release name, the
// namespace and extra helm args) and applies everything but the Deployment
// to the API server. Its cluster-scoped objects, except the CRD, go when
// the test ends.
func installChart(t *testing.T, env *testenv.Env, name, namespace string, helmArgs ...string) release {
	t.Helper()
	helm := mustBinary(t, testenv.Helm)
	home := t.TempDir()
	args := append([]string{"template", name, filepath.Join(testenv.RepoRoot(), "charts", "meshca"), "--namespace", namespace}, helmArgs...)
	cmd := exec.Command(helm, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		"KUBECONFIG="+filepath.Join(home, "no-kubeconfig"),
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}

	r := release{namespace: namespace}
	var apply, cleanup []string
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("rendered document is not YAML: %v\n%s", err, doc)
		}
		switch obj.Kind {
		case "":
			continue
		case "Deployment":
			var dep appsv1.Deployment
			if err := yaml.Unmarshal([]byte(doc), &dep); err != nil {
				t.Fatal(err)
			}
			r.serviceAccount = dep.Spec.Template.Spec.ServiceAccountName
			r.args = dep.Spec.Template.Spec.Containers[0].Args
			continue
		case "MutatingWebhookConfiguration":
			r.webhookConfig = obj.Metadata.Name
		}
		apply = append(apply, doc)
		switch obj.Kind {
		case "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration":
			cleanup = append(cleanup, doc)
		}
	}
	if r.serviceAccount == "" || len(r.args) == 0 || r.args[0] != "serve" || r.webhookConfig == "" {
		t.Fatalf("rendered chart lacks the Deployment's service account or args, or the webhook configuration: %+v", r)
	}
	write := func(docs []string) string {
		f := filepath.Join(t.TempDir(), "objects.yaml")
		if err := os.WriteFile(f, []byte(strings.Join(docs, "\n---\n")), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	t.Cleanup(func() {
		if out, err := env.Kubectl(t, "delete", "--ignore-not-found", "--wait=false", "-f", write(cleanup)); err != nil {
			t.Errorf("kubectl delete: %v\n%s", err, out)
		}
	})
	if out, err := env.Kubectl(t, "apply", "--server-side", "--field-manager=meshca-e2e", "-f", write(apply)); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	return r
}

// pointWebhookAt makes the release's webhook configuration call a meshca
// running out of cluster, as an administrator would for such a run.
func pointWebhookAt(t *testing.T, env *testenv.Env, r release, port int) {
	t.Helper()
	ctx := context.Background()
	api := env.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations()
	cfg, err := api.Get(ctx, r.webhookConfig, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("https://127.0.0.1:%d/mutate", port)
	for i := range cfg.Webhooks {
		cfg.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url}
	}
	if _, err := api.Update(ctx, cfg, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("point webhook configuration %s at %s: %v", r.webhookConfig, url, err)
	}
}

// impersonatingKubeconfig writes a copy of the administrator's kubeconfig
// that acts as the release's ServiceAccount.
func impersonatingKubeconfig(t *testing.T, env *testenv.Env, r release) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range cfg.AuthInfos {
		ai.Impersonate = r.user()
		ai.ImpersonateGroups = r.groups()
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// impersonatingConfig is a rest.Config acting as the release's
// ServiceAccount.
func impersonatingConfig(env *testenv.Env, r release) *rest.Config {
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: r.user(), Groups: r.groups()}
	return cfg
}

// tlsContext is an annotated TLSContext naming secret and caSecret.
func tlsContext(ns, name, secret, caSecret string, hosts ...string) *unstructured.Unstructured {
	spec := map[string]any{"secret": secret}
	if caSecret != "" {
		spec["ca_secret"] = caSecret
	}
	if len(hosts) > 0 {
		h := make([]any, len(hosts))
		for i, s := range hosts {
			h[i] = s
		}
		spec["hosts"] = h
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "getambassador.io/v3alpha1",
		"kind":       "TLSContext",
		"metadata": map[string]any{
			"name":        name,
			"namespace":   ns,
			"annotations": map[string]any{"meshca.io/issue": "true"},
		},
		"spec": spec,
	}}
}

// removeTLSContextsAtEnd deletes the TLSContexts in namespaces when the test
// ends: the namespaces stay (no namespace controller runs here), and a
// cluster-wide meshca of a later test would otherwise reissue their Secrets
// with its own CA.
func removeTLSContextsAtEnd(t *testing.T, env *testenv.Env, namespaces ...string) {
	t.Helper()
	t.Cleanup(func() {
		for _, ns := range namespaces {
			all := &unstructured.Unstructured{}
			all.SetAPIVersion("getambassador.io/v3alpha1")
			all.SetKind("TLSContext")
			if err := env.Client.DeleteAllOf(context.Background(), all, client.InNamespace(ns)); err != nil {
				t.Errorf("delete TLSContexts in %s: %v", ns, err)
			}
		}
	})
}
