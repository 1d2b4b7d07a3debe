package issuer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
	"testing"
	"time"

	"github.com/meshca/meshca/ca"
)

// TestSubjectKeyIDIsRFC7093Method1 checks the per-algorithm shortcut
// against the definition: SHA-256 over the subjectPublicKey BIT STRING of
// the PKIX encoding, leftmost 160 bits.
func TestSubjectKeyIDIsRFC7093Method1(t *testing.T) {
	t.Parallel()
	for _, alg := range ca.KeyAlgorithms {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			key, err := ca.GenerateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			der, err := x509.MarshalPKIXPublicKey(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			var spki struct {
				Algorithm pkix.AlgorithmIdentifier
				PublicKey asn1.BitString
			}
			if _, err := asn1.Unmarshal(der, &spki); err != nil {
				t.Fatal(err)
			}
			want := sha256.Sum256(spki.PublicKey.Bytes)
			got, err := subjectKeyID(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want[:20]) {
				t.Fatalf("subjectKeyID = %x, want %x", got, want[:20])
			}
		})
	}
}

// TestCheckRefusesLeafOfAnotherCA proves the structural chain check: a
// leaf that another CA signed fails the gate of this one.
func TestCheckRefusesLeafOfAnotherCA(t *testing.T) {
	t.Parallel()
	states := make([]*ca.State, 2)
	for i := range states {
		c, err := ca.New(ca.Config{})
		if err != nil {
			t.Fatal(err)
		}
		states[i] = ca.NewState(c, "generated", c.Root.NotBefore)
	}
	l, err := NewLocal(LocalConfig{CA: states[0]})
	if err != nil {
		t.Fatal(err)
	}
	req := Request{Profile: ProfileWorkload, Namespace: "shop", SPIFFEID: "spiffe://cluster.local/ns/shop/sa/api", DNSNames: []string{"api.shop.svc"}}
	b, err := l.Issue(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewLocalSigner(states[1])
	if err != nil {
		t.Fatal(err)
	}
	req, _ = req.Normalize(DefaultDuration, ca.ECDSAP256)
	err = other.CheckChain(b.Leaf, Expected{Request: req, PublicKey: b.Leaf.PublicKey, Now: time.Now(),
		NotBefore: b.Leaf.NotBefore, NotAfter: b.Leaf.NotAfter})
	if err == nil || !strings.Contains(err.Error(), "issuer") && !strings.Contains(err.Error(), "key identifier") {
		t.Fatalf("check of a foreign leaf = %v, want an issuer mismatch", err)
	}
}
