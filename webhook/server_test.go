package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/meshca/meshca/internal/testpki"
)

// staticCert is a CertificateSource for tests.
type staticCert struct{ cert *tls.Certificate }

func (s staticCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cert, nil
}

var _ CertificateSource = staticCert{}

func newTestServer(t testing.TB, reg prometheus.Registerer) *Server {
	t.Helper()
	s, err := New(Config{Certificates: staticCert{}, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func reviewBody(t testing.TB, req *admissionv1.AdmissionRequest) []byte {
	t.Helper()
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1TypeMetaReview,
		Request:  req,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestServeHTTPBadInput(t *testing.T) {
	t.Parallel()
	valid := reviewBody(t, request(t, admissionv1.Create, deployment("web", trustAnn, podTemplate("app"))))
	huge := append(append([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","object":{"pad":"`),
		bytes.Repeat([]byte("a"), DefaultMaxRequestBytes)...), `"}}}`...)
	cases := map[string]struct {
		method, path, contentType string
		body                      []byte
		wantCode                  int
		wantText                  string
	}{
		"valid":                  {"POST", "/mutate", "application/json", valid, 200, `"allowed":true`},
		"charset parameter":      {"POST", "/mutate", "application/json; charset=utf-8", valid, 200, `"allowed":true`},
		"wrong method":           {"GET", "/mutate", "application/json", nil, 405, "method GET not allowed"},
		"wrong path":             {"POST", "/validate", "application/json", valid, 404, "no such path"},
		"wrong content type":     {"POST", "/mutate", "text/plain", valid, 415, "content type"},
		"no content type":        {"POST", "/mutate", "", valid, 415, "content type"},
		"yaml content type":      {"POST", "/mutate", "application/yaml", valid, 415, "content type"},
		"invalid json":           {"POST", "/mutate", "application/json", []byte(`{"apiVersion":`), 400, "not valid JSON"},
		"empty body":             {"POST", "/mutate", "application/json", nil, 400, "not valid JSON"},
		"json array":             {"POST", "/mutate", "application/json", []byte(`[1,2]`), 400, "not valid JSON"},
		"not a review":           {"POST", "/mutate", "application/json", []byte(`{"apiVersion":"apps/v1","kind":"Deployment"}`), 400, "not an admission.k8s.io/v1 AdmissionReview"},
		"v1beta1 review":         {"POST", "/mutate", "application/json", bytes.Replace(valid, []byte("admission.k8s.io/v1"), []byte("admission.k8s.io/v1beta1"), 1), 400, "not an admission.k8s.io/v1 AdmissionReview"},
		"review without request": {"POST", "/mutate", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), 400, "no request"},
		"oversized body":         {"POST", "/mutate", "application/json", huge, 413, "larger than"},
		"object not an object": {"POST", "/mutate", "application/json",
			[]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"CREATE","object":[1]}}`),
			200, `"allowed":false`},
		"no object": {"POST", "/mutate", "application/json",
			[]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"CREATE"}}`),
			200, `no object in the request`},
		"unknown kind": {"POST", "/mutate", "application/json",
			[]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"example.com","version":"v1","kind":"Widget"},"operation":"CREATE","object":{}}}`),
			200, `does not handle example.com/v1 Widget`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewPedanticRegistry()
			s := newTestServer(t, reg)
			r := httptest.NewRequest(tc.method, tc.path, bytes.NewReader(tc.body))
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, r)
			if w.Code != tc.wantCode {
				t.Errorf("status %d, want %d; body %s", w.Code, tc.wantCode, w.Body)
			}
			if !strings.Contains(w.Body.String(), tc.wantText) {
				t.Errorf("body %q does not contain %q", w.Body, tc.wantText)
			}
			if w.Code == 200 {
				var review admissionv1.AdmissionReview
				if err := json.Unmarshal(w.Body.Bytes(), &review); err != nil || review.Response == nil {
					t.Fatalf("200 without an AdmissionReview response: %v %s", err, w.Body)
				}
				if review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" {
					t.Errorf("response type %v", review.TypeMeta)
				}
				if review.Response.UID == "" {
					t.Error("response without the request's UID")
				}
			}
			if n := testutil.CollectAndCount(reg, "meshca_webhook_requests_total"); n != 1 {
				t.Errorf("%d request counter series, want 1", n)
			}
			if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
				t.Errorf("metrics lint: %v %v", problems, err)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	s := newTestServer(t, reg)
	send := func(req *admissionv1.AdmissionRequest) {
		r := httptest.NewRequest("POST", Path, bytes.NewReader(reviewBody(t, req)))
		r.Header.Set("Content-Type", "application/json")
		s.ServeHTTP(httptest.NewRecorder(), r)
	}
	send(request(t, admissionv1.Create, deployment("web", trustAnn, podTemplate("app"))))
	send(request(t, admissionv1.Create, deployment("web", trustAnn, podTemplate("app"))))
	send(request(t, admissionv1.Create, statefulSet("db", nil, podTemplate("db"))))
	want := `
# HELP meshca_webhook_requests_total Admission requests by workload kind (Deployment, StatefulSet, DaemonSet, other, unknown) and result (patched, unchanged, ignored, denied, badrequest, busy).
# TYPE meshca_webhook_requests_total counter
meshca_webhook_requests_total{kind="Deployment",result="patched"} 2
meshca_webhook_requests_total{kind="StatefulSet",result="ignored"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "meshca_webhook_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "meshca_webhook_request_duration_seconds"); n != 2 {
		t.Errorf("%d latency series, want 2", n)
	}
	// Registering twice on one registry is an error, not a panic.
	if _, err := New(Config{Certificates: staticCert{}, Registry: reg}); err == nil {
		t.Error("second New on the same registry: no error")
	}
}

// TestStartTLS serves over real TLS: TLS 1.1 is refused, a renewed
// certificate is picked up at the next handshake, and Start returns when its
// context ends.
func TestStartTLS(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t)
	src := newKeyPair()
	loadLeaf(t, src, pki.Leaf(t, testpki.LeafOptions{IPs: []net.IP{net.ParseIP("127.0.0.1")}}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Listener: ln, Certificates: src})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pki.RootPEM)
	url := "https://" + ln.Addr().String() + Path
	serial := func() string {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
		defer c.CloseIdleConnections()
		resp, err := c.Post(url, "application/json", bytes.NewReader(reviewBody(t, request(t, admissionv1.Create, deployment("web", trustAnn, podTemplate("app"))))))
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	first := serial()
	next := pki.Leaf(t, testpki.LeafOptions{IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	loadLeaf(t, src, next)
	if got := serial(); got == first || got != next.Cert.SerialNumber.String() {
		t.Errorf("after renewal served serial %s, want %s", got, next.Cert.SerialNumber)
	}

	old := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS11}}}
	if _, err := old.Post(url, "application/json", nil); err == nil {
		t.Error("TLS 1.1 handshake succeeded")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Start: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Start did not return after its context ended")
	}
}

