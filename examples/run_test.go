package examples

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshca/meshca/internal/testpki"
)

// TestMakeRun runs the script behind `make run` with RUN_ONCE=1 and checks
// the story it tells: the Secrets appear and the mTLS hop succeeds with the
// gateway certificate and is refused without one. meshca runs in it with
// the chart's RBAC, so a forbidden request in its log fails the test too.
func TestMakeRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole make run story; not under -short")
	}
	for _, tool := range []string{"openssl", "curl", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed: %v", tool, err)
		}
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "hack", "run.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"RUN_ONCE=1",
		"RUN_DIR="+dir,
		fmt.Sprintf("WEBHOOK_PORT=%d", testpki.FreePort(t)),
		fmt.Sprintf("METRICS_PORT=%d", testpki.FreePort(t)),
		fmt.Sprintf("HEALTH_PORT=%d", testpki.FreePort(t)),
		fmt.Sprintf("MTLS_PORT=%d", testpki.FreePort(t)),
	)
	out, err := cmd.CombinedOutput()
	text := string(out)
	if err != nil {
		t.Fatalf("make run's script failed: %v\n%s", err, text)
	}
	for _, want := range []string{
		"OK demo/upstream-certs",
		"OK demo/upstream-ca",
		"OK demo/upstream-service-meshca-tls",
		"meshca-trust -> /var/run/meshca/trust",
		"meshca-tls -> /var/run/meshca/tls",
		"OK mTLS with the gateway certificate: the upstream accepted it",
		"OK without a client certificate: refused",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	log, err := os.ReadFile(filepath.Join(dir, "meshca.log"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToLower(string(log)), "forbidden") {
		t.Errorf("meshca hit a permission it lacks under the chart's RBAC:\n%s", grep(string(log), "forbidden"))
	}
	if t.Failed() {
		t.Logf("output:\n%s", text)
	}
}

func grep(s, word string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(strings.ToLower(l), word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
