package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshca/meshca/ca"
)

func newCACommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Create and inspect a CA kept in a folder; rotate the CA in the cluster",
	}
	cmd.AddCommand(newCAInitCommand(), newCAShowCommand(), newCARotateCommand(), newCAImportCommand())
	return cmd
}

func newCAInitCommand() *cobra.Command {
	var (
		dir, keyAlg, trustDomain string
		rootLifetime, intLife    time.Duration
		permitted                []string
	)
	cmd := &cobra.Command{
		Use:   "init --dir D",
		Short: "Create a root and an intermediate in D (root.crt, root.key, intermediate.crt, intermediate.key)",
		Long: "Create a self-signed root and an intermediate and write them to a folder, keys and certificates\n" +
			"with mode 0600. An existing CA in the folder is never overwritten.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			alg, err := ca.ParseKeyAlgorithm(keyAlg)
			if err != nil {
				return err
			}
			// Refuse before spending time on keys (rsa-4096 takes a while).
			if _, err := ca.LoadDir(dir); err == nil {
				return fmt.Errorf("%s already holds a CA: %w", dir, ca.ErrAlreadyExists)
			}
			c, err := ca.New(ca.Config{
				KeyAlgorithm:         alg,
				TrustDomain:          trustDomain,
				RootLifetime:         rootLifetime,
				IntermediateLifetime: intLife,
				PermittedDNSDomains:  permitted,
			})
			if err != nil {
				return err
			}
			if err := ca.WriteDir(dir, c); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote a new CA to %s\n", dir)
			return showCA(cmd.OutOrStdout(), c)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "folder to write the CA to (created with mode 0700)")
	f.StringVar(&keyAlg, "key-algorithm", string(ca.DefaultKeyAlgorithm), "key algorithm of root and intermediate: ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096, ed25519")
	f.StringVar(&trustDomain, "trust-domain", ca.DefaultTrustDomain, "SPIFFE trust domain")
	f.DurationVar(&rootLifetime, "root-lifetime", ca.DefaultRootLifetime, "validity of the root")
	f.DurationVar(&intLife, "intermediate-lifetime", ca.DefaultIntermediateLifetime, "validity of the intermediate (never past the root's)")
	f.StringSliceVar(&permitted, "permitted-dns-domains", nil, "if set, name-constrain the intermediate to these DNS suffixes and URIs of the trust domain")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func newCAShowCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "show --dir D",
		Short: "Print subject, fingerprints, algorithms and expiry of the CA in D",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := ca.LoadDir(dir)
			if err != nil {
				return err
			}
			return showCA(cmd.OutOrStdout(), c)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "folder holding the CA")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func showCA(w io.Writer, c *ca.CA) error {
	show := func(role string, cert *x509.Certificate, keyHeld bool) {
		alg, err := ca.KeyAlgorithmOf(cert.PublicKey)
		if err != nil {
			alg = ca.KeyAlgorithm(cert.PublicKeyAlgorithm.String())
		}
		fmt.Fprintf(w, "%s:\n", role)
		fmt.Fprintf(w, "  subject:             %s\n", cert.Subject)
		fmt.Fprintf(w, "  sha256 fingerprint:  %s\n", ca.Fingerprint(cert))
		fmt.Fprintf(w, "  key algorithm:       %s\n", alg)
		fmt.Fprintf(w, "  signature algorithm: %s\n", cert.SignatureAlgorithm)
		fmt.Fprintf(w, "  not before:          %s\n", cert.NotBefore.UTC().Format(time.RFC3339))
		fmt.Fprintf(w, "  not after:           %s\n", cert.NotAfter.UTC().Format(time.RFC3339))
		fmt.Fprintf(w, "  private key held:    %v\n", keyHeld)
		if len(cert.PermittedDNSDomains)+len(cert.PermittedURIDomains) > 0 {
			fmt.Fprintf(w, "  permitted DNS:       %v\n  permitted URI:       %v\n", cert.PermittedDNSDomains, cert.PermittedURIDomains)
		}
	}
	show("root", c.Root, c.RootKey != nil)
	for i, cert := range c.Chain {
		role := "intermediate (signs leaves)"
		if i > 0 {
			role = fmt.Sprintf("intermediate %d", i+1)
		}
		show(role, cert, i == 0)
	}
	return nil
}
