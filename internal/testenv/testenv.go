package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// KubeVersion is the version of the control plane hack/build-kube.sh builds.
const KubeVersion = "v1.37.2"

// Env is a running control plane shared by the tests of one package.
type Env struct {
	// Config reaches the API server as an administrator.
	Config *rest.Config
	// Client is a controller-runtime client with meshca's scheme.
	Client client.Client
	// Clientset is a typed client-go clientset.
	Clientset kubernetes.Interface
	// Kubeconfig is the path of a kubeconfig file for Config (kubectl --kubeconfig).
	Kubeconfig string
	// Bin is the folder holding kube-apiserver, etcd and kubectl.
	Bin string

	env *envtest.Environment
	// certDir holds the API server's certificates; it outlives a restart
	// of the API server (StopAPIServer, StartAPIServer).
	certDir string
}

var (
	current    atomic.Pointer[Env]
	nsSeq      atomic.Int64
	mainCalled atomic.Bool
	// noCRDs: MainWithoutCRDs asked for a control plane without meshca's CRDs.
	noCRDs    atomic.Bool
	startOnce sync.Once
	startErr  error
)

// RepoRoot returns the root of the meshca checkout holding this file.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BinDir returns the folder of the control plane binaries: KUBEBUILDER_ASSETS
// if set, else the tool cache folder that hack/build-kube.sh fills.
func BinDir() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	cache := os.Getenv("MESHCA_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "meshca")
	}
	return filepath.Join(cache, "kube", KubeVersion, "bin")
}

// Main runs the package's tests and stops the control plane afterwards. Call
// it from TestMain. The control plane starts at the first Get, so runs that
// need none (a -run that selects pure tests, benchmarks, fuzz workers, which
// each run TestMain) do not start one. With -short it is never started and
// tests that call Get are skipped with a message (never silently).
func Main(m *testing.M) {
	os.Exit(Run(m))
}

// MainWithoutCRDs is Main for a package whose tests install CRDs
// themselves: its control plane starts without meshca's CRDs (config/crd),
// so a test can put Emissary's TLSContext CRD there first, or let the Helm
// chart create it.
func MainWithoutCRDs(m *testing.M) {
	noCRDs.Store(true)
	os.Exit(Run(m))
}

// Run is Main without the exit: it returns the exit code, so that a
// TestMain can remove what it set up for the package before exiting.
func Run(m *testing.M) int {
	if testingShort() {
		return m.Run()
	}
	mainCalled.Store(true)
	code := m.Run()
	if e := current.Load(); e != nil {
		if err := e.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: stop: %v\n", err)
		}
	}
	return code
}

func testingShort() bool {
	for _, a := range os.Args[1:] {
		if a == "-test.short" || a == "-test.short=true" {
			return true
		}
	}
	return false
}

// Start starts a control plane with meshca's CRDs installed (unless the
// package's TestMain is MainWithoutCRDs). Most tests use
// Main and Get instead.
func Start() (*Env, error) {
	bin := BinDir()
	for _, name := range []string{"kube-apiserver", "etcd", "kubectl"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			return nil, fmt.Errorf("control plane binary %s missing in %s: run `make kube` (or hack/build-kube.sh) first", name, bin)
		}
	}
	if os.Getenv("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT") == "" {
		// A loaded 2-core machine needs more than envtest's default 20s.
		os.Setenv("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT", "90s")
	}
	// A fixed certificate folder lets the API server restart with the same
	// serving certificate, so clients keep trusting it (envtest makes a new
	// one in a fresh random folder otherwise).
	certDir, err := os.MkdirTemp("", "meshca-apiserver-")
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		ControlPlane:          envtest.ControlPlane{APIServer: &envtest.APIServer{CertDir: certDir}},
		BinaryAssetsDirectory: bin,
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd")},
		ErrorIfCRDPathMissing: true,
		Scheme:                Scheme,
	}
	if noCRDs.Load() {
		env.CRDDirectoryPaths, env.ErrorIfCRDPathMissing = nil, false
	}
	// Hardened clusters (OpenShift among them) enforce that whoever sets
	// blockOwnerDeletion on an owner reference may update the owner's
	// finalizers; the tests must meet the same rule, so RBAC that lacks it
	// fails here and not in production. Administrators are exempt.
	env.ControlPlane.GetAPIServer().Configure().Append("enable-admission-plugins", "OwnerReferencesPermissionEnforcement")
	cfg, err := env.Start()
	if err != nil {
		os.RemoveAll(certDir)
		return nil, fmt.Errorf("start control plane from %s: %w", bin, err)
	}
	e := &Env{Config: cfg, Bin: bin, env: env, certDir: certDir}
	if err := e.init(); err != nil {
		_ = env.Stop()
		return nil, err
	}
	return e, nil
}

