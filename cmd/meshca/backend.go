package main

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"

	"github.com/spf13/pflag"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/controller"
	"github.com/meshca/meshca/issuer"
)

// Issuer backends of --issuer.
const (
	issuerLocal  = "local"
	issuerStepCA = "stepca"
)

// errStepCANotBuilt is the startup error of --issuer=stepca in a meshca
// built without the stepca tag (backend_nostepca.go).
var errStepCANotBuilt = errors.New("--issuer=stepca: this meshca was built without the stepca issuer backend; " +
	"build it with `go build -tags stepca ./cmd/meshca` (adds ~58 MB)")

// stepcaOptions are the --stepca-* flags and, once validateIssuer has read
// them, the files they name. password and key are secrets: never log them.
type stepcaOptions struct {
	url, rootFile, provisioner, passwordFile, keyFile string

	roots         []*x509.Certificate
	rootPEM       []byte
	password, key []byte
}

func (o *serveOptions) addIssuerFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.issuerBackend, "issuer", issuerLocal, "what signs TLSContext and workload certificates: local (meshca's internal CA) or stepca (a remote step-ca, through a JWK provisioner; needs a meshca built with -tags stepca). The internal CA exists either way and signs the webhook's serving certificate; with stepca every ca.crt and trust bundle ConfigMap holds meshca's roots and step-ca's")
	fs.StringVar(&o.stepca.url, "stepca-url", "", "with --issuer=stepca: URL of step-ca, https://host[:port]")
	fs.StringVar(&o.stepca.rootFile, "stepca-root-file", "", "PEM file of step-ca's root certificate(s), added to every trust bundle meshca publishes; with --issuer=stepca meshca trusts step-ca's TLS through them alone; with --issuer=local (when moving back from stepca) it keeps step-ca's certificates trusted until they renew")
	fs.StringVar(&o.stepca.provisioner, "stepca-provisioner", "", "with --issuer=stepca: name of step-ca's JWK provisioner (it must carry meshca's X.509 template, see docs/reference.md)")
	fs.StringVar(&o.stepca.passwordFile, "stepca-provisioner-password-file", "", "with --issuer=stepca: file holding the password that decrypts the provisioner's key (trailing newlines are ignored); required unless --stepca-provisioner-key-file holds an unencrypted key")
	fs.StringVar(&o.stepca.keyFile, "stepca-provisioner-key-file", "", "with --issuer=stepca: file holding the provisioner's private JWK, encrypted (JWE, as \"step crypto jwk create\" writes it) or not; empty: the encrypted key is fetched from step-ca, as \"step ca token\" does")
}

// validateIssuer checks --issuer and the --stepca-* flags and reads the
// files they name, so that a bad setting stops meshca before it connects
// to anything.
func (o *serveOptions) validateIssuer() error {
	s := &o.stepca
	switch o.issuerBackend {
	case issuerLocal:
		// --stepca-root-file alone keeps step-ca's roots trusted after a
		// move back from stepca, until its certificates have renewed.
		for _, f := range []struct{ flag, value string }{
			{"--stepca-url", s.url}, {"--stepca-provisioner", s.provisioner},
			{"--stepca-provisioner-password-file", s.passwordFile}, {"--stepca-provisioner-key-file", s.keyFile},
		} {
			if f.value != "" {
				return fmt.Errorf("%s is set but --issuer is %s: set --issuer=stepca to use step-ca", f.flag, issuerLocal)
			}
		}
		if s.rootFile == "" {
			return nil
		}
		return s.readRoots()
	case issuerStepCA:
	default:
		return fmt.Errorf("--issuer must be %s or %s, got %q", issuerLocal, issuerStepCA, o.issuerBackend)
	}
	if !stepcaBuilt {
		return errStepCANotBuilt
	}
	var errs []error
	if s.url == "" {
		errs = append(errs, errors.New("--issuer=stepca needs --stepca-url"))
	} else if u, err := url.Parse(s.url); err != nil || u.Scheme != "https" || u.Host == "" {
		errs = append(errs, fmt.Errorf("--stepca-url %q: want https://host[:port]", s.url))
	}
	if s.provisioner == "" {
		errs = append(errs, errors.New("--issuer=stepca needs --stepca-provisioner"))
	}
	if s.rootFile == "" {
		errs = append(errs, errors.New("--issuer=stepca needs --stepca-root-file"))
	} else if err := s.readRoots(); err != nil {
		errs = append(errs, err)
	}
	if s.keyFile != "" {
		b, err := os.ReadFile(s.keyFile)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("--stepca-provisioner-key-file: %w", err))
		case len(bytes.TrimSpace(b)) == 0:
			errs = append(errs, fmt.Errorf("--stepca-provisioner-key-file %s is empty", s.keyFile))
		default:
			s.key = b
		}
	}
	switch {
	case s.passwordFile != "":
		b, err := os.ReadFile(s.passwordFile)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("--stepca-provisioner-password-file: %w", err))
		case len(bytes.TrimRight(b, "\r\n")) == 0:
			errs = append(errs, fmt.Errorf("--stepca-provisioner-password-file %s is empty", s.passwordFile))
		default:
			s.password = bytes.TrimRight(b, "\r\n")
		}
	case s.keyFile == "":
		errs = append(errs, errors.New("--issuer=stepca needs --stepca-provisioner-password-file to decrypt the provisioner key it fetches from step-ca (or --stepca-provisioner-key-file with an unencrypted key)"))
	}
	return errors.Join(errs...)
}

// readRoots reads and parses --stepca-root-file.
func (s *stepcaOptions) readRoots() error {
	b, err := os.ReadFile(s.rootFile)
	if err != nil {
		return fmt.Errorf("--stepca-root-file: %w", err)
	}
	roots, err := ca.ParseCertificatesPEM(b)
	if err != nil {
		return fmt.Errorf("--stepca-root-file %s: %w", s.rootFile, err)
	}
	s.roots, s.rootPEM = roots, b
	return nil
}

// certBackend is what signs TLSContext and workload certificates.
type certBackend struct {
	issuer controller.Issuer
	// setCA hands the CA state in force to the backend; the stepca
	// backend does not sign with meshca's CA and ignores it.
	setCA func(*ca.State) error
	// roots are published in every trust bundle beside meshca's: step-ca's
	// (--stepca-root-file), also with the local backend when given, so that
	// step-ca's certificates stay trusted until they renew.
	roots []*x509.Certificate
}

// newCertBackend builds the backend --issuer names. policy is the
// namespace policy both backends apply before signing.
func newCertBackend(o *serveOptions, state *ca.State, policy issuer.Policy, alg ca.KeyAlgorithm) (*certBackend, error) {
	if o.issuerBackend == issuerStepCA {
		iss, err := newStepCAIssuer(o, policy, alg)
		if err != nil {
			return nil, err
		}
		return &certBackend{issuer: iss, setCA: func(*ca.State) error { return nil }, roots: o.stepca.roots}, nil
	}
	local, err := issuer.NewLocal(issuer.LocalConfig{
		CA:                  state,
		Policy:              policy,
		DefaultDuration:     o.leafDuration,
		DefaultKeyAlgorithm: alg,
	})
	if err != nil {
		return nil, err
	}
	return &certBackend{issuer: local, setCA: local.SetCA, roots: o.stepca.roots}, nil
}
