package issuer_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/internal/testpki"
	"github.com/meshca/meshca/issuer"
)

var (
	zlintOnce sync.Once
	zlintPath string
	zlintErr  error
)

// zlint returns the zlint binary, built once into the tool cache by
// hack/go-tool.sh.
func zlint(t *testing.T) string {
	t.Helper()
	zlintOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(testenv.RepoRoot(), "hack", "go-tool.sh"), "zlint", "github.com/zmap/zlint/v3/cmd/zlint", "v3.7.3")
		var out []byte
		out, zlintErr = cmd.Output()
		zlintPath = strings.TrimSpace(string(out))
	})
	if zlintErr != nil {
		t.Fatalf("build zlint with hack/go-tool.sh: %v", zlintErr)
	}
	return zlintPath
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
