package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// meshca's listening addresses, picked free at each start: the machine is
// shared, so fixed ports may be taken.
var (
	metricsAddr, healthAddr string
	webhookPort             int
)

// freePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago (all held open together, so none is handed out twice).
func freePorts(n int) []int {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			continue
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func freePort() int { return freePorts(1)[0] }

const (
	meshcaNamespace = "meshca-system"
	// createWorkers is how many objects the harness creates at once.
	createWorkers = 16
)

var tlsContextGVR = schema.GroupVersionResource{Group: "getambassador.io", Version: "v3alpha1", Resource: "tlscontexts"}

// limits are a daemon's client and issuance limits for one run.
type limits struct {
	name string // "defaults" or "lifted"
	args []string
}

var (
	meshcaDefaults = limits{name: "defaults"}
	// meshcaLifted lifts every limit meshca has: client QPS/burst and
	// the issuance rate.
	meshcaLifted = limits{name: "lifted", args: []string{"--kube-api-qps=5000", "--kube-api-burst=10000", "--max-issuance-rate=100000"}}
)

func machine() map[string]string {
	m := map[string]string{"cores": fmt.Sprint(runtime.NumCPU()), "goos": runtime.GOOS, "goarch": runtime.GOARCH}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				m["memory"] = strings.TrimSpace(v)
			}
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m["cpu"] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return m
}

func exec1(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).Output()
	return string(out), err
}

func (b *bench) ensureNamespace(ctx context.Context, name string, labels map[string]string) error {
	_, err := b.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// startMeshca runs the meshca binary against the control plane and waits
// until /readyz answers.
func (b *bench) startMeshca(ctx context.Context, tag string, extra ...string) (*proc, error) {
	return b.startMeshcaBin(ctx, b.o.meshca, tag, extra...)
}

// startMeshcaBin is startMeshca with another meshca binary (-webhook-compare).
func (b *bench) startMeshcaBin(ctx context.Context, bin, tag string, extra ...string) (*proc, error) {
	ports := freePorts(3)
	metricsAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	healthAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
	webhookPort = ports[2]
	args := []string{"serve",
		"--kubeconfig", b.env.Kubeconfig,
		"--namespace", meshcaNamespace,
		"--leader-elect=false",
		"--metrics-address", metricsAddr,
		"--health-address", healthAddr,
		fmt.Sprintf("--webhook-port=%d", webhookPort),
		"--webhook-names=127.0.0.1",
		"--log-format=json",
	}
	args = append(args, extra...)
	p, err := startProc("meshca", bin, filepath.Join(b.o.workDir, "meshca-"+tag+".log"), args...)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := waitHTTP(wctx, p, "http://"+healthAddr+"/readyz"); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// reconciled is how many TLSContext reconciles meshca has finished.
func reconciled() float64 {
	v, _ := scrapeSum("http://"+metricsAddr+"/metrics", "controller_runtime_reconcile_total", `controller="tlscontext"`)
	return v
}

// parallel runs fn(i) for i in [0,n) on createWorkers goroutines and
// returns the first error.
func parallel(n int, fn func(i int) error) error { return parallelN(n, createWorkers, fn) }

// parallelN is parallel on the given number of goroutines.
func parallelN(n, workers int, fn func(i int) error) error {
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	next := make(chan int)
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

func tcName(i int) string { return fmt.Sprintf("tc-%05d", i) }

// createTLSContexts creates n managed TLSContexts, each naming its own
// Secret, createWorkers at a time, and returns when each create started,
// by Secret name.
func (b *bench) createTLSContexts(ctx context.Context, ns string, n int) (map[string]time.Time, error) {
	dyn, err := dynamic.NewForConfig(b.cfg)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	created := make(map[string]time.Time, n)
	err = parallel(n, func(i int) error {
		name := tcName(i)
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "getambassador.io/v3alpha1", "kind": "TLSContext",
			"metadata": map[string]any{"name": name, "namespace": ns, "annotations": map[string]any{"meshca.io/issue": "true"}},
			"spec":     map[string]any{"secret": name + "-tls", "hosts": []any{name + "." + ns + ".svc"}},
		}}
		t := time.Now()
		if _, err := dyn.Resource(tlsContextGVR).Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create TLSContext %s/%s: %w", ns, name, err)
		}
		mu.Lock()
		created[name+"-tls"] = t
		mu.Unlock()
		return nil
	})
	return created, err
}

// emptyNamespace deletes the TLSContexts and Secrets of ns (no namespace
// controller runs here, so the namespace itself stays). A DeleteCollection of
// thousands can outlast the request timeout while the API server carries on;
// then it checks whether the list is empty and, if not, deletes again.
func (b *bench) emptyNamespace(ctx context.Context, ns string) error {
	dyn, err := dynamic.NewForConfig(b.cfg)
	if err != nil {
		return err
	}
	tcs := dyn.Resource(tlsContextGVR).Namespace(ns)
	secrets := b.cs.CoreV1().Secrets(ns)
	for _, c := range []struct {
		del   func() error
		empty func() (bool, error)
	}{
		{func() error { return tcs.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}) },
			func() (bool, error) {
				l, err := tcs.List(ctx, metav1.ListOptions{Limit: 1})
				return err == nil && len(l.Items) == 0, err
			}},
		{func() error { return secrets.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}) },
			func() (bool, error) {
				l, err := secrets.List(ctx, metav1.ListOptions{Limit: 1})
				return err == nil && len(l.Items) == 0, err
			}},
	} {
		deadline := time.Now().Add(5 * time.Minute)
		for {
			err := c.del()
			if err == nil || apierrors.IsNotFound(err) {
				break
			}
			if !apierrors.IsTimeout(err) && !apierrors.IsServerTimeout(err) {
				return err
			}
			if empty, _ := c.empty(); empty {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("empty namespace %s: %w", ns, err)
			}
		}
	}
	return nil
}

// apiRequests is the API server's count of resource requests so far
// (apiserver_request_total without the non-resource paths such as /metrics).
func (b *bench) apiRequests(ctx context.Context) (float64, error) {
	raw, err := b.cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, err
	}
	all, err := sumMetric(bytes.NewReader(raw), "apiserver_request_total")
	if err != nil {
		return 0, err
	}
	nonResource, err := sumMetric(bytes.NewReader(raw), "apiserver_request_total", `,resource=""`)
	return all - nonResource, err
}

// selfSignedCA returns a fresh ECDSA P-256 CA certificate and its PKCS#8
// key as PEM, valid from a minute ago for validity: the size of what meshca
// writes, for the API write floor's Secrets, and the CA of cert-manager's
// Issuer.
func selfSignedCA(cn string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(validity),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), nil
}

// apiWriteFloor creates n kubernetes.io/tls Secrets serially, one request
// after the other, and returns the total time.
func (b *bench) apiWriteFloor(ctx context.Context, ns string, n int) (time.Duration, error) {
	crt, key, err := selfSignedCA("floor", 24*time.Hour)
	if err != nil {
		return 0, err
	}
	// A chain and a bundle, as meshca writes them.
	crt = append(append([]byte{}, crt...), crt...)
	start := time.Now()
	for i := range n {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("floor-%05d", i), Namespace: ns},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key, "ca.crt": crt[:len(crt)/2]},
		}
		if _, err := b.cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return 0, fmt.Errorf("create Secret: %w", err)
		}
	}
	return time.Since(start), nil
}
