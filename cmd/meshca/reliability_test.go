package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/daemontest"
	"github.com/meshca/meshca/internal/testenv"
)

var tlsContextGVK = schema.GroupVersionKind{Group: "getambassador.io", Version: "v3alpha1", Kind: "TLSContext"}

func caSecretData(t *testing.T) map[string][]byte {
	t.Helper()
	c, err := ca.New(ca.Config{TrustDomain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	data, err := ca.NewState(c, "test", time.Now()).SecretData()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func putSecret(t *testing.T, env *testenv.Env, ns, name string, labels map[string]string, data map[string][]byte) *corev1.Secret {
	t.Helper()
	s, err := env.Clientset.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Secret %s/%s: %v", ns, name, err)
	}
	return s
}

var managedLabel = map[string]string{"app.kubernetes.io/managed-by": "meshca"}

// TestServeCASecretProblems: a CA Secret meshca cannot use, or a missing one
// whose certificates are still around, stops meshca with a clear error and
// leaves the Secrets as they were; --allow-new-ca lets an operator go on.
func TestServeCASecretProblems(t *testing.T) {
	env := testenv.Get(t)
	good, other := caSecretData(t), caSecretData(t)
	mismatched := map[string][]byte{}
	for k, v := range good {
		mismatched[k] = v
	}
	_, _, _, intKey := ca.SlotKeys(ca.SlotCurrent)
	mismatched[intKey] = other[intKey]
	corrupt := map[string][]byte{}
	for k, v := range good {
		corrupt[k] = v
	}
	rootCrt, _, _, _ := ca.SlotKeys(ca.SlotCurrent)
	corrupt[rootCrt] = []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")

	// A downgrade: the Secret of a newer meshca, a format this one does
	// not know.
	newer := map[string][]byte{}
	for k, v := range good {
		newer[k] = v
	}
	newer[ca.KeyState] = []byte(fmt.Sprintf(`{"version":%d}`, ca.StateRecordVersion+1))

	cases := map[string]struct {
		caData   map[string][]byte // nil: no CA Secret
		orphan   bool              // a managed Secret of an earlier CA exists
		extra    []string
		wantExit bool
		wantLog  string
	}{
		"corrupt":                        {caData: corrupt, wantExit: true, wantLog: "invalid CA"},
		"garbage only":                   {caData: map[string][]byte{"foo": []byte("bar")}, wantExit: true, wantLog: "no current CA"},
		"key does not match certificate": {caData: mismatched, wantExit: true, wantLog: "signing key does not match"},
		"gone, certificates remain":      {orphan: true, wantExit: true, wantLog: "--allow-new-ca"},
		"gone, --allow-new-ca":           {orphan: true, extra: []string{"--allow-new-ca"}},
		"first start":                    {},
		"written by a newer meshca": {caData: newer, wantExit: true,
			wantLog: fmt.Sprintf("/meshca-ca: CA stored by a newer meshca: key state.json has format version %d and this meshca reads versions up to %d", ca.StateRecordVersion+1, ca.StateRecordVersion)},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t)
			var before *corev1.Secret
			if tc.caData != nil {
				before = putSecret(t, env, ns, ca.DefaultSecretName, map[string]string{"app.kubernetes.io/managed-by": "meshca", "app.kubernetes.io/component": "ca"}, tc.caData)
			}
			if tc.orphan {
				putSecret(t, env, ns, "left-behind", managedLabel, map[string][]byte{"tls.crt": []byte("x")})
			}
			d := startDaemon(t, env, ns, append([]string{"--leader-elect=false"}, tc.extra...)...)
			if tc.wantExit {
				exited, err := d.Wait(90 * time.Second)
				if !exited {
					t.Fatalf("meshca kept running; want it to refuse the CA Secret")
				}
				if err == nil {
					t.Errorf("meshca exited with code 0, want an error")
				}
				if log := d.Log(); !strings.Contains(log, tc.wantLog) {
					t.Errorf("log lacks %q:\n%s", tc.wantLog, daemontest.Tail(log, 3000))
				}
				got, err := env.Clientset.CoreV1().Secrets(ns).Get(context.Background(), ca.DefaultSecretName, metav1.GetOptions{})
				switch {
				case before == nil && !apierrors.IsNotFound(err):
					t.Errorf("a CA Secret was created (err %v): meshca minted a new CA silently", err)
				case before != nil && (err != nil || got.ResourceVersion != before.ResourceVersion):
					t.Errorf("CA Secret changed: %v", err)
				}
				return
			}
			daemontest.Eventually(t, 90*time.Second, "the CA Secret", func(ctx context.Context) (bool, error) {
				_, err := env.Clientset.CoreV1().Secrets(ns).Get(ctx, ca.DefaultSecretName, metav1.GetOptions{})
				return err == nil, err
			})
			if !d.Running() {
				t.Fatalf("meshca exited: %v", d.Err())
			}
		})
	}
}

