package webhook

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/meshca/meshca/internal/testpki"
)

// TestBodyNotAllocatedFromContentLength: requests that announce the largest
// body allowed and end after 1 KiB cost what they sent, not what they
// announced. Not parallel: it reads the process's allocation total.
func TestBodyNotAllocatedFromContentLength(t *testing.T) {
	s := newTestServer(t, nil)
	const requests = 20
	sent := bytes.Repeat([]byte("a"), 1<<10)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range requests {
		r := httptest.NewRequest("POST", Path, bytes.NewReader(sent))
		r.Header.Set("Content-Type", "application/json")
		r.ContentLength = DefaultMaxRequestBytes
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != http.StatusBadRequest {
			t.Fatalf("status %d, want 400 for a body shorter than announced; body %s", w.Code, w.Body)
		}
	}
	runtime.ReadMemStats(&after)
	// Announced: 20 x 3 MiB. Sent: 20 x 1 KiB, read into at most
	// initialBodyBuffer each.
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(requests*4*initialBodyBuffer); got > limit {
		t.Errorf("%d requests announcing %d bytes and sending %d allocated %d MiB, want under %d MiB",
			requests, DefaultMaxRequestBytes, len(sent), got>>20, limit>>20)
	}
}

func TestReadBody(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte("0123456789"), 30_000) // 300,000 bytes, past initialBodyBuffer
	cases := map[string]struct {
		contentLength int64
		body          []byte
	}{
		"exact":        {int64(len(body)), body},
		"unknown":      {-1, body},
		"empty":        {0, nil},
		"small":        {5, body[:5]},
		"announced 0":  {0, body[:100]}, // net/http would never pass this; read to EOF
		"one byte off": {int64(len(body)) + 1, body},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// iotest.OneByteReader-like slow arrival: 7 bytes per Read.
			got, err := readBody(&chunkReader{r: bytes.NewReader(tc.body), n: 7000}, tc.contentLength)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.body) {
				t.Errorf("read %d bytes, want %d", len(got), len(tc.body))
			}
		})
	}
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

// TestInFlightCaps: past MaxInFlight every request gets 429 with
// Retry-After; past MaxLargeInFlight large and unknown-length bodies do,
// while ordinary ones still get in; slots come back when requests end.
func TestInFlightCaps(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	s, err := New(Config{Certificates: staticCert{}, Registry: reg, MaxInFlight: 3, MaxLargeInFlight: 1})
	if err != nil {
		t.Fatal(err)
	}
	valid := reviewBody(t, request(t, admissionv1.Create, deployment("web", trustAnn, podTemplate("app"))))
	send := func(body io.Reader, contentLength int64) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", Path, body)
		r.Header.Set("Content-Type", "application/json")
		r.ContentLength = contentLength
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		return w
	}
	// hold sends a request whose body does not come until the returned
	// function is called, and waits until it holds its slots.
	var waits []chan *httptest.ResponseRecorder
	hold := func(contentLength int64) (finish func()) {
		t.Helper()
		pr, pw := io.Pipe()
		done := make(chan *httptest.ResponseRecorder, 1)
		want := len(s.inFlight) + 1
		go func() { done <- send(pr, contentLength) }()
		waits = append(waits, done)
		deadline := time.Now().Add(10 * time.Second)
		for len(s.inFlight) < want {
			if time.Now().After(deadline) {
				t.Fatalf("held request did not take a slot (%d in flight)", len(s.inFlight))
			}
			time.Sleep(time.Millisecond)
		}
		return func() { pw.Close() }
	}
	busy := func(what string, w *httptest.ResponseRecorder) {
		t.Helper()
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" {
			t.Errorf("%s: status %d, Retry-After %q; want 429 with Retry-After 1", what, w.Code, w.Header().Get("Retry-After"))
		}
	}

	finishLarge := hold(DefaultMaxRequestBytes)
	busy("second large body", send(bytes.NewReader(valid), LargeRequestBytes+1))
	busy("body of unknown length", send(bytes.NewReader(valid), -1))
	finishSmall1 := hold(int64(len(valid)))
	finishSmall2 := hold(int64(len(valid)))
	busy("past MaxInFlight", send(bytes.NewReader(valid), int64(len(valid))))

	finishLarge()
	finishSmall1()
	finishSmall2()
	for _, done := range waits {
		if w := <-done; w.Code != http.StatusBadRequest {
			t.Errorf("held request: status %d, want 400 (its body ended early)", w.Code)
		}
	}
	if w := send(bytes.NewReader(valid), int64(len(valid))); w.Code != http.StatusOK {
		t.Errorf("after the held requests ended: status %d, want 200", w.Code)
	}
	if n := len(s.inFlight) + len(s.largeInFlight); n != 0 {
		t.Errorf("%d slots still taken after every request ended", n)
	}
	want := `
# HELP meshca_webhook_rejected_total Requests the webhook refused to protect itself, by reason: busy (429, an in-flight cap reached), too_large (413), slow (408, body not received in time).
# TYPE meshca_webhook_rejected_total counter
meshca_webhook_rejected_total{reason="busy"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "meshca_webhook_rejected_total"); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(s.metrics.requests.WithLabelValues("unknown", resultBusy)); got != 3 {
		t.Errorf("requests_total{result=busy} = %v, want 3", got)
	}
}

// TestSlowBody: over real TLS, a client that stops sending its body is
// answered 408 at ReadTimeout and gives its slot back.
func TestSlowBody(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t)
	src := newKeyPair()
	loadLeaf(t, src, pki.Leaf(t, testpki.LeafOptions{IPs: []net.IP{net.ParseIP("127.0.0.1")}}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	const readTimeout = 500 * time.Millisecond
	s, err := New(Config{Listener: ln, Certificates: src, Registry: reg, ReadTimeout: readTimeout})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, s)

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pki.RootPEM)
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"apiVersion\":", Path)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("status %d, want 408", resp.StatusCode)
	}
	// The server's read deadline starts before this side's clock (it is set
	// when the connection is accepted), so the time taken is only logged:
	// the 408 and the metric say the deadline, not the body, ended it.
	t.Logf("answered 408 after %v (ReadTimeout %v)", took, readTimeout)
	if got := testutil.ToFloat64(s.metrics.rejected.WithLabelValues(rejectSlow)); got != 1 {
		t.Errorf("rejected_total{reason=slow} = %v, want 1", got)
	}
	if n := len(s.inFlight); n != 0 {
		t.Errorf("%d slots still taken after the slow request was answered", n)
	}
}
