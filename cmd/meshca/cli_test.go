package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/testpki"
)

// run executes the CLI in-process with args and returns its output.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "meshca", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newCACommand(), newIssueCommand())
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestCAInitShowAndIssue(t *testing.T) {
	t.Parallel()
	for _, alg := range []ca.KeyAlgorithm{ca.ECDSAP256, ca.ECDSAP384, ca.RSA2048, ca.Ed25519} {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "ca")
			if out, err := run(t, "ca", "init", "--dir", dir, "--key-algorithm", string(alg), "--trust-domain", "example.org"); err != nil {
				t.Fatalf("ca init: %v\n%s", err, out)
			}
			if m := mode(t, dir); m != 0o700 {
				t.Errorf("CA folder mode %v, want 0700", m)
			}
			for _, name := range []string{"root.crt", "root.key", "intermediate.crt", "intermediate.key"} {
				if m := mode(t, filepath.Join(dir, name)); m != 0o600 {
					t.Errorf("%s mode %v, want 0600", name, m)
				}
			}
			c, err := ca.LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}

			out, err := run(t, "ca", "show", "--dir", dir)
			if err != nil {
				t.Fatalf("ca show: %v", err)
			}
			for _, want := range []string{c.Root.Subject.String(), ca.Fingerprint(c.Root), c.Fingerprint(), "key algorithm:       " + string(alg),
				c.Intermediate.NotAfter.UTC().Format("2006-01-02T15:04:05Z"), "OU=example.org"} {
				if !strings.Contains(out, want) {
					t.Errorf("ca show output lacks %q:\n%s", want, out)
				}
			}

			before, _ := os.ReadFile(filepath.Join(dir, "intermediate.key"))
			if _, err := run(t, "ca", "init", "--dir", dir); !errors.Is(err, ca.ErrAlreadyExists) {
				t.Errorf("second ca init: %v, want ErrAlreadyExists", err)
			}
			if after, _ := os.ReadFile(filepath.Join(dir, "intermediate.key")); !bytes.Equal(before, after) {
				t.Fatal("second ca init overwrote the CA")
			}

			for _, tc := range []struct {
				profile string
				args    []string
				purpose string
			}{
				{"workload", []string{"--spiffe-id", "spiffe://example.org/ns/shop/sa/api", "--dns", "api.shop.svc,api.shop.svc.cluster.local"}, "sslclient"},
				{"gateway", []string{"--spiffe-id", "spiffe://example.org/ns/edge/sa/ambassador", "--dns", "gw.example.com"}, "sslserver"},
				{"serving", []string{"--dns", "localhost", "--ip", "127.0.0.1", "--duration", "1h", "--key-algorithm", "rsa-2048"}, "sslserver"},
			} {
				outDir := filepath.Join(t.TempDir(), tc.profile)
				args := append([]string{"issue", "--ca-dir", dir, "--profile", tc.profile, "--out-dir", outDir}, tc.args...)
				if out, err := run(t, args...); err != nil {
					t.Fatalf("issue %s: %v\n%s", tc.profile, err, out)
				}
				if m := mode(t, filepath.Join(outDir, "tls.key")); m != 0o600 {
					t.Errorf("tls.key mode %v, want 0600", m)
				}
				crt, _ := os.ReadFile(filepath.Join(outDir, "tls.crt"))
				certs, err := ca.ParseCertificatesPEM(crt)
				if err != nil || len(certs) != 2 || !certs[1].Equal(c.Intermediate) {
					t.Fatalf("tls.crt is not leaf then intermediate (%d certificates, %v)", len(certs), err)
				}
				key, _ := os.ReadFile(filepath.Join(outDir, "tls.key"))
				if !bytes.HasPrefix(key, []byte("-----BEGIN PRIVATE KEY-----")) {
					t.Errorf("tls.key is not PKCS#8")
				}
				leaf := testpki.WriteFile(t, outDir, "leaf.pem", testpki.CertPEM(certs[0]))
				testpki.Verify(t, filepath.Join(outDir, "ca.crt"), filepath.Join(dir, "intermediate.crt"), leaf, "-purpose", tc.purpose)
			}
		})
	}
}

func TestIssueErrors(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := run(t, "ca", "init", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cases := map[string]struct {
		args []string
		want string
	}{
		"unknown profile":      {[]string{"--profile", "client", "--dns", "a.b"}, "unknown profile"},
		"workload without id":  {[]string{"--profile", "workload", "--dns", "a.b"}, "needs a SPIFFE ID"},
		"bad SPIFFE ID":        {[]string{"--profile", "workload", "--spiffe-id", "https://x/y"}, "spiffe-id-syntax"},
		"bad DNS name":         {[]string{"--profile", "serving", "--dns", "a_b.example"}, "dns-syntax"},
		"unknown key":          {[]string{"--profile", "serving", "--dns", "a.b", "--key-algorithm", "rsa-1024"}, "unknown key algorithm"},
		"missing CA":           {[]string{"--profile", "serving", "--dns", "a.b", "--ca-dir", t.TempDir()}, "CA not found"},
		"missing out-dir flag": {[]string{"--profile", "serving", "--dns", "a.b", "--out-dir", ""}, "must not be empty"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"issue", "--ca-dir", dir, "--out-dir", out}, tc.args...)
			if _, err := run(t, args...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("a refused request wrote %d files", len(entries))
	}
}
