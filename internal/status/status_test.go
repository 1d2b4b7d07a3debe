package status

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/ca/castore"
	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/internal/testpki"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestCollectAndRender(t *testing.T) {
	env := testenv.Get(t)
	home := env.Namespace(t)
	apps := env.Namespace(t)
	ctx := context.Background()
	if _, err := (castore.Secret{Client: env.Clientset, Namespace: home}).LoadOrCreate(ctx, ca.Config{}); err != nil {
		t.Fatal(err)
	}
	pki := testpki.New(t)
	now := time.Now()
	fresh := pki.Leaf(t, testpki.LeafOptions{DNSNames: []string{"a." + apps + ".svc"}, URIs: []string{"spiffe://cluster.local/ns/" + apps + "/sa/a"}})
	due := pki.Leaf(t, testpki.LeafOptions{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Minute)})
	secret := func(name string, typ corev1.SecretType, data map[string][]byte, renewAt time.Time) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: apps,
				Labels: map[string]string{meta.LabelManagedBy: meta.ManagedByValue},
				Annotations: map[string]string{
					meta.AnnotationSource:   "TLSContext/" + apps + "/" + name,
					meta.AnnotationSPIFFEID: "spiffe://cluster.local/ns/" + apps + "/sa/a",
					meta.AnnotationRenewAt:  renewAt.UTC().Format(time.RFC3339),
					meta.AnnotationReason:   "Missing",
				}},
			Type: typ, Data: data,
		}
	}
	for _, s := range []*corev1.Secret{
		secret("fresh", corev1.SecretTypeTLS, map[string][]byte{"tls.crt": fresh.CertPEM, "tls.key": fresh.KeyPEM, "ca.crt": pki.RootPEM}, now.Add(30*time.Minute)),
		secret("due", corev1.SecretTypeTLS, map[string][]byte{"tls.crt": due.CertPEM, "tls.key": due.KeyPEM, "ca.crt": pki.RootPEM}, now.Add(-time.Minute)),
		secret("bundle", corev1.SecretTypeOpaque, map[string][]byte{"tls.crt": pki.RootPEM, "ca.crt": pki.RootPEM}, time.Time{}),
	} {
		if _, err := env.Clientset.CoreV1().Secrets(apps).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "meshca", Namespace: home},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("replica-1"), RenewTime: &metav1.MicroTime{Time: now}}}
	if _, err := env.Clientset.CoordinationV1().Leases(home).Create(ctx, lease, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	r, err := Collect(ctx, env.Clientset, home, now)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, c := range r.Certificates {
		if c.Namespace == apps {
			states[c.Secret] = c.State
		}
	}
	want := map[string]string{"fresh": StateReady, "due": StateRenewing, "bundle": StateBundle}
	for name, st := range want {
		if states[name] != st {
			t.Errorf("%s: state %q, want %q", name, states[name], st)
		}
	}
	if len(r.CA) != 1 || r.CA[0].Slot != "current" || !r.CA[0].CanSign || r.BundleRoots != 1 {
		t.Errorf("CA: %+v, bundle %d", r.CA, r.BundleRoots)
	}
	if r.Leader == nil || r.Leader.Identity != "replica-1" {
		t.Errorf("leader %+v", r.Leader)
	}

	var table, tty, js bytes.Buffer
	if err := Table(&table, r, Style{}); err != nil {
		t.Fatal(err)
	}
	if err := Table(&tty, r, Style{Color: true, Relative: true}); err != nil {
		t.Fatal(err)
	}
	if err := JSON(&js, r); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"table": table.String(), "tty": tty.String(), "json": js.String()} {
		if strings.Contains(out, "PRIVATE KEY") {
			t.Errorf("%s output holds a private key", name)
		}
		for _, s := range []string{"fresh", "due", "replica-1"} {
			if !strings.Contains(out, s) {
				t.Errorf("%s output lacks %q:\n%s", name, s, out)
			}
		}
	}
	if strings.Contains(table.String(), "\x1b[") || !strings.Contains(tty.String(), "\x1b[32mReady") {
		t.Errorf("colour only on a terminal: plain has escapes=%v", strings.Contains(table.String(), "\x1b["))
	}
	if !strings.Contains(tty.String(), "ago") || strings.Contains(table.String(), " ago") {
		t.Errorf("relative times only on a terminal")
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Certificates) != len(r.Certificates) {
		t.Errorf("JSON does not round-trip: %v", err)
	}
	t.Logf("table:\n%s", table.String())
}
