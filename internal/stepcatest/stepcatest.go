package stepcatest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.step.sm/crypto/jose"

	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/internal/testpki"
	"github.com/meshca/meshca/issuer/stepca"
)

// Version is the step-ca the tests run, built by hack/go-tool.sh.
const Version = "v0.30.2"

// Provisioners of the test step-ca.
const (
	Provisioner      = "meshca"        // carries stepca.X509Template
	PlainProvisioner = "plain"         // step-ca's default leaf template
	Password         = "correct horse" // decrypts both provisioners' keys
)

// Server is a running step-ca with its PKI and provisioner keys.
type Server struct {
	URL  string
	PKI  *testpki.PKI
	Keys map[string][]byte // provisioner name -> encrypted private JWK (compact JWE)

	stop func()
}

// Stop stops step-ca and waits for it to exit, as if it went down; the
// test's cleanup does it too. It is safe to call more than once.
func (s *Server) Stop() { s.stop() }

// Binary builds step-ca into the tool cache once per machine (without
// cgo, so the PC/SC library is not needed) and returns its path; $STEP_CA
// overrides it.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("STEP_CA"); p != "" {
		return p
	}
	path, err := testenv.GoTool("step-ca", "github.com/smallstep/certificates/cmd/step-ca", Version, "CGO_ENABLED=0")
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// JWKProvisioner is one JWK provisioner of ca.json with a fresh key
// encrypted with Password; it returns the entry and the JWE.
func JWKProvisioner(t testing.TB, name string, options any) (map[string]any, []byte) {
	t.Helper()
	pub, jwe, err := jose.GenerateDefaultKeyPair([]byte(Password))
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

// Start writes a ca.json for a fresh test PKI (root, intermediate with
// an unencrypted key, so no --password-file) and two JWK provisioners, starts
// step-ca on a free loopback port and waits for /health. step-ca is stopped
// when the test ends. With no "db" in ca.json step-ca keeps its used-token
// list in memory.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary(t)
	pki := testpki.New(t)
	dir := t.TempDir()
	meshcaProv, meshcaKey := JWKProvisioner(t, Provisioner, map[string]any{
		"x509": map[string]any{"template": stepca.X509Template},
	})
	plainProv, plainKey := JWKProvisioner(t, PlainProvisioner, nil)
	s := &Server{PKI: pki, Keys: map[string][]byte{Provisioner: meshcaKey, PlainProvisioner: plainKey}}
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
			s.stop = sync.OnceFunc(func() {
				cancel()
				<-done
			})
			t.Cleanup(func() {
				s.stop()
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
