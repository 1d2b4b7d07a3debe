package ca_test

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/testpki"
)

func TestSecretDataRoundTrip(t *testing.T) {
	t.Parallel()
	cur, next := newCA(t), newCA(t)
	st := ca.NewState(cur, "generated", epoch)
	st.Next = next
	data, err := st.SecretData()
	if err != nil {
		t.Fatalf("SecretData: %v", err)
	}
	for _, k := range []string{"current.root.crt", "current.root.key", "current.intermediate.crt", "current.intermediate.key",
		"next.root.crt", "next.root.key", "next.intermediate.crt", "next.intermediate.key", "state.json", "ca.crt"} {
		if len(data[k]) == 0 {
			t.Errorf("key %s missing", k)
		}
	}
	if _, ok := data["previous.root.crt"]; ok {
		t.Errorf("empty previous slot written")
	}
	got, err := ca.StateFromSecretData(data)
	if err != nil {
		t.Fatalf("StateFromSecretData: %v", err)
	}
	if got.Current.Fingerprint() != cur.Fingerprint() || got.Next.Fingerprint() != next.Fingerprint() || got.Previous != nil {
		t.Errorf("slots did not round-trip")
	}
	if got.Record.Current.Source != "generated" || !got.Record.Current.CreatedAt.Equal(epoch) || got.Record.Next.Fingerprint != next.Fingerprint() {
		t.Errorf("record did not round-trip: %+v", got.Record)
	}
	if !bytes.Equal(got.Bundle(), append(ca.EncodeCertificatesPEM(cur.Root), ca.EncodeCertificatesPEM(next.Root)...)) {
		t.Errorf("bundle is not current root then next root")
	}
	if got.Current.RootKey == nil {
		t.Errorf("root key lost")
	}
}

func TestBundleDistinctRoots(t *testing.T) {
	t.Parallel()
	c := newCA(t)
	st := &ca.State{Current: c, Previous: c}
	if roots := st.Roots(); len(roots) != 1 {
		t.Fatalf("%d roots, want 1", len(roots))
	}
	certs, err := ca.ParseCertificatesPEM(st.Bundle())
	if err != nil || len(certs) != 1 || !certs[0].Equal(c.Root) {
		t.Fatalf("bundle = %v, %v", certs, err)
	}
}