func loadLeaf(t testing.TB, k *keyPair, leaf *testpki.Leaf) {
	t.Helper()
	if changed, err := k.load(leaf.CertPEM, leaf.KeyPEM); err != nil || !changed {
		t.Fatalf("load key pair: changed=%v err=%v", changed, err)
	}
}

func TestNewRequiresCertificates(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{}); err == nil {
		t.Error("New without Certificates: no error")
	}
}

// TestStartProtocols: HTTP/1.1 only unless EnableHTTP2, whatever the client
// offers (the API server offers h2 first).
func TestStartProtocols(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t)
	leaf := pki.Leaf(t, testpki.LeafOptions{IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pki.RootPEM)
	body := reviewBody(t, request(t, admissionv1.Create, deployment("web", trustAnn, podTemplate("app"))))
	cases := map[string]struct {
		enableHTTP2 bool
		want        string
	}{
		"default":     {false, "HTTP/1.1"},
		"EnableHTTP2": {true, "HTTP/2.0"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := newKeyPair()
			loadLeaf(t, src, leaf)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			s, err := New(Config{Listener: ln, Certificates: src, EnableHTTP2: tc.enableHTTP2})
			if err != nil {
				t.Fatal(err)
			}
			serve(t, s)
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}
			defer tr.CloseIdleConnections()
			c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
			for range 2 { // the second request reuses the connection
				resp, err := c.Post("https://"+ln.Addr().String()+Path, "application/json", bytes.NewReader(body))
				if err != nil {
					t.Fatalf("POST: %v", err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.Proto != tc.want {
					t.Errorf("status %d over %s, want 200 over %s", resp.StatusCode, resp.Proto, tc.want)
				}
			}
		})
	}
}

// serve runs s until the test ends, then checks that Start returned
// cleanly.
func serve(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start: %v", err)
		}
	})
}
