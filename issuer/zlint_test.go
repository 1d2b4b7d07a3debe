package issuer_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/internal/testpki"
	"github.com/meshca/meshca/issuer"
)

// zlint returns the zlint binary, built once into the tool cache.
func zlint(t *testing.T) string {
	t.Helper()
	path, err := testenv.GoTool("zlint", "github.com/zmap/zlint/v3/cmd/zlint", "v3.7.3")
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// lint runs zlint with the RFC 5280 and RFC 5480 lints on one PEM
// certificate and fails the test on any warning, error or fatal result.
func lint(t *testing.T, name string, pemCert []byte) {
	t.Helper()
	file := testpki.WriteFile(t, t.TempDir(), name+".pem", pemCert)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, zlint(t), "-includeSources", "RFC5280,RFC5480", file).Output()
	if err != nil {
		t.Fatalf("zlint %s: %v", name, err)
	}
	var results map[string]struct {
		Result  string `json:"result"`
		Details string `json:"details"`
	}
	if err := json.Unmarshal(out, &results); err != nil {
		t.Fatalf("zlint %s output: %v\n%s", name, err, out)
	}
	if len(results) < 10 {
		t.Fatalf("zlint %s ran only %d lints", name, len(results))
	}
	for lintName, r := range results {
		switch r.Result {
		case "warn", "error", "fatal":
			t.Errorf("zlint %s: %s: %s %s", name, lintName, r.Result, r.Details)
		}
	}
}

// TestZlint lints the root, the intermediate and a leaf of every profile,
// for CAs and leaves of every key algorithm.
func TestZlint(t *testing.T) {
	t.Parallel()
	for _, alg := range ca.KeyAlgorithms {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			st := newCA(t, alg)
			lint(t, "root", ca.EncodeCertificatesPEM(st.Current.Root))
			lint(t, "intermediate", ca.EncodeCertificatesPEM(st.Current.Intermediate))
			l := newLocal(t, st, issuer.Policy{AllowIPSANs: true, AllowedDNSSuffixes: []string{"localhost", "example.com"}}, nil)
			reqs := []issuer.Request{
				workloadRequest("shop"),
				{Profile: issuer.ProfileGateway, Namespace: "edge", SPIFFEID: "spiffe://cluster.local/ns/edge/sa/ambassador", DNSNames: []string{"gw.example.com"}},
				servingRequest(),
				// A SPIFFE-only workload certificate has an empty subject.
				{Profile: issuer.ProfileWorkload, Namespace: "shop", SPIFFEID: "spiffe://cluster.local/ns/shop/sa/api"},
			}
			for i, req := range reqs {
				req.KeyAlgorithm = alg
				b := issue(t, l, req)
				lint(t, string(req.Profile)+"-"+string(rune('0'+i)), testpki.CertPEM(b.Leaf))
			}
		})
	}
}