func TestStateFromSecretDataRejects(t *testing.T) {
	t.Parallel()
	good, err := ca.NewState(newCA(t), "generated", epoch).SecretData()
	if err != nil {
		t.Fatal(err)
	}
	other := testpki.New(t)
	with := func(k string, v []byte) map[string][]byte {
		d := map[string][]byte{}
		for kk, vv := range good {
			d[kk] = vv
		}
		if v == nil {
			delete(d, k)
		} else {
			d[k] = v
		}
		return d
	}
	cases := map[string]struct {
		data map[string][]byte
		want string
	}{
		"empty secret":              {map[string][]byte{}, "no current CA"},
		"garbage certificate":       {with("current.root.crt", []byte("not pem")), "current.root.crt"},
		"truncated certificate":     {with("current.intermediate.crt", good["current.intermediate.crt"][:200]), "current.intermediate.crt"},
		"garbage key":               {with("current.intermediate.key", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")), "current.intermediate.key"},
		"intermediate key mismatch": {with("current.intermediate.key", other.IntermediateKeyPEM), "signing key does not match"},
		"root key mismatch":         {with("current.root.key", other.RootKeyPEM), "root key does not match"},
		"foreign root":              {with("current.root.crt", other.RootPEM), "no root certificate signs"},
		"missing key":               {with("current.intermediate.key", nil), "current.intermediate.key missing"},
		"bad state record":          {with("state.json", []byte("{")), "state.json"},
		"state record mismatch":     {with("state.json", []byte(`{"version":1,"current":{"fingerprint":"00"}}`)), "records current CA 00"},
		"record of missing slot":    {with("state.json", []byte(`{"version":1,"next":{"fingerprint":"00"}}`)), "next CA that the Secret does not hold"},
		"partial next slot":         {with("next.root.crt", other.RootPEM), "next CA"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := ca.StateFromSecretData(tc.data)
			if !errors.Is(err, ca.ErrInvalidCA) {
				t.Fatalf("err = %v, want ErrInvalidCA", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("error leaks key material: %q", err)
			}
		})
	}
}

// TestStateFromSecretDataNewerFormat: a state record of a newer format
// version (a downgrade) is refused as such, before the rest of the Secret is
// read, so a newer layout is not reported as a broken CA.
func TestStateFromSecretDataNewerFormat(t *testing.T) {
	t.Parallel()
	good, err := ca.NewState(newCA(t), "generated", epoch).SecretData()
	if err != nil {
		t.Fatal(err)
	}
	future := []byte(`{"version":9,"current":{"fingerprint":[1,2]}}`)
	cases := map[string]map[string][]byte{
		"same layout":   {"state.json": future, "current.root.crt": good["current.root.crt"], "current.intermediate.crt": good["current.intermediate.crt"], "current.intermediate.key": good["current.intermediate.key"]},
		"other layout":  {"state.json": future, "authority-1.root.crt": good["current.root.crt"]},
		"only a record": {"state.json": []byte(`{"version":2}`)},
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := ca.StateFromSecretData(data)
			if !errors.Is(err, ca.ErrNewerFormat) || errors.Is(err, ca.ErrInvalidCA) {
				t.Fatalf("err = %v, want ErrNewerFormat only", err)
			}
			if !strings.Contains(err.Error(), "format version") || !strings.Contains(err.Error(), "reads versions up to 1") {
				t.Errorf("error %q does not name both versions", err)
			}
		})
	}
	// The version this binary writes, and older ones, are read.
	for _, v := range []string{"0", "1"} {
		d := maps.Clone(good)
		d["state.json"] = []byte(`{"version":` + v + `}`)
		if _, err := ca.StateFromSecretData(d); err != nil {
			t.Errorf("version %s: %v", v, err)
		}
	}
}

func TestDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ca")
	c := newCA(t)
	if err := ca.WriteDir(dir, c); err != nil {
		t.Fatalf("WriteDir: %v", err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	for _, name := range []string{ca.FileRootCert, ca.FileRootKey, ca.FileIntermediateCert, ca.FileIntermediateKey} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, %v; want 0600", name, fi.Mode().Perm(), err)
		}
	}
	got, err := ca.LoadDir(dir)
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	if got.Fingerprint() != c.Fingerprint() || got.RootKey == nil {
		t.Errorf("CA did not round-trip")
	}
	before, _ := os.ReadFile(filepath.Join(dir, ca.FileIntermediateKey))
	if err := ca.WriteDir(dir, newCA(t)); !errors.Is(err, ca.ErrAlreadyExists) {
		t.Fatalf("second WriteDir: %v, want ErrAlreadyExists", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, ca.FileIntermediateKey))
	if !bytes.Equal(before, after) {
		t.Fatal("existing CA overwritten")
	}
}

func TestLoadDirErrors(t *testing.T) {
	t.Parallel()
	other := testpki.New(t)
	cases := map[string]struct {
		mutate  func(dir string)
		wantErr error
		want    string
	}{
		"empty folder":   {func(dir string) { os.RemoveAll(dir); os.Mkdir(dir, 0o700) }, ca.ErrNotFound, ""},
		"missing folder": {func(dir string) { os.RemoveAll(dir) }, ca.ErrNotFound, ""},
		"corrupt root":   {func(dir string) { os.WriteFile(filepath.Join(dir, "root.crt"), []byte("x"), 0o600) }, ca.ErrInvalidCA, "root.crt"},
		"key mismatch": {func(dir string) {
			os.WriteFile(filepath.Join(dir, "intermediate.key"), other.IntermediateKeyPEM, 0o600)
		}, ca.ErrInvalidCA, "signing key does not match"},
		"missing key file": {func(dir string) { os.Remove(filepath.Join(dir, "intermediate.key")) }, ca.ErrInvalidCA, "intermediate.key missing"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "ca")
			if err := ca.WriteDir(dir, newCA(t)); err != nil {
				t.Fatal(err)
			}
			tc.mutate(dir)
			_, err := ca.LoadDir(dir)
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tc.wantErr, tc.want)
			}
		})
	}
}