// TestServeRestoresDeletedCA: the CA Secret deleted while meshca runs comes
// back from the leader's memory with the same CA, and issuance goes on.
func TestServeRestoresDeletedCA(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	d := startDaemon(t, env, ns, "--leader-election-lease-duration=30s", "--leader-election-renew-deadline=25s")
	createTLSContexts(t, env, ns, "before", 1, nil)
	waitValidSecrets(t, env, ns, "before", 1, nil)
	secrets := env.Clientset.CoreV1().Secrets(ns)
	orig, err := secrets.Get(context.Background(), ca.DefaultSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := secrets.Delete(context.Background(), ca.DefaultSecretName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var restored *corev1.Secret
	daemontest.Eventually(t, 60*time.Second, "the CA Secret to come back", func(ctx context.Context) (bool, error) {
		restored, err = secrets.Get(ctx, ca.DefaultSecretName, metav1.GetOptions{})
		return err == nil, err
	})
	st, err := ca.StateFromSecretData(restored.Data)
	if err != nil {
		t.Fatalf("restored CA Secret: %v", err)
	}
	was, _ := ca.StateFromSecretData(orig.Data)
	if st.Get(ca.SlotCurrent).Fingerprint() != was.Get(ca.SlotCurrent).Fingerprint() {
		t.Errorf("restored CA %s, want the one that was deleted (%s)", st.Get(ca.SlotCurrent).Fingerprint(), was.Get(ca.SlotCurrent).Fingerprint())
	}
	createTLSContexts(t, env, ns, "after", 1, nil)
	waitValidSecrets(t, env, ns, "after", 1, nil)
	if !d.Running() {
		t.Fatalf("meshca exited: %v", d.Err())
	}
}

// createTLSContexts creates n managed TLSContexts <prefix>-<i> whose
// Secrets are <prefix>-<i>-certs.
func createTLSContexts(t *testing.T, env *testenv.Env, ns, prefix string, n int, ann map[string]string) {
	t.Helper()
	inParallel(t, n, "create TLSContext", func(i int) error {
		u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
			"hosts":  []any{fmt.Sprintf("%s-%d.%s.svc", prefix, i, ns)},
			"secret": fmt.Sprintf("%s-%d-certs", prefix, i),
		}}}
		u.SetGroupVersionKind(tlsContextGVK)
		u.SetNamespace(ns)
		u.SetName(fmt.Sprintf("%s-%d", prefix, i))
		a := map[string]string{"meshca.io/issue": "true"}
		for k, v := range ann {
			a[k] = v
		}
		u.SetAnnotations(a)
		return env.Client.Create(context.Background(), u)
	})
}

