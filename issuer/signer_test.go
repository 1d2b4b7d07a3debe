package issuer_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/issuer"
)

// memSigner is a whole new backend: nothing but an issuer.Signer (and the
// roots its chain leads to), signing with an in-memory CA. It can be told
// to misbehave, to show that the pipeline, not the backend, guards what
// leaves the issuer.
type memSigner struct {
	ca *ca.CA
	// mutate changes the template before it is signed: a wrong leaf.
	mutate func(*x509.Certificate)
	// by signs instead of ca.Intermediate (the chain returned stays ca's).
	by *ca.CA
	// ownKey signs a key of the signer's own instead of the request's.
	ownKey bool

	calls atomic.Int32
	mu    sync.Mutex
	seen  []issuer.SignRequest
}

func (m *memSigner) Sign(_ context.Context, req issuer.SignRequest) (*issuer.SignResponse, error) {
	m.calls.Add(1)
	m.mu.Lock()
	m.seen = append(m.seen, req)
	m.mu.Unlock()
	tmpl := *req.Template
	if m.mutate != nil {
		m.mutate(&tmpl)
	}
	pub := req.PublicKey
	if m.ownKey {
		k, err := ca.GenerateKey(ca.ECDSAP256)
		if err != nil {
			return nil, err
		}
		pub = k.Public()
	}
	by := m.ca
	if m.by != nil {
		by = m.by
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, by.Intermediate, pub, by.IntermediateKey)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &issuer.SignResponse{Leaf: leaf, Chain: m.ca.Chain}, nil
}

func (m *memSigner) Roots() []*x509.Certificate { return []*x509.Certificate{m.ca.Root} }

// bounded adds a window to a memSigner.
type bounded struct {
	*memSigner
	notBefore, notAfter time.Time
}

func (b bounded) Window() (time.Time, time.Time) { return b.notBefore, b.notAfter }

// wantsCSR is a memSigner that asks for proof of possession.
type wantsCSR struct{ *memSigner }

func (wantsCSR) NeedsCSR() bool { return true }

// bare signs but names no roots and checks no chain.
type bare struct{ m *memSigner }

func (b bare) Sign(ctx context.Context, req issuer.SignRequest) (*issuer.SignResponse, error) {
	return b.m.Sign(ctx, req)
}

