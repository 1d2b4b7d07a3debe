package ca_test

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca"
)

var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func TestNewEveryKeyAlgorithm(t *testing.T) {
	t.Parallel()
	for _, alg := range ca.KeyAlgorithms {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			c, err := ca.New(ca.Config{KeyAlgorithm: alg, Clock: clocktesting.NewFakePassiveClock(epoch)})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			for name, cert := range map[string]*x509.Certificate{"root": c.Root, "intermediate": c.Intermediate} {
				got, err := ca.KeyAlgorithmOf(cert.PublicKey)
				if err != nil || got != alg {
					t.Errorf("%s key algorithm = %q, %v; want %q", name, got, err, alg)
				}
				if !cert.IsCA || cert.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
					t.Errorf("%s: IsCA=%v KeyUsage=%v", name, cert.IsCA, cert.KeyUsage)
				}
				if !cert.NotBefore.Equal(epoch.Add(-time.Hour)) {
					t.Errorf("%s NotBefore = %v", name, cert.NotBefore)
				}
			}
			if want := epoch.Add(ca.DefaultRootLifetime); !c.Root.NotAfter.Equal(want) {
				t.Errorf("root NotAfter = %v, want %v", c.Root.NotAfter, want)
			}
			if want := epoch.Add(ca.DefaultIntermediateLifetime); !c.Intermediate.NotAfter.Equal(want) {
				t.Errorf("intermediate NotAfter = %v, want %v", c.Intermediate.NotAfter, want)
			}
			if !c.Intermediate.MaxPathLenZero || c.Intermediate.MaxPathLen != 0 {
				t.Errorf("intermediate path length not constrained to 0")
			}
			if c.Root.Subject.CommonName != "meshca root CA" || c.Intermediate.Subject.CommonName != "meshca intermediate CA" {
				t.Errorf("subjects %q, %q", c.Root.Subject, c.Intermediate.Subject)
			}
			if got := c.Intermediate.Subject.OrganizationalUnit; len(got) != 1 || got[0] != ca.DefaultTrustDomain {
				t.Errorf("intermediate OU = %v, want the trust domain", got)
			}
			if len(c.Chain) != 1 || c.Chain[0] != c.Intermediate {
				t.Errorf("chain = %v, want [intermediate]", c.Chain)
			}
			if len(c.Intermediate.PermittedDNSDomains) != 0 {
				t.Errorf("name constraints without PermittedDNSDomains")
			}
			if len(c.Fingerprint()) != 64 {
				t.Errorf("fingerprint %q is not SHA-256 hex", c.Fingerprint())
			}
		})
	}
}

func TestNewConfig(t *testing.T) {
	t.Parallel()
	clk := clocktesting.NewFakePassiveClock(epoch)
	cases := map[string]struct {
		cfg   ca.Config
		check func(t *testing.T, c *ca.CA)
	}{
		"lifetimes": {
			cfg: ca.Config{RootLifetime: 48 * time.Hour, IntermediateLifetime: 24 * time.Hour},
			check: func(t *testing.T, c *ca.CA) {
				if !c.Root.NotAfter.Equal(epoch.Add(48*time.Hour)) || !c.Intermediate.NotAfter.Equal(epoch.Add(24*time.Hour)) {
					t.Errorf("NotAfter root %v intermediate %v", c.Root.NotAfter, c.Intermediate.NotAfter)
				}
			},
		},
		"intermediate capped at root": {
			cfg: ca.Config{RootLifetime: 24 * time.Hour, IntermediateLifetime: 48 * time.Hour},
			check: func(t *testing.T, c *ca.CA) {
				if !c.Intermediate.NotAfter.Equal(c.Root.NotAfter) {
					t.Errorf("intermediate NotAfter %v past root %v", c.Intermediate.NotAfter, c.Root.NotAfter)
				}
			},
		},
		"subject and trust domain": {
			cfg: ca.Config{TrustDomain: "example.org", Subject: x509Name("Acme", "Acme Inc")},
			check: func(t *testing.T, c *ca.CA) {
				s := c.Intermediate.Subject
				if s.CommonName != "Acme intermediate CA" || s.Organization[0] != "Acme Inc" || s.OrganizationalUnit[0] != "example.org" {
					t.Errorf("intermediate subject %q", s)
				}
			},
		},
		"name constraints": {
			cfg: ca.Config{TrustDomain: "example.org", PermittedDNSDomains: []string{"svc.cluster.local", "example.com"}},
			check: func(t *testing.T, c *ca.CA) {
				i := c.Intermediate
				if !i.PermittedDNSDomainsCritical || strings.Join(i.PermittedDNSDomains, ",") != "svc.cluster.local,example.com" ||
					strings.Join(i.PermittedURIDomains, ",") != "example.org" {
					t.Errorf("constraints critical=%v dns=%v uri=%v", i.PermittedDNSDomainsCritical, i.PermittedDNSDomains, i.PermittedURIDomains)
				}
				if len(c.Root.PermittedDNSDomains) != 0 {
					t.Errorf("root carries name constraints")
				}
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tc.cfg.Clock = clk
			c, err := ca.New(tc.cfg)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			tc.check(t, c)
		})
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	cases := map[string]ca.Config{
		"unknown algorithm": {KeyAlgorithm: "dsa-1024"},
		"negative lifetime": {RootLifetime: -time.Hour},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := ca.New(cfg); err == nil {
				t.Fatal("New succeeded")
			}
		})
	}
}

func TestParseKeyAlgorithm(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		in      string
		want    ca.KeyAlgorithm
		wantErr bool
	}{
		"empty is default": {in: "", want: ca.ECDSAP256},
		"p384":             {in: "ecdsa-p384", want: ca.ECDSAP384},
		"upper case":       {in: "RSA-2048", want: ca.RSA2048},
		"ed25519":          {in: "ed25519", want: ca.Ed25519},
		"unknown":          {in: "rsa-1024", wantErr: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := ca.ParseKeyAlgorithm(tc.in)
			if tc.wantErr {
				if !errors.Is(err, ca.ErrUnknownKeyAlgorithm) {
					t.Fatalf("err = %v, want ErrUnknownKeyAlgorithm", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
