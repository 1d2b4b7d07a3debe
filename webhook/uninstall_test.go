package webhook

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshca/meshca/internal/testenv"
)

// cleanupSnippet returns the shell block of docs/upgrade.md that removes
// meshca's injection from one workload: the fenced block whose first line
// sets NS, KIND and NAME.
func cleanupSnippet(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "upgrade.md"))
	if err != nil {
		t.Fatal(err)
	}
	var block []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(string(doc)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case !in && strings.HasPrefix(line, "NS=") && strings.Contains(line, "KIND=") && strings.Contains(line, "NAME="):
			in = true // the line itself sets the example's values: skipped
		case in && line == "```":
			return strings.Join(block, "\n")
		case in:
			block = append(block, line)
		}
	}
	t.Fatal("docs/upgrade.md has no shell block starting with NS=... KIND=... NAME=...")
	return ""
}

// TestUninstallCleanup runs docs/upgrade.md's commands that undo the
// webhook's injection, as written there, with the control plane's kubectl,
// on a Deployment the webhook injected (a certificate and the trust bundle,
// two containers and an init container, and volumes, mounts and variables
// of the user's own) after the webhook configuration is gone, as after helm
// uninstall. The pod template must be back to what was applied, the user's
// parts kept, and meshca's annotations gone.
func TestUninstallCleanup(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	startWebhook(t, env, ns)
	ctx := context.Background()

	tmpl := podTemplate("app", "proxy")
	tmpl.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "registry.example/init:1"}}
	tmpl.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	tmpl.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	tmpl.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "debug"}}
	tmpl.Annotations = map[string]string{"team": "web", "meshca.io/cert-revision": "1.abc"}
	ann := map[string]string{AnnotationCertificate: "true", AnnotationInjectTrustBundle: "true", "owner": "web-team"}
	applied := deployment("web", ann, tmpl)
	applied.Namespace = ns
	d := applied.DeepCopy()
	if err := env.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	checkTemplate(t, &d.Spec.Template, true, true, "web-meshca-tls")

	// helm uninstall removes the webhook configuration; wait until the API
	// server no longer calls the webhook.
	if out, err := env.Kubectl(t, "delete", "mutatingwebhookconfiguration", "meshca-"+ns); err != nil {
		t.Fatalf("delete webhook configuration: %v\n%s", err, out)
	}
	eventually(t, 60*time.Second, "the webhook to be gone", func() (bool, error) {
		probe := deployment("probe", trustAnn, podTemplate("app"))
		probe.Namespace = ns
		if err := env.Client.Create(ctx, probe, client.DryRunAll); err != nil {
			return false, err
		}
		return len(probe.Spec.Template.Spec.Volumes) == 0, nil
	})

	cmd := exec.Command("bash", "-euo", "pipefail", "-c", cleanupSnippet(t))
	cmd.Env = append(os.Environ(), "NS="+ns, "KIND=deployment", "NAME=web",
		"KUBECONFIG="+env.Kubeconfig, "PATH="+env.Bin+":"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docs/upgrade.md's cleanup commands: %v\n%s", err, out)
	}

	var got appsv1.Deployment
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(applied), &got); err != nil {
		t.Fatal(err)
	}
	want := applied.DeepCopy()
	delete(want.Spec.Template.Annotations, "meshca.io/cert-revision")
	// Compare with what the API server makes of the applied spec (its
	// defaults), by a dry-run create of it under another name.
	dry := want.DeepCopy()
	dry.Name = "web-as-applied"
	if err := env.Client.Create(ctx, dry, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	if !apiequality.Semantic.DeepEqual(dry.Spec.Template, got.Spec.Template) {
		t.Errorf("pod template after the cleanup:\n%+v\nwant what was applied:\n%+v", got.Spec.Template, dry.Spec.Template)
	}
	for k := range got.Annotations {
		if strings.HasPrefix(k, "meshca.io/") {
			t.Errorf("annotation %s left on the Deployment", k)
		}
	}
	if got.Annotations["owner"] != "web-team" {
		t.Errorf("the user's annotation went: %v", got.Annotations)
	}
}
