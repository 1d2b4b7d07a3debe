package main

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/testpki"
	"github.com/meshca/meshca/issuer"
)

// TestServeStepCANotBuilt: --issuer=stepca stops `meshca serve` before it
// connects to anything; a default build says how to get the backend.
func TestServeStepCANotBuilt(t *testing.T) {
	t.Parallel()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"serve", "--issuer=stepca", "--kubeconfig=" + filepath.Join(t.TempDir(), "none")})
	err := root.Execute()
	want := "needs --stepca-url" // a tagged build validates the flags
	if !stepcaBuilt {
		want = "build it with `go build -tags stepca ./cmd/meshca`"
		if !errors.Is(err, errStepCANotBuilt) {
			t.Errorf("error %v is not errStepCANotBuilt", err)
		}
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("meshca serve --issuer=stepca = %v, want an error saying %q", err, want)
	}
}

// TestServeHelpIssuerFlags: --help explains every issuer flag and names
// its environment variable.
func TestServeHelpIssuerFlags(t *testing.T) {
	t.Parallel()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"serve", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"issuer", "stepca-url", "stepca-root-file", "stepca-provisioner", "stepca-provisioner-password-file", "stepca-provisioner-key-file"} {
		if !strings.Contains(out.String(), "--"+f+" ") || !strings.Contains(out.String(), "(env "+envName(f)+")") {
			t.Errorf("--help does not explain --%s with %s", f, envName(f))
		}
	}
}

func TestIssuerFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pki := testpki.New(t)
	rootFile := testpki.WriteFile(t, dir, "root.crt", append(bytes.Clone(pki.RootPEM), pki.IntermediatePEM...))
	passwordFile := testpki.WriteFile(t, dir, "password", []byte("correct horse\n"))
	empty := testpki.WriteFile(t, dir, "empty", nil)
	garbage := testpki.WriteFile(t, dir, "garbage", []byte("not PEM"))
	missing := filepath.Join(dir, "missing")
	stepca := func(extra ...string) []string {
		return append([]string{"--issuer=stepca", "--stepca-url=https://step-ca.example:9000", "--stepca-root-file=" + rootFile,
			"--stepca-provisioner=meshca", "--stepca-provisioner-password-file=" + passwordFile}, extra...)
	}
	tests := map[string]struct {
		env     map[string]string
		args    []string
		wantErr []string // substrings; nil means valid
	}{
		"local by default": {},
		"stepca":           {args: stepca()},
		"stepca from the environment": {env: map[string]string{
			"MESHCA_ISSUER": "stepca", "MESHCA_STEPCA_URL": "https://step-ca:9000", "MESHCA_STEPCA_ROOT_FILE": rootFile,
			"MESHCA_STEPCA_PROVISIONER": "meshca", "MESHCA_STEPCA_PROVISIONER_PASSWORD_FILE": passwordFile,
		}},
		"key file without password": {args: []string{"--issuer=stepca", "--stepca-url=https://step-ca:9000", "--stepca-root-file=" + rootFile,
			"--stepca-provisioner=meshca", "--stepca-provisioner-key-file=" + passwordFile}},
		"unknown backend":      {args: []string{"--issuer=vault"}, wantErr: []string{`--issuer must be local or stepca, got "vault"`}},
		"root file with local": {args: []string{"--stepca-root-file=" + rootFile}},
		"root file with local, missing": {
			args: []string{"--stepca-root-file=" + missing}, wantErr: []string{"--stepca-root-file: open " + missing},
		},
		"stepca flag without stepca": {
			args: []string{"--stepca-url=https://step-ca:9000"}, wantErr: []string{"--stepca-url is set but --issuer is local"},
		},
		"nothing given": {args: []string{"--issuer=stepca"}, wantErr: []string{
			"needs --stepca-url", "needs --stepca-provisioner", "needs --stepca-root-file", "needs --stepca-provisioner-password-file",
		}},
		"plain http":        {args: stepca("--stepca-url=http://step-ca:9000"), wantErr: []string{"want https://host[:port]"}},
		"root missing":      {args: stepca("--stepca-root-file=" + missing), wantErr: []string{"--stepca-root-file: open " + missing}},
		"root not PEM":      {args: stepca("--stepca-root-file=" + garbage), wantErr: []string{"--stepca-root-file " + garbage + ": no CERTIFICATE"}},
		"password missing":  {args: stepca("--stepca-provisioner-password-file=" + missing), wantErr: []string{"--stepca-provisioner-password-file: open " + missing}},
		"password empty":    {args: stepca("--stepca-provisioner-password-file=" + empty), wantErr: []string{"--stepca-provisioner-password-file " + empty + " is empty"}},
		"key file missing":  {args: stepca("--stepca-provisioner-key-file=" + missing), wantErr: []string{"--stepca-provisioner-key-file: open " + missing}},
		"key file is empty": {args: stepca("--stepca-provisioner-key-file=" + empty), wantErr: []string{"--stepca-provisioner-key-file " + empty + " is empty"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			o := options(t, tc.env, tc.args...)
			err := o.validate()
			want := tc.wantErr
			if o.issuerBackend == issuerStepCA && !stepcaBuilt {
				want = []string{errStepCANotBuilt.Error()}
			}
			if want == nil {
				if err != nil {
					t.Fatalf("validate() = %v", err)
				}
				if o.stepca.rootFile != "" {
					if len(o.stepca.roots) != 2 || (o.stepca.passwordFile != "" && string(o.stepca.password) != "correct horse") {
						t.Errorf("read %d roots and a password of %d bytes, want 2 and the file's first line", len(o.stepca.roots), len(o.stepca.password))
					}
				}
				return
			}
			if err == nil {
				t.Fatalf("validate() succeeded, want errors %q", want)
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("validate() = %v\nwant it to say %q", err, w)
				}
			}
		})
	}
}