// inParallel runs do(0..n-1) with at most 16 at a time and fails the test
// with the first error if any call fails.
func inParallel(t *testing.T, n int, what string, do func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := do(i); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitValidSecrets waits until the n Secrets <prefix>-<i>-certs all hold a
// valid certificate (checkTLSSecret) for which want, if set, holds.
func waitValidSecrets(t *testing.T, env *testenv.Env, ns, prefix string, n int, want func(*x509.Certificate) bool) {
	t.Helper()
	var missing string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		list, err := env.Clientset.CoreV1().Secrets(ns).List(context.Background(), metav1.ListOptions{})
		if err == nil {
			byName := map[string]*corev1.Secret{}
			for i := range list.Items {
				byName[list.Items[i].Name] = &list.Items[i]
			}
			missing = ""
			for i := range n {
				name := fmt.Sprintf("%s-%d-certs", prefix, i)
				s := byName[name]
				if s == nil {
					missing = name + ": missing"
					break
				}
				leaf, err := checkTLSSecret(s)
				if err != nil {
					missing = name + ": " + err.Error()
					break
				}
				if want != nil && !want(leaf) {
					missing = name + ": not the certificate wanted yet"
					break
				}
			}
			if missing == "" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Secrets %s-*-certs not all valid after 3m: %s", prefix, missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkTLSSecret checks that a certificate Secret is whole: tls.crt parses
// and chains to a root in ca.crt, and tls.key is the leaf's key.
func checkTLSSecret(s *corev1.Secret) (*x509.Certificate, error) {
	return checkTLSSecretAt(s, time.Now())
}

// checkTLSSecretAt is checkTLSSecret at time at (never before the leaf's
// NotBefore), for a Secret version recorded earlier.
func checkTLSSecretAt(s *corev1.Secret, at time.Time) (*x509.Certificate, error) {
	certs, err := ca.ParseCertificatesPEM(s.Data["tls.crt"])
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("tls.crt: %v (%d certificates)", err, len(certs))
	}
	key, err := ca.ParsePrivateKeyPEM(s.Data["tls.key"])
	if err != nil {
		return nil, fmt.Errorf("tls.key: %w", err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(certs[0].PublicKey) {
		return nil, fmt.Errorf("tls.key does not match tls.crt")
	}
	roots, err := ca.ParseCertificatesPEM(s.Data["ca.crt"])
	if err != nil || len(roots) == 0 {
		return nil, fmt.Errorf("ca.crt: %v", err)
	}
	rp, ip := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		rp.AddCert(r)
	}
	for _, c := range certs[1:] {
		ip.AddCert(c)
	}
	if at.Before(certs[0].NotBefore) {
		at = certs[0].NotBefore
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return certs[0], nil
}

// keyMaterial returns every private key of the managed Secrets and the CA
// Secret in ns, in the shapes it could leak in: the PEM body's first line
// and the base64 of the whole PEM (as a Secret's JSON data carries it).
func keyMaterial(t *testing.T, env *testenv.Env, ns string) []string {
	t.Helper()
	list, err := env.Clientset.CoreV1().Secrets(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range list.Items {
		for k, v := range s.Data {
			if !strings.HasSuffix(k, ".key") {
				continue
			}
			out = append(out, base64.StdEncoding.EncodeToString(v)[:48])
			rest := v
			for {
				var b *pem.Block
				b, rest = pem.Decode(rest)
				if b == nil {
					break
				}
				out = append(out, base64.StdEncoding.EncodeToString(b.Bytes)[:48])
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no private keys found in %s to look for", ns)
	}
	return out
}

// assertNoKeyMaterial fails if any text holds a PEM private key header or
// any of the keys.
func assertNoKeyMaterial(t *testing.T, texts map[string]string, keys []string) {
	t.Helper()
	for where, text := range texts {
		if strings.Contains(text, "PRIVATE KEY-----") {
			t.Errorf("%s holds a PEM private key header", where)
		}
		for _, k := range keys {
			if strings.Contains(text, k) {
				t.Errorf("%s holds private key material (%s...)", where, k[:12])
			}
		}
	}
}

// eventsText is every Event note and reason in ns, one per line.
func eventsText(t *testing.T, env *testenv.Env, ns string) string {
	t.Helper()
	list, err := env.Clientset.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, e := range list.Items {
		fmt.Fprintf(&b, "%s %s %s %s\n", e.Regarding.Name, e.Type, e.Reason, e.Note)
	}
	return b.String()
}
