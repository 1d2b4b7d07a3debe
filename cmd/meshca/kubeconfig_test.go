package main

import (
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/meshca/meshca/internal/testenv"
)

// TestKubeconfigLikeKubectl runs `meshca status` with kubeconfigs chosen
// the ways kubectl chooses them: $KUBECONFIG (a merged, colon-separated
// list), --context, --kubeconfig winning over $KUBECONFIG, ~/.kube/config,
// and none at all. One context reaches the test API server, the other a
// dead address, so a wrong choice fails the command.
func TestKubeconfigLikeKubectl(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	live, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	liveCtx := live.Contexts[live.CurrentContext]
	dir := t.TempDir()
	write := func(name string, c *clientcmdapi.Config) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := clientcmd.WriteToFile(*c, path); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// both: two contexts, the dead one current.
	both := live.DeepCopy()
	both.Contexts = map[string]*clientcmdapi.Context{
		"live": {Cluster: liveCtx.Cluster, AuthInfo: liveCtx.AuthInfo},
		"dead": {Cluster: "dead", AuthInfo: liveCtx.AuthInfo},
	}
	both.Clusters["dead"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1", InsecureSkipTLSVerify: true}
	both.CurrentContext = "dead"
	bothPath := write("both", both)
	// deadOnly knows only the dead context; liveOnly only the live one,
	// under a name deadOnly does not have.
	deadOnly := both.DeepCopy()
	delete(deadOnly.Contexts, "live")
	deadPath := write("dead-only", deadOnly)
	liveOnly := live.DeepCopy()
	liveOnly.Contexts = map[string]*clientcmdapi.Context{"other": liveCtx}
	liveOnly.CurrentContext = "other"
	livePath := write("live-only", liveOnly)
	home := t.TempDir()
	if err := clientcmd.WriteToFile(*liveOnly, filepath.Join(home, ".kube", "config")); err != nil {
		t.Fatal(err)
	}

	status := []string{"status", "-n", ns, "-o", "json"}
	cases := map[string]struct {
		env      []string
		args     []string
		wantFail string // empty: the command succeeds
	}{
		"KUBECONFIG, current-context dead":            {env: []string{"KUBECONFIG=" + bothPath}, wantFail: "127.0.0.1:1"},
		"KUBECONFIG, --context live":                  {env: []string{"KUBECONFIG=" + bothPath}, args: []string{"--context", "live"}},
		"KUBECONFIG list merged, context of 2nd":      {env: []string{"KUBECONFIG=" + deadPath + ":" + livePath}, args: []string{"--context", "other"}},
		"KUBECONFIG list, current-context of 1st":     {env: []string{"KUBECONFIG=" + deadPath + ":" + livePath}, wantFail: "127.0.0.1:1"},
		"--kubeconfig wins over KUBECONFIG":           {env: []string{"KUBECONFIG=" + deadPath}, args: []string{"--kubeconfig", livePath}},
		"--kubeconfig with --context dead":            {args: []string{"--kubeconfig", bothPath, "--context", "dead"}, wantFail: "127.0.0.1:1"},
		"unknown --context":                           {args: []string{"--kubeconfig", bothPath, "--context", "nope"}, wantFail: `context "nope" does not exist`},
		"~/.kube/config without KUBECONFIG":           {env: []string{"HOME=" + home}},
		"no kubeconfig anywhere and not in a cluster": {wantFail: "no configuration has been provided"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			out, errOut, code := runBinary(t, tc.env, append(status, tc.args...)...)
			if tc.wantFail == "" {
				if code != 0 || !strings.Contains(out, `"certificates"`) {
					t.Fatalf("exit %d, want 0 and a report\nstdout: %s\nstderr: %s", code, out, errOut)
				}
				return
			}
			if code != 1 || !strings.Contains(errOut, tc.wantFail) {
				t.Fatalf("exit %d, want 1 with an error saying %q\nstdout: %s\nstderr: %s", code, tc.wantFail, out, errOut)
			}
		})
	}
}
