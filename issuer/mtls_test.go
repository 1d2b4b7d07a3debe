package issuer_test

import (
	"strings"
	"testing"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/testpki"
	"github.com/meshca/meshca/issuer"
)

// TestMutualTLSWithOpenSSL runs openssl s_server -Verify with a meshca
// serving certificate and connects with openssl s_client: a client with a
// meshca workload certificate gets through; one without a certificate or
// with a certificate of another CA does not.
func TestMutualTLSWithOpenSSL(t *testing.T) {
	t.Parallel()
	for _, alg := range []ca.KeyAlgorithm{ca.ECDSAP256, ca.RSA2048, ca.Ed25519} {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			st := newCA(t, alg)
			l := newLocal(t, st, issuer.Policy{AllowIPSANs: true, AllowedDNSSuffixes: []string{"localhost"}}, nil)
			srvReq := servingRequest()
			srvReq.KeyAlgorithm = alg
			srv := files(t, st, issue(t, l, srvReq))
			cliReq := workloadRequest("shop")
			cliReq.KeyAlgorithm = alg
			cli := files(t, st, issue(t, l, cliReq))

			other := newCA(t, alg)
			foreign := files(t, other, issue(t, newLocal(t, other, issuer.Policy{}, nil), workloadRequest("shop")))

			server := testpki.StartTLSServer(t, path(srv, "tls.crt"), path(srv, "tls.key"), path(srv, "ca.crt"))
			if err := server.Dial(t, path(cli, "ca.crt"), path(cli, "tls.crt"), path(cli, "tls.key"), "localhost"); err != nil {
				t.Fatalf("client with a meshca certificate: %v", err)
			}
			if err := server.Dial(t, path(cli, "ca.crt"), "", "", "localhost"); err == nil {
				t.Errorf("client without a certificate got through")
			} else if !strings.Contains(err.Error(), "certificate required") {
				t.Errorf("client without a certificate failed for another reason: %v", err)
			}
			if err := server.Dial(t, path(cli, "ca.crt"), path(foreign, "tls.crt"), path(foreign, "tls.key"), "localhost"); err == nil {
				t.Errorf("client with another CA's certificate got through")
			} else if !strings.Contains(err.Error(), "unknown ca") {
				t.Errorf("client with another CA's certificate failed for another reason: %v", err)
			}
			if err := server.Dial(t, path(foreign, "ca.crt"), path(cli, "tls.crt"), path(cli, "tls.key"), "localhost"); err == nil {
				t.Errorf("client trusting another CA accepted the server")
			} else if !strings.Contains(err.Error(), "certificate verify failed") {
				t.Errorf("client trusting another CA failed for another reason: %v", err)
			}
		})
	}
}