// TestCertBackend: the local backend publishes no roots of its own, or
// step-ca's when moving back from stepca; the stepca backend (in a tagged build) publishes step-ca's, or refuses to
// start in a default build.
func TestCertBackend(t *testing.T) {
	t.Parallel()
	c, err := ca.New(ca.Config{TrustDomain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	state := ca.NewState(c, "generated", c.Intermediate.NotBefore)
	local, err := newCertBackend(options(t, nil), state, issuer.Policy{}, ca.KeyAlgorithm("ecdsa-p256"))
	if err != nil {
		t.Fatal(err)
	}
	if local.roots != nil {
		t.Errorf("local backend publishes %d extra roots", len(local.roots))
	}
	if err := local.setCA(state); err != nil {
		t.Errorf("local setCA: %v", err)
	}
	back := options(t, nil, "--stepca-root-file="+testpki.WriteFile(t, t.TempDir(), "root.crt", testpki.New(t).RootPEM))
	if err := back.validate(); err != nil {
		t.Fatal(err)
	}
	if local, err = newCertBackend(back, state, issuer.Policy{}, ""); err != nil {
		t.Fatal(err)
	}
	if len(local.roots) != 1 {
		t.Errorf("local backend with --stepca-root-file publishes %d extra roots, want 1", len(local.roots))
	}

	pki := testpki.New(t)
	dir := t.TempDir()
	o := options(t, nil, "--issuer=stepca", "--stepca-url=https://127.0.0.1:1", "--stepca-provisioner=meshca",
		"--stepca-root-file="+testpki.WriteFile(t, dir, "root.crt", pki.RootPEM),
		"--stepca-provisioner-password-file="+testpki.WriteFile(t, dir, "password", []byte("pw")))
	if !stepcaBuilt {
		if _, err := newCertBackend(o, state, issuer.Policy{}, ""); !errors.Is(err, errStepCANotBuilt) {
			t.Fatalf("stepca backend in a default build: %v, want errStepCANotBuilt", err)
		}
		return
	}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	b, err := newCertBackend(o, state, issuer.Policy{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(b.roots) != 1 || !b.roots[0].Equal(pki.Root) {
		t.Errorf("stepca backend publishes %d roots, want step-ca's", len(b.roots))
	}
	if err := b.setCA(state); err != nil {
		t.Errorf("stepca setCA: %v", err)
	}
}