func TestBringYourOwn(t *testing.T) {
	t.Parallel()
	p := testpki.New(t)
	other := testpki.New(t)
	cat := func(b ...[]byte) []byte { return bytes.Join(b, nil) }
	cases := map[string]struct {
		load    func(map[string][]byte) (*ca.CA, error)
		data    map[string][]byte
		wantErr string
	}{
		"cert-manager": {load: ca.FromCertManagerSecret, data: map[string][]byte{
			"tls.crt": p.IntermediatePEM, "tls.key": p.IntermediateKeyPEM, "ca.crt": p.RootPEM}},
		"cert-manager with root in tls.crt": {load: ca.FromCertManagerSecret, data: map[string][]byte{
			"tls.crt": cat(p.IntermediatePEM, p.RootPEM), "tls.key": p.IntermediateKeyPEM, "ca.crt": p.RootPEM}},
		"cert-manager key mismatch": {load: ca.FromCertManagerSecret, data: map[string][]byte{
			"tls.crt": p.IntermediatePEM, "tls.key": other.IntermediateKeyPEM, "ca.crt": p.RootPEM}, wantErr: "tls.key does not match"},
		"cert-manager foreign root": {load: ca.FromCertManagerSecret, data: map[string][]byte{
			"tls.crt": p.IntermediatePEM, "tls.key": p.IntermediateKeyPEM, "ca.crt": other.RootPEM}, wantErr: "no root certificate signs"},
		"cert-manager missing ca.crt": {load: ca.FromCertManagerSecret, data: map[string][]byte{
			"tls.crt": p.IntermediatePEM, "tls.key": p.IntermediateKeyPEM}, wantErr: "ca.crt missing"},
		"istio": {load: ca.FromIstioSecret, data: map[string][]byte{
			"ca-cert.pem": p.IntermediatePEM, "ca-key.pem": p.IntermediateKeyPEM, "root-cert.pem": p.RootPEM,
			"cert-chain.pem": cat(p.IntermediatePEM, p.RootPEM)}},
		"istio without cert-chain": {load: ca.FromIstioSecret, data: map[string][]byte{
			"ca-cert.pem": p.IntermediatePEM, "ca-key.pem": p.IntermediateKeyPEM, "root-cert.pem": p.RootPEM}},
		"istio chain of another CA": {load: ca.FromIstioSecret, data: map[string][]byte{
			"ca-cert.pem": p.IntermediatePEM, "ca-key.pem": p.IntermediateKeyPEM, "root-cert.pem": p.RootPEM,
			"cert-chain.pem": cat(other.IntermediatePEM, other.RootPEM)}, wantErr: "does not match"},
		"istio garbage key": {load: ca.FromIstioSecret, data: map[string][]byte{
			"ca-cert.pem": p.IntermediatePEM, "ca-key.pem": []byte("nope"), "root-cert.pem": p.RootPEM}, wantErr: "ca-key.pem"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := tc.load(tc.data)
			if tc.wantErr != "" {
				if !errors.Is(err, ca.ErrInvalidCA) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want ErrInvalidCA saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if !c.Root.Equal(p.Root) || !c.Intermediate.Equal(p.Intermediate) || c.RootKey != nil || !c.CanSign() {
				t.Errorf("wrong CA: root %q intermediate %q rootKey %v", c.Root.Subject, c.Intermediate.Subject, c.RootKey != nil)
			}
			if len(c.Chain) != 1 {
				t.Errorf("chain has %d certificates, want the intermediate only", len(c.Chain))
			}
			// A bring-your-own CA without its root key persists and loads.
			data, err := ca.NewState(c, "cert-manager", epoch).SecretData()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := data["current.root.key"]; ok {
				t.Errorf("root key written for a CA that has none")
			}
			if _, err := ca.StateFromSecretData(data); err != nil {
				t.Errorf("reload: %v", err)
			}
		})
	}
}
