package stepca_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.step.sm/crypto/jose"

	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/internal/testpki"
	"github.com/meshca/meshca/issuer/stepca"
)

// stepCAVersion is the step-ca the tests run, built by hack/go-tool.sh.
const stepCAVersion = "v0.30.2"

// Provisioners of the test step-ca.
const (
	provisionerName     = "meshca"         // carries stepca.X509Template
	plainProvisioner    = "plain"          // step-ca's default leaf template
	provisionerPassword = "correct horse"  // decrypts both provisioners' keys
	wrongPassword       = "battery staple" // decrypts nothing
)

// server is a running step-ca with its PKI and provisioner keys.
type server struct {
	URL  string
	PKI  *testpki.PKI
	Keys map[string][]byte // provisioner name -> encrypted private JWK (compact JWE)
}

// stepCABinary builds step-ca into the tool cache once per machine (without
// cgo, so the PC/SC library is not needed) and returns its path; $STEP_CA
// overrides it.
func stepCABinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("STEP_CA"); p != "" {
		return p
	}
	path, err := testenv.GoTool("step-ca", "github.com/smallstep/certificates/cmd/step-ca", stepCAVersion, "CGO_ENABLED=0")
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// jwkProvisioner is one JWK provisioner of ca.json with a fresh key
// encrypted with provisionerPassword; it returns the entry and the JWE.
func jwkProvisioner(t *testing.T, name string, options any) (map[string]any, []byte) {
	t.Helper()
	pub, jwe, err := jose.GenerateDefaultKeyPair([]byte(provisionerPassword))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := jwe.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	p := map[string]any{
		"type":         "JWK",
		"name":         name,
		"key":          pub,
		"encryptedKey": enc,
		// Lifetimes from 5 minutes to 30 days; the default 24h is
		// meshca's too.
		"claims": map[string]any{
			"minTLSCertDuration":     "5m",
			"maxTLSCertDuration":     "720h",
			"defaultTLSCertDuration": "24h",
		},
	}
	if options != nil {
		p["options"] = options
	}
	return p, []byte(enc)
}

// startStepCA writes a ca.json for a fresh test PKI (root, intermediate with
// an unencrypted key, so no --password-file) and two JWK provisioners, starts
// step-ca on a free loopback port and waits for /health. step-ca is stopped
// when the test ends. With no "db" in ca.json step-ca keeps its used-token
// list in memory.
func startStepCA(t *testing.T) *server {
	t.Helper()
	bin := stepCABinary(t)
	pki := testpki.New(t)
	dir := t.TempDir()
	meshcaProv, meshcaKey := jwkProvisioner(t, provisionerName, map[string]any{
		"x509": map[string]any{"template": stepca.X509Template},
	})
	plainProv, plainKey := jwkProvisioner(t, plainProvisioner, nil)
	s := &server{PKI: pki, Keys: map[string][]byte{provisionerName: meshcaKey, plainProvisioner: plainKey}}
	var logs testenv.LockedBuffer
	for attempt := 0; ; attempt++ {
		port := testpki.FreePort(t)
		config := map[string]any{
			"root":     testpki.WriteFile(t, dir, "root.crt", pki.RootPEM),
			"crt":      testpki.WriteFile(t, dir, "intermediate.crt", pki.IntermediatePEM),
			"key":      testpki.WriteFile(t, dir, "intermediate.key", pki.IntermediateKeyPEM),
			"address":  "127.0.0.1:" + strconv.Itoa(port),
			"dnsNames": []string{"127.0.0.1", "localhost"},
			"logger":   map[string]any{"format": "text"},
			"authority": map[string]any{
				"provisioners": []any{meshcaProv, plainProv},
				"backdate":     "1m",
			},
		}
		data, err := json.MarshalIndent(config, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		caJSON := testpki.WriteFile(t, dir, "ca.json", data)
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, bin, caJSON)
		cmd.Env = append(os.Environ(), "STEPPATH="+dir)
		logs.Reset()
		cmd.Stdout, cmd.Stderr = &logs, &logs
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatalf("start step-ca: %v", err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		s.URL = "https://127.0.0.1:" + strconv.Itoa(port)
		err = waitHealthy(s.URL, pki.Root, done)
		if err == nil {
			t.Cleanup(func() {
				cancel()
				<-done
				if t.Failed() {
					t.Logf("step-ca log (last 8 KiB):\n%s", logs.Tail(8<<10))
				}
			})
			return s
		}
		cancel()
		<-done
		if attempt == 2 {
			t.Fatalf("step-ca did not become healthy on %s: %v\n%s", s.URL, err, logs.String())
		}
	}
}

// waitHealthy polls GET /health until it says ok, step-ca exits, or 60s pass.
func waitHealthy(base string, root *x509.Certificate, exited <-chan struct{}) error {
	pool := x509.NewCertPool()
	pool.AddCert(root)
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("step-ca exited")
		default:
		}
		resp, err := c.Get(base + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"ok"`) {
				return nil
			}
			err = errors.New(resp.Status + ": " + string(body))
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// countingProxy forwards TCP connections on a loopback port to target and
// counts them, to prove that a request never reached step-ca. step-ca
// matches token audiences without their port, so the proxy's URL works.
type countingProxy struct {
	URL         string
	connections atomic.Int64
}

func startCountingProxy(t *testing.T, target string) *countingProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{URL: "https://" + l.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			p.connections.Add(1)
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			track(in)
			track(out)
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(out, in); out.Close() }()
			go func() { defer wg.Done(); _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return p
}
