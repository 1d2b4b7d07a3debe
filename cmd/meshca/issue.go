package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/controller"
	"github.com/meshca/meshca/issuer"
)

func newIssueCommand() *cobra.Command {
	var (
		caDir, profile, spiffeID, namespace, keyAlg, outDir string
		dnsNames                                            []string
		ips                                                 []net.IP
		duration                                            time.Duration
	)
	cmd := &cobra.Command{
		Use:   "issue --ca-dir D --profile workload|gateway|serving --out-dir O",
		Short: "Issue a certificate with the CA in D and write tls.crt, tls.key and ca.crt to O",
		Long: "Issue a certificate with the CA in a folder. The CLI acts with the operator's authority (it holds\n" +
			"the CA key), so the namespace policy of the daemon does not apply: any well-formed name is allowed.\n" +
			"tls.crt is the leaf followed by the intermediate, tls.key is PKCS#8 (mode 0600), ca.crt the trust bundle.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if caDir == "" || outDir == "" {
				return errors.New("--ca-dir and --out-dir must not be empty")
			}
			p, err := issuer.ParseProfile(profile)
			if err != nil {
				return err
			}
			alg, err := ca.ParseKeyAlgorithm(keyAlg)
			if err != nil {
				return err
			}
			c, err := ca.LoadDir(caDir)
			if err != nil {
				return err
			}
			var iss controller.Issuer
			iss, err = issuer.NewLocal(issuer.LocalConfig{
				CA:     ca.NewState(c, ca.SourceDir, c.Intermediate.NotBefore),
				Policy: issuer.OperatorPolicy(),
				Clock:  clock.RealClock{},
			})
			if err != nil {
				return err
			}
			b, err := iss.Issue(cmd.Context(), issuer.Request{
				Profile:      p,
				Namespace:    namespace,
				SPIFFEID:     spiffeID,
				DNSNames:     dnsNames,
				IPAddresses:  ips,
				Duration:     duration,
				KeyAlgorithm: alg,
			})
			if err != nil {
				return err
			}
			if err := writeBundle(outDir, b); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote tls.crt, tls.key and ca.crt to %s\nserial %s, not after %s, issuer %s\n",
				outDir, b.Leaf.SerialNumber.Text(16), b.Leaf.NotAfter.UTC().Format(time.RFC3339), b.IssuerFingerprint)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&caDir, "ca-dir", "", "folder holding the CA (meshca ca init)")
	f.StringVar(&profile, "profile", "", "workload, gateway or serving")
	f.StringVar(&spiffeID, "spiffe-id", "", "SPIFFE ID URI SAN (required for workload and gateway)")
	f.StringSliceVar(&dnsNames, "dns", nil, "DNS SANs, comma-separated")
	f.IPSliceVar(&ips, "ip", nil, "IP SANs, comma-separated")
	f.StringVar(&namespace, "namespace", "", "namespace recorded in errors (no policy applies to the CLI)")
	f.DurationVar(&duration, "duration", issuer.DefaultDuration, "lifetime (never past the CA's)")
	f.StringVar(&keyAlg, "key-algorithm", string(ca.DefaultKeyAlgorithm), "key algorithm of the new key")
	f.StringVar(&outDir, "out-dir", "", "folder to write tls.crt, tls.key and ca.crt to")
	for _, name := range []string{"ca-dir", "profile", "out-dir"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

// writeBundle writes the three files, each through a temporary file and a
// rename so a reader never sees half a key or a key of another certificate.
func writeBundle(dir string, b *issuer.Bundle) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"tls.key", b.PrivateKeyPEM, 0o600},
		{"tls.crt", b.CertificatePEM, 0o644},
		{"ca.crt", b.CAPEM, 0o644},
	} {
		tmp, err := os.CreateTemp(dir, "."+f.name+".*")
		if err != nil {
			return err
		}
		_, werr := tmp.Write(f.data)
		cerr := tmp.Close()
		if err := os.Chmod(tmp.Name(), f.mode); err != nil {
			return err
		}
		if werr != nil || cerr != nil {
			os.Remove(tmp.Name())
			return fmt.Errorf("write %s: %v %v", f.name, werr, cerr)
		}
		if err := os.Rename(tmp.Name(), filepath.Join(dir, f.name)); err != nil {
			os.Remove(tmp.Name())
			return err
		}
	}
	return nil
}