func (e *Env) init() error {
	var err error
	// Tests create many objects quickly; client-go's default 5 QPS would
	// make them slow for no reason.
	e.Config.QPS, e.Config.Burst = 500, 1000
	if e.Client, err = client.New(e.Config, client.Options{Scheme: Scheme}); err != nil {
		return fmt.Errorf("controller-runtime client: %w", err)
	}
	if e.Clientset, err = kubernetes.NewForConfig(e.Config); err != nil {
		return fmt.Errorf("clientset: %w", err)
	}
	user, err := e.env.ControlPlane.AddUser(envtest.User{Name: "meshca-test-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("add test user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	dir, err := os.MkdirTemp("", "meshca-testenv-")
	if err != nil {
		return err
	}
	e.Kubeconfig = filepath.Join(dir, "kubeconfig")
	return os.WriteFile(e.Kubeconfig, kc, 0o600)
}

// Stop stops the control plane and removes its files.
func (e *Env) Stop() error {
	if e.Kubeconfig != "" {
		os.RemoveAll(filepath.Dir(e.Kubeconfig))
	}
	err := e.env.Stop()
	if e.certDir != "" {
		os.RemoveAll(e.certDir)
	}
	return err
}

// StopAPIServer stops kube-apiserver alone, as in an outage of the API
// server; etcd keeps running and StartAPIServer brings it back.
func (e *Env) StopAPIServer() error {
	err := e.env.ControlPlane.APIServer.Stop()
	if err != nil && strings.Contains(err.Error(), "timeout waiting for process") {
		// kube-apiserver drains requests and watches on SIGTERM, which can
		// outlast envtest's stop timeout on a loaded machine; envtest then
		// SIGKILLs it, which is an outage all the same.
		return nil
	}
	return err
}

// StartAPIServer starts kube-apiserver again on the same address with the
// same certificates, so existing clients and kubeconfigs keep working.
func (e *Env) StartAPIServer() error {
	return e.env.ControlPlane.APIServer.Start()
}

// Get returns the package's control plane, starting it on first use. It
// fails the test when TestMain does not call Main or the control plane does
// not start, and skips it (with a message) under -short.
func Get(t testing.TB) *Env {
	t.Helper()
	if e := current.Load(); e != nil {
		return e
	}
	if testing.Short() {
		t.Skip("needs the local control plane; not started under -short")
	}
	if !mainCalled.Load() {
		t.Fatal("testenv: no control plane: call testenv.Main(m) from TestMain")
	}
	startOnce.Do(func() {
		e, err := Start()
		if err != nil {
			startErr = err
			return
		}
		current.Store(e)
	})
	if startErr != nil {
		t.Fatalf("testenv: %v", startErr)
	}
	return current.Load()
}

// Namespace creates a fresh namespace for one test and returns its name. The
// namespace stays (no namespace controller runs here to empty it).
func (e *Env) Namespace(t testing.TB, labels ...map[string]string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", dnsLabel(t.Name()), nsSeq.Add(1))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if len(labels) > 0 {
		ns.Labels = labels[0]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Client.Create(ctx, ns); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	return name
}

// Kubectl runs the control plane's kubectl against the test API server and
// returns its combined output.
func (e *Env) Kubectl(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(e.Bin, "kubectl"), append([]string{"--kubeconfig", e.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// dnsLabel turns a test name into a short DNS label prefix.
func dnsLabel(s string) string {
	s = strings.ToLower(s)
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	for strings.Contains(out, "--") {
		out = strings.ReplaceAll(out, "--", "-")
	}
	if len(out) > 40 {
		out = strings.TrimRight(out[:40], "-")
	}
	if out == "" {
		out = "t"
	}
	return out
}
