package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/meshca/meshca/internal/testenv"
)

// dockerBuildLine returns the shell command of the Dockerfile's RUN that
// builds meshca, without its --mount options: what the image build runs.
func dockerBuildLine(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.ReplaceAll(string(b), "\\\n", " ")
	for _, line := range strings.Split(joined, "\n") {
		if !strings.HasPrefix(line, "RUN ") || !strings.Contains(line, "go build") {
			continue
		}
		return regexp.MustCompile(`--mount=\S+`).ReplaceAllString(strings.TrimPrefix(line, "RUN "), "")
	}
	t.Fatal("the Dockerfile has no RUN ... go build")
	return ""
}

// TestImageVersion runs the Dockerfile's build command, as written there,
// with its VERSION and COMMIT build args, and checks that `meshca version`
// of the result prints the release and commit, not dev; and that without
// the args the image says dev rather than a made-up version. hack/node
// builds the node's image with the same ldflags (checked below), so
// `meshca version` in either image prints the release.
func TestImageVersion(t *testing.T) {
	t.Parallel()
	line := dockerBuildLine(t)
	for name, tc := range map[string]struct {
		env  []string
		want string
	}{
		"release":    {[]string{"VERSION=v9.8.7", "COMMIT=0123456789abcdef"}, "meshca v9.8.7 (commit 0123456789abcdef, "},
		"no version": {[]string{"VERSION=dev", "COMMIT="}, "meshca dev (commit "},
	} {
		// One after the other: the second build only links again.
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "meshca")
			cmd := exec.Command("sh", "-c", strings.ReplaceAll(line, "/out/meshca", out))
			cmd.Dir = testenv.RepoRoot()
			cmd.Env = append(os.Environ(), append(tc.env, "GO_TAGS=", "TARGETOS="+runtime.GOOS, "TARGETARCH="+runtime.GOARCH)...)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("the Dockerfile's build line: %v\n%s\n%s", err, line, b)
			}
			got, err := exec.Command(out, "version").CombinedOutput()
			if err != nil {
				t.Fatalf("meshca version: %v\n%s", err, got)
			}
			if !strings.HasPrefix(string(got), tc.want) {
				t.Errorf("meshca version = %q, want it to start with %q", got, tc.want)
			}
		})
	}

	// hack/node/e2e.sh stamps the same variables.
	sh, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "hack", "node", "e2e.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-X main.version=$version", "-X main.commit=$commit", "CGO_ENABLED=0 go build -trimpath"} {
		if !strings.Contains(string(sh), want) {
			t.Errorf("hack/node/e2e.sh builds meshca without %q", want)
		}
	}
}
