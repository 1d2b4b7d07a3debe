package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeGo stands in for the go command in hack/build-kube.sh: it records each
// build, waits a little so concurrent runs overlap, and writes a dummy
// binary (or fails, with FAKE_GO_FAIL set).
const fakeGo = `#!/bin/sh
out=""
while [ $# -gt 0 ]; do
	if [ "$1" = "-o" ]; then out=$2; shift; fi
	shift
done
echo "$out" >> "$FAKE_GO_LOG"
sleep 0.3
if [ -n "$FAKE_GO_FAIL" ]; then echo "fake build failure" >&2; exit 1; fi
printf '#!/bin/sh\necho fake\n' > "$out"
chmod +x "$out"
`

// buildKube runs hack/build-kube.sh with a fake go command and its own cache.
func buildKube(t *testing.T, cache, log string, fail bool) (string, error) {
	t.Helper()
	fake := t.TempDir()
	if err := os.WriteFile(filepath.Join(fake, "go"), []byte(fakeGo), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", filepath.Join(RepoRoot(), "hack", "build-kube.sh"))
	cmd.Env = append(os.Environ(), "PATH="+fake+":"+os.Getenv("PATH"), "MESHCA_CACHE="+cache, "FAKE_GO_LOG="+log)
	if fail {
		cmd.Env = append(cmd.Env, "FAKE_GO_FAIL=1")
	}
	var stdout strings.Builder
	cmd.Stdout = &stdout
	err := cmd.Run()
	return strings.TrimSpace(stdout.String()), err
}

func builds(t *testing.T, log string) int {
	t.Helper()
	b, err := os.ReadFile(log)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// TestBuildKubeConcurrent: two runs at once build once and agree.
func TestBuildKubeConcurrent(t *testing.T) {
	t.Parallel()
	cache, log := t.TempDir(), filepath.Join(t.TempDir(), "builds")
	var wg sync.WaitGroup
	outs, errs := make([]string, 2), make([]error, 2)
	for i := range 2 {
		wg.Go(func() { outs[i], errs[i] = buildKube(t, cache, log, false) })
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("run %d: %v", i, errs[i])
		}
	}
	want := filepath.Join(cache, "kube", KubeVersion, "bin")
	if outs[0] != want || outs[1] != want {
		t.Errorf("printed %q and %q, want %q", outs[0], outs[1], want)
	}
	if n := builds(t, log); n != 3 {
		t.Errorf("%d binaries built, want 3 (one build of kube-apiserver, kubectl and etcd)", n)
	}
	if _, err := buildKube(t, cache, log, false); err != nil || builds(t, log) != 3 {
		t.Errorf("a finished cache was rebuilt (err %v, builds %d)", err, builds(t, log))
	}
}

// TestBuildKubeNeverHalfFinished: a failed build leaves nothing that looks
// finished, and a folder of binaries without the stamp is rebuilt.
func TestBuildKubeNeverHalfFinished(t *testing.T) {
	t.Parallel()
	cache, log := t.TempDir(), filepath.Join(t.TempDir(), "builds")
	bin := filepath.Join(cache, "kube", KubeVersion, "bin")
	if _, err := buildKube(t, cache, log, true); err == nil {
		t.Fatal("a failing build succeeded")
	}
	if _, err := os.Stat(bin); !os.IsNotExist(err) {
		t.Fatalf("a failed build left %s behind (%v)", bin, err)
	}
	// Binaries without the stamp, as an interrupted older build might leave.
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kube-apiserver", "kubectl", "etcd"} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("partial"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	before := builds(t, log)
	if _, err := buildKube(t, cache, log, false); err != nil {
		t.Fatal(err)
	}
	if builds(t, log)-before != 3 {
		t.Errorf("binaries without a stamp were taken as finished")
	}
	if _, err := os.Stat(filepath.Join(bin, ".complete")); err != nil {
		t.Errorf("no stamp after a good build: %v", err)
	}
}