func newMemCA(t *testing.T, cfg ca.Config) *ca.CA {
	t.Helper()
	c, err := ca.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestNewBackendIsOnlyASigner runs a backend written as nothing but a
// Signer through the one pipeline: the policy refuses before it is asked,
// the validity is clamped to its window, every leaf it returns is checked,
// and only a signer that asks for a CSR gets one.
func TestNewBackendIsOnlyASigner(t *testing.T) {
	t.Parallel()
	now := time.Now().Truncate(time.Second)
	clk := clocktesting.NewFakePassiveClock(now)
	memCA := newMemCA(t, ca.Config{})
	otherCA := newMemCA(t, ca.Config{})
	cases := map[string]struct {
		signer       func(m *memSigner) issuer.Signer
		mutate       func(*x509.Certificate)
		by           *ca.CA
		ownKey       bool
		req          issuer.Request
		wantErr      error
		wantIn       string // text the error must carry
		wantCalls    int32
		wantNotAfter time.Time
		wantCSR      bool
	}{
		"signs": {
			req: workloadRequest("shop"), wantCalls: 1, wantNotAfter: now.Add(issuer.DefaultDuration),
		},
		"policy refuses before signing": {
			req: func() issuer.Request {
				r := workloadRequest("shop")
				r.SPIFFEID = "spiffe://cluster.local/ns/bank/sa/api"
				return r
			}(),
			wantErr: issuer.ErrPolicy, wantCalls: 0,
		},
		"namespace suffix in the request": {
			req: func() issuer.Request {
				r := workloadRequest("shop")
				r.DNSNames = append(r.DNSNames, "www.shop.example")
				r.NamespaceSuffixes = []string{"shop.example"}
				return r
			}(),
			wantCalls: 1, wantNotAfter: now.Add(issuer.DefaultDuration),
		},
		"clamped to the window": {
			signer: func(m *memSigner) issuer.Signer {
				return bounded{m, now.Add(-time.Hour), now.Add(time.Hour)}
			},
			req: workloadRequest("shop"), wantCalls: 1, wantNotAfter: now.Add(time.Hour),
		},
		"window not yet open": {
			signer: func(m *memSigner) issuer.Signer {
				return bounded{m, now.Add(time.Hour), now.Add(48 * time.Hour)}
			},
			req: workloadRequest("shop"), wantErr: issuer.ErrCAExpired, wantCalls: 0,
		},
		"window closed": {
			signer: func(m *memSigner) issuer.Signer {
				return bounded{m, now.Add(-48 * time.Hour), now.Add(-time.Hour)}
			},
			req: workloadRequest("shop"), wantErr: issuer.ErrCAExpired, wantCalls: 0,
		},
		"a name the request did not ask for": {
			mutate:  func(c *x509.Certificate) { c.DNSNames = append(slices.Clone(c.DNSNames), "evil.example.com") },
			req:     workloadRequest("shop"),
			wantErr: issuer.ErrCheckFailed, wantIn: "DNS names", wantCalls: 1,
		},
		"other usages": {
			mutate:  func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} },
			req:     workloadRequest("shop"),
			wantErr: issuer.ErrCheckFailed, wantIn: "extended key usages", wantCalls: 1,
		},
		"another validity": {
			mutate:  func(c *x509.Certificate) { c.NotAfter = c.NotAfter.Add(time.Hour) },
			req:     workloadRequest("shop"),
			wantErr: issuer.ErrCheckFailed, wantIn: "validity", wantCalls: 1,
		},
		"a CA certificate": {
			mutate:  func(c *x509.Certificate) { c.IsCA = true },
			req:     workloadRequest("shop"),
			wantErr: issuer.ErrCheckFailed, wantIn: "basic constraints", wantCalls: 1,
		},
		"another key": {
			ownKey: true, req: workloadRequest("shop"),
			wantErr: issuer.ErrCheckFailed, wantIn: "public key", wantCalls: 1,
		},
		"signed by a CA outside the roots": {
			by: otherCA, req: workloadRequest("shop"),
			wantErr: issuer.ErrCheckFailed, wantIn: "does not chain", wantCalls: 1,
		},
		"proof of possession only when asked for": {
			signer:  func(m *memSigner) issuer.Signer { return wantsCSR{m} },
			req:     workloadRequest("shop"),
			wantCSR: true, wantCalls: 1, wantNotAfter: now.Add(issuer.DefaultDuration),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m := &memSigner{ca: memCA, mutate: tc.mutate, by: tc.by, ownKey: tc.ownKey}
			var s issuer.Signer = m
			if tc.signer != nil {
				s = tc.signer(m)
			}
			iss, err := issuer.New(issuer.Config{Signer: s, Clock: clk})
			if err != nil {
				t.Fatal(err)
			}
			b, err := iss.Issue(context.Background(), tc.req)
			if got := m.calls.Load(); got != tc.wantCalls {
				t.Errorf("the signer was asked %d times, want %d", got, tc.wantCalls)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(fmt.Sprint(err), tc.wantIn) || b != nil {
					t.Fatalf("Issue = %v, %v; want %v saying %q", b, err, tc.wantErr, tc.wantIn)
				}
				return
			}
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			if !b.Leaf.NotAfter.Equal(tc.wantNotAfter) || !b.Leaf.NotBefore.Equal(now.Add(-issuer.DefaultBackdate)) {
				t.Errorf("validity %s to %s, want %s to %s", b.Leaf.NotBefore, b.Leaf.NotAfter, now.Add(-issuer.DefaultBackdate), tc.wantNotAfter)
			}
			if want := ca.EncodeCertificatesPEM(b.Leaf, memCA.Intermediate); !bytes.Equal(b.CertificatePEM, want) {
				t.Error("tls.crt is not the leaf and the signer's chain")
			}
			if !bytes.Equal(b.CAPEM, ca.EncodeCertificatesPEM(memCA.Root)) {
				t.Error("ca.crt is not the signer's roots")
			}
			if b.IssuerFingerprint != ca.Fingerprint(memCA.Intermediate) {
				t.Error("the issuer fingerprint is not the intermediate's")
			}
			key, err := ca.ParsePrivateKeyPEM(b.PrivateKeyPEM)
			if err != nil || !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(b.Leaf.PublicKey) {
				t.Errorf("tls.key does not match the leaf: %v", err)
			}
			csr := m.seen[0].CSR
			if (csr != nil) != tc.wantCSR {
				t.Fatalf("the signer got a CSR: %v, want %v", csr != nil, tc.wantCSR)
			}
			if csr != nil {
				if err := csr.CheckSignature(); err != nil || !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(csr.PublicKey) {
					t.Errorf("the CSR is not signed by the new key: %v", err)
				}
				if !slices.Equal(csr.DNSNames, b.Leaf.DNSNames) || len(csr.URIs) != 1 || csr.URIs[0].String() != tc.req.SPIFFEID {
					t.Errorf("the CSR names %v %v, want the leaf's", csr.DNSNames, csr.URIs)
				}
			}
		})
	}
}

