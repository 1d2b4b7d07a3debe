package stepca_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/stepcatest"
	"github.com/meshca/meshca/internal/testpki"
	"github.com/meshca/meshca/issuer"
	"github.com/meshca/meshca/issuer/stepca"
)

const td = "cluster.local"

func workloadRequest(ns string) issuer.Request {
	return issuer.Request{
		Profile:   issuer.ProfileWorkload,
		Namespace: ns,
		SPIFFEID:  "spiffe://" + td + "/ns/" + ns + "/sa/api",
		DNSNames:  []string{"api." + ns + ".svc", "api." + ns + ".svc.cluster.local"},
	}
}

func newStepCA(t *testing.T, cfg stepca.Config) *issuer.Issuer {
	t.Helper()
	s, err := stepca.New(cfg)
	if err != nil {
		t.Fatalf("stepca.New: %v", err)
	}
	return s
}

// TestStepCA runs every test against one real step-ca: starting it is the
// slow part, the subtests run in parallel.
func TestStepCA(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a step-ca built from source")
	}
	srv := stepcatest.Start(t)
	config := func(name string) stepca.Config {
		return stepca.Config{
			URL:                 srv.URL,
			Root:                srv.PKI.RootPEM,
			Provisioner:         name,
			ProvisionerPassword: []byte(stepcatest.Password),
		}
	}

	t.Run("issue", func(t *testing.T) {
		t.Parallel()
		// The provisioner key is fetched from step-ca in one case and
		// configured (encrypted) in the others.
		fetched := newStepCA(t, config(stepcatest.Provisioner))
		withKey := config(stepcatest.Provisioner)
		withKey.ProvisionerKey = srv.Keys[stepcatest.Provisioner]
		withKey.Policy = issuer.Policy{AllowIPSANs: true, AllowedDNSSuffixes: []string{"example.com"}}
		configured := newStepCA(t, withKey)
		tests := map[string]struct {
			iss     *issuer.Issuer
			req     issuer.Request
			purpose string
		}{
			"workload, key fetched from step-ca": {iss: fetched, req: workloadRequest("shop"), purpose: "sslclient"},
			"workload rsa-2048": {iss: configured, purpose: "sslserver", req: func() issuer.Request {
				r := workloadRequest("shop")
				r.KeyAlgorithm = ca.RSA2048
				return r
			}()},
			"gateway": {iss: configured, purpose: "sslclient", req: issuer.Request{
				Profile: issuer.ProfileGateway, Namespace: "edge",
				SPIFFEID: "spiffe://" + td + "/ns/edge/sa/ambassador",
				DNSNames: []string{"gw.example.com"}, Duration: time.Hour,
			}},
			"serving with an IP, ed25519": {iss: configured, purpose: "sslserver", req: issuer.Request{
				Profile: issuer.ProfileServing, Namespace: "meshca-system",
				DNSNames:     []string{"meshca.meshca-system.svc"},
				IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
				KeyAlgorithm: ca.Ed25519,
			}},
			"serving, no DNS name": {iss: configured, purpose: "sslserver", req: issuer.Request{
				Profile: issuer.ProfileServing, Namespace: "meshca-system",
				IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
			}},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				start := time.Now()
				b, err := tc.iss.Issue(context.Background(), tc.req)
				if err != nil {
					t.Fatalf("Issue: %v", err)
				}
				leaf := b.Leaf
				if !slices.Equal(leaf.ExtKeyUsage, tc.req.Profile.ExtKeyUsages()) || leaf.KeyUsage != x509.KeyUsageDigitalSignature {
					t.Errorf("usages %v/%v, want %v/digitalSignature", leaf.ExtKeyUsage, leaf.KeyUsage, tc.req.Profile.ExtKeyUsages())
				}
				wantCN := ""
				if len(tc.req.DNSNames) > 0 {
					wantCN = tc.req.DNSNames[0]
				}
				if leaf.Subject.CommonName != wantCN {
					t.Errorf("CommonName %q, want %q", leaf.Subject.CommonName, wantCN)
				}
				d := tc.req.Duration
				if d == 0 {
					d = issuer.DefaultDuration
				}
				// NotAfter is capped by the test PKI's 24h intermediate.
				if got := leaf.NotAfter.Sub(start); got > d+time.Second || got < min(d, time.Until(srv.PKI.Intermediate.NotAfter))-time.Minute {
					t.Errorf("NotAfter %s is %s after the request, want about %s", leaf.NotAfter, got, d)
				}
				if want := time.Now().Add(-issuer.DefaultBackdate); leaf.NotBefore.After(want) || leaf.NotBefore.Before(want.Add(-time.Minute)) {
					t.Errorf("NotBefore %s, want about %s", leaf.NotBefore, want)
				}
				if string(b.CAPEM) != string(srv.PKI.RootPEM) {
					t.Errorf("CAPEM is not step-ca's root")
				}
				if b.IssuerFingerprint != ca.Fingerprint(srv.PKI.Intermediate) {
					t.Errorf("IssuerFingerprint %s, want the intermediate's %s", b.IssuerFingerprint, ca.Fingerprint(srv.PKI.Intermediate))
				}
				key, err := ca.ParsePrivateKeyPEM(b.PrivateKeyPEM)
				if err != nil {
					t.Fatalf("PrivateKeyPEM: %v", err)
				}
				if k, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(leaf.PublicKey) {
					t.Errorf("PrivateKeyPEM does not match the leaf")
				}
				if !strings.HasPrefix(string(b.PrivateKeyPEM), "-----BEGIN PRIVATE KEY-----") {
					t.Errorf("PrivateKeyPEM is not PKCS#8")
				}
				chain, err := ca.ParseCertificatesPEM(b.CertificatePEM)
				if err != nil || len(chain) != 2 || !chain[0].Equal(leaf) || !chain[1].Equal(srv.PKI.Intermediate) {
					t.Fatalf("CertificatePEM is not leaf + intermediate (%d certificates, %v)", len(chain), err)
				}
				dir := t.TempDir()
				caFile := testpki.WriteFile(t, dir, "ca.crt", b.CAPEM)
				chainFile := testpki.WriteFile(t, dir, "tls.crt", b.CertificatePEM)
				leafFile := testpki.WriteFile(t, dir, "leaf.crt", testpki.CertPEM(leaf))
				testpki.Verify(t, caFile, chainFile, leafFile, "-purpose", tc.purpose)
			})
		}
	})

	t.Run("policy refuses before step-ca is asked", func(t *testing.T) {
		t.Parallel()
		proxy := startCountingProxy(t, strings.TrimPrefix(srv.URL, "https://"))
		cfg := config(stepcatest.Provisioner)
		cfg.URL = proxy.URL
		foreign := workloadRequest("shop")
		foreign.SPIFFEID = "spiffe://" + td + "/ns/payments/sa/api"

		// step-ca itself would sign it: the operator's policy lets it through.
		unrestricted := cfg
		unrestricted.Policy = issuer.OperatorPolicy()
		b, err := newStepCA(t, unrestricted).Issue(context.Background(), foreign)
		if err != nil {
			t.Fatalf("step-ca did not sign the foreign SPIFFE ID under the operator's policy: %v", err)
		}
		if b.Leaf.URIs[0].String() != foreign.SPIFFEID {
			t.Fatalf("URI SAN %v, want %s", b.Leaf.URIs, foreign.SPIFFEID)
		}
		reached := proxy.connections.Load()
		if reached == 0 {
			t.Fatal("the proxy counted no connection for a signed certificate")
		}

		strict := newStepCA(t, cfg) // the namespace policy
		refused := map[string]struct {
			req  issuer.Request
			rule issuer.Rule
		}{
			"foreign namespace SPIFFE ID": {req: foreign, rule: issuer.RuleSPIFFENamespace},
			"foreign DNS name": {req: func() issuer.Request {
				r := workloadRequest("shop")
				r.DNSNames = append(r.DNSNames, "api.payments.svc")
				return r
			}(), rule: issuer.RuleDNSSuffix},
			"IP SAN": {req: func() issuer.Request {
				r := workloadRequest("shop")
				r.IPAddresses = []net.IP{net.ParseIP("10.0.0.1")}
				return r
			}(), rule: issuer.RuleIPSAN},
		}
		for name, tc := range refused {
			_, err := strict.Issue(context.Background(), tc.req)
			var pe *issuer.PolicyError
			if !errors.Is(err, issuer.ErrPolicy) || !errors.As(err, &pe) || pe.Rule != tc.rule {
				t.Errorf("%s: Issue error %v, want a policy refusal by rule %s", name, err, tc.rule)
			}
		}
		if got := proxy.connections.Load(); got != reached {
			t.Errorf("refused requests reached step-ca: %d connections after the refusals, %d before", got, reached)
		}
	})

	t.Run("wrong provisioner password", func(t *testing.T) {
		t.Parallel()
		cfg := config(stepcatest.Provisioner)
		cfg.ProvisionerPassword = []byte(wrongPassword)
		// Fetched from step-ca: New cannot know, the first Issue fails.
		_, err := newStepCA(t, cfg).Issue(context.Background(), workloadRequest("shop"))
		if !errors.Is(err, stepca.ErrProvisionerKey) || !strings.Contains(err.Error(), "password does not decrypt") {
			t.Errorf("Issue with a wrong password: %v, want ErrProvisionerKey saying the password does not decrypt the key", err)
		}
		// Configured: New fails at once.
		cfg.ProvisionerKey = srv.Keys[stepcatest.Provisioner]
		if _, err := stepca.New(cfg); !errors.Is(err, stepca.ErrProvisionerKey) || !strings.Contains(err.Error(), "password does not decrypt") {
			t.Errorf("New with a wrong password: %v, want ErrProvisionerKey", err)
		}
		cfg.ProvisionerPassword = nil
		if _, err := stepca.New(cfg); !errors.Is(err, stepca.ErrProvisionerKey) {
			t.Errorf("New with an encrypted key and no password: %v, want ErrProvisionerKey", err)
		}
	})

	t.Run("unknown provisioner", func(t *testing.T) {
		t.Parallel()
		_, err := newStepCA(t, config("nobody")).Issue(context.Background(), workloadRequest("shop"))
		if !errors.Is(err, stepca.ErrProvisionerKey) || !strings.Contains(err.Error(), `no JWK provisioner "nobody"`) {
			t.Errorf("Issue: %v, want ErrProvisionerKey naming the provisioner", err)
		}
	})

	t.Run("step-ca's default template fails the post-sign check", func(t *testing.T) {
		t.Parallel()
		// Without stepca.X509Template a serving certificate gets clientAuth
		// too: the check refuses to hand it out.
		_, err := newStepCA(t, config(stepcatest.PlainProvisioner)).Issue(context.Background(), issuer.Request{
			Profile: issuer.ProfileServing, Namespace: "shop", DNSNames: []string{"api.shop.svc"},
		})
		if !errors.Is(err, issuer.ErrCheckFailed) || !strings.Contains(err.Error(), "extended key usages") {
			t.Errorf("Issue: %v, want ErrCheckFailed on extended key usages", err)
		}
	})

	t.Run("step-ca refuses a lifetime under its minimum", func(t *testing.T) {
		t.Parallel()
		// The provisioner's minTLSCertDuration is 5m; 3m plus the
		// minute of backdate is less.
		req := workloadRequest("shop")
		req.Duration = 3 * time.Minute
		_, err := newStepCA(t, config(stepcatest.Provisioner)).Issue(context.Background(), req)
		if !errors.Is(err, stepca.ErrSign) || !strings.Contains(err.Error(), "minimum") {
			t.Errorf("Issue: %v, want ErrSign about the minimum duration", err)
		}
	})

	t.Run("no step-ca", func(t *testing.T) {
		t.Parallel()
		cfg := config(stepcatest.Provisioner)
		cfg.URL = "https://localhost:1" // nothing listens on port 1
		cfg.ProvisionerKey = srv.Keys[stepcatest.Provisioner]
		cfg.Timeout = 5 * time.Second
		_, err := newStepCA(t, cfg).Issue(context.Background(), workloadRequest("shop"))
		if !errors.Is(err, stepca.ErrSign) {
			t.Errorf("Issue against no step-ca: %v, want ErrSign", err)
		}
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t)
	good := stepca.Config{URL: "https://127.0.0.1:9000", Root: pki.RootPEM, Provisioner: "meshca"}
	tests := map[string]func(*stepca.Config){
		"no provisioner":    func(c *stepca.Config) { c.Provisioner = "" },
		"http URL":          func(c *stepca.Config) { c.URL = "http://127.0.0.1:9000" },
		"no root":           func(c *stepca.Config) { c.Root = nil },
		"bad key algorithm": func(c *stepca.Config) { c.DefaultKeyAlgorithm = "dsa" },
		"negative duration": func(c *stepca.Config) { c.DefaultDuration = -time.Hour },
		"public key for JWK": func(c *stepca.Config) {
			c.ProvisionerKey = []byte(`{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"k","alg":"ES256"}`)
		},
	}
	if _, err := stepca.New(good); err != nil {
		t.Fatalf("New(good): %v", err)
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := good
			mutate(&cfg)
			if _, err := stepca.New(cfg); err == nil {
				t.Error("New accepted it")
			}
		})
	}
}