// TestChainShorterThanAsked: a signer that cannot know its chain's end
// before it answers (a remote CA) costs one refused certificate, and later
// ones are clamped to the chain it answered with.
func TestChainShorterThanAsked(t *testing.T) {
	t.Parallel()
	short := newMemCA(t, ca.Config{IntermediateLifetime: 2 * time.Hour})
	iss, err := issuer.New(issuer.Config{Signer: &memSigner{ca: short}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iss.Issue(context.Background(), workloadRequest("shop")); !errors.Is(err, issuer.ErrCheckFailed) {
		t.Fatalf("first Issue = %v, want ErrCheckFailed (the leaf would outlive its chain)", err)
	}
	b, err := iss.Issue(context.Background(), workloadRequest("shop"))
	if err != nil {
		t.Fatalf("second Issue: %v", err)
	}
	if !b.Leaf.NotAfter.Equal(short.Intermediate.NotAfter) {
		t.Errorf("NotAfter %s, want the intermediate's %s", b.Leaf.NotAfter, short.Intermediate.NotAfter)
	}
}

// TestSignerNeedsSomethingToCheckAgainst: a signer with neither roots nor
// its own chain check is refused, and without a signer Issue says ErrNoCA.
func TestSignerNeedsSomethingToCheckAgainst(t *testing.T) {
	t.Parallel()
	if _, err := issuer.New(issuer.Config{Signer: bare{&memSigner{ca: newMemCA(t, ca.Config{})}}}); err == nil {
		t.Error("New accepted a signer whose certificates cannot be checked")
	}
	iss, err := issuer.New(issuer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iss.Issue(context.Background(), workloadRequest("shop")); !errors.Is(err, issuer.ErrNoCA) {
		t.Errorf("Issue without a signer = %v, want ErrNoCA", err)
	}
}

// TestSetCAIsAtomic swaps the local CA while certificates are issued: each
// bundle comes whole from one CA (leaf, chain, fingerprint and trust
// bundle agree).
func TestSetCAIsAtomic(t *testing.T) {
	t.Parallel()
	states := []*ca.State{newCA(t, ca.ECDSAP256), newCA(t, ca.ECDSAP256)}
	l := newLocal(t, states[0], issuer.Policy{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			if err := l.SetCA(states[i%2]); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 50 {
		b := issue(t, l, workloadRequest("shop"))
		var st *ca.State
		for _, s := range states {
			if b.IssuerFingerprint == s.Current.Fingerprint() {
				st = s
			}
		}
		if st == nil {
			t.Fatal("signed by neither CA")
		}
		if !bytes.Equal(b.CAPEM, st.Bundle()) || !bytes.Equal(b.CertificatePEM, ca.EncodeCertificatesPEM(b.Leaf, st.Current.Intermediate)) {
			t.Fatal("a bundle mixes two CAs")
		}
		if err := b.Leaf.CheckSignatureFrom(st.Current.Intermediate); err != nil {
			t.Fatalf("the leaf is not signed by the CA it names: %v", err)
		}
	}
	cancel()
	wg.Wait()
}

// refusesProfile is a memSigner that knows up front it cannot issue one
// profile.
type refusesProfile struct {
	*memSigner
	no issuer.Profile
}

func (r refusesProfile) CanIssue(p issuer.Profile) error {
	if p == r.no {
		return fmt.Errorf("profile %s is not allowed by this chain", p)
	}
	return nil
}

// TestProfileRefusedBeforeSigning: a ProfileChecker's refusal comes before
// the key is generated and the signer is asked; other profiles still sign.
func TestProfileRefusedBeforeSigning(t *testing.T) {
	m := &memSigner{ca: newMemCA(t, ca.Config{})}
	iss, err := issuer.New(issuer.Config{Signer: refusesProfile{memSigner: m, no: issuer.ProfileGateway}})
	gateway := workloadRequest("shop")
	gateway.Profile = issuer.ProfileGateway
	if err != nil {
		t.Fatal(err)
	}
	_, err = iss.Issue(context.Background(), gateway)
	if err == nil || !strings.Contains(err.Error(), "not allowed by this chain") {
		t.Fatalf("Issue of a refused profile: %v", err)
	}
	if n := m.calls.Load(); n != 0 {
		t.Errorf("the signer was asked %d times for a profile it refuses up front", n)
	}
	if _, err := iss.Issue(context.Background(), workloadRequest("shop")); err != nil {
		t.Fatal(err)
	}
	if n := m.calls.Load(); n != 1 {
		t.Errorf("signer asked %d times, want 1", n)
	}
}
