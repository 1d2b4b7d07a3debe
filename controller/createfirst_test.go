package controller

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/issuer"
)

// countingReader counts reads that go to the API server.
type countingReader struct {
	client.Reader
	gets atomic.Int64
}

func (c *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.gets.Add(1)
	return c.Reader.Get(ctx, key, obj, opts...)
}

// countingIssuer counts signatures.
type countingIssuer struct {
	Issuer
	n atomic.Int64
}

func (c *countingIssuer) Issue(ctx context.Context, req issuer.Request) (*issuer.Bundle, error) {
	c.n.Add(1)
	return c.Issuer.Issue(ctx, req)
}

// TestCreateFirst: a Secret that has never existed costs its create and no
// read of the API server; a foreign Secret in the way is still never
// written, and once met it is read before anything is signed for it again.
func TestCreateFirst(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	foreign := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "theirs", Namespace: ns},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": []byte("not ours"), "tls.key": []byte("not ours")},
	}
	if err := env.Client.Create(context.Background(), foreign); err != nil {
		t.Fatal(err)
	}
	direct := &countingReader{Reader: env.Client}
	var signer *countingIssuer
	h := startHarness(t, harnessOptions{namespaces: []string{ns}, reader: direct, wrapIssuer: func(i Issuer) Issuer {
		signer = &countingIssuer{Issuer: i}
		return signer
	}})

	for i := range 5 {
		h.create(t, tlsContext(ns, fmt.Sprintf("fresh-%d", i), issue, map[string]any{"secret": fmt.Sprintf("fresh-%d-certs", i)}))
	}
	for i := range 5 {
		h.waitSecret(t, ns, fmt.Sprintf("fresh-%d-certs", i), nil)
	}
	if n := direct.gets.Load(); n != 0 {
		t.Errorf("%d direct reads for Secrets that never existed, want 0", n)
	}

	h.create(t, tlsContext(ns, "wants-theirs", issue, map[string]any{"secret": "theirs"}))
	h.waitEvent(t, ns, "wants-theirs", EventSecretConflict)
	if direct.gets.Load() == 0 {
		t.Errorf("a foreign Secret was refused without reading it")
	}
	signed := signer.n.Load()
	h.settle(t)
	h.settle(t)
	if n := signer.n.Load(); n != signed {
		t.Errorf("resyncs signed %d more certificates, want 0 (the foreign Secret is read first now)", n-signed)
	}
	got := &corev1.Secret{}
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(foreign), got); err != nil {
		t.Fatal(err)
	}
	if got.ResourceVersion != foreign.ResourceVersion || string(got.Data["tls.crt"]) != "not ours" || got.Labels[meta.LabelManagedBy] != "" {
		t.Errorf("foreign Secret was written: %v", got)
	}
}

// laggingCache is a cache that has not seen any Secret yet.
type laggingCache struct{ client.Client }

func (l laggingCache) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*corev1.Secret); ok {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, key.Name)
	}
	return l.Client.Get(ctx, key, obj, opts...)
}

// TestCacheLagKeepsManagedSecret: when the cache has not seen a managed
// Secret yet, the create meets it; keep then reads it directly and keeps
// the good certificate in it instead of replacing it.
func TestCacheLagKeepsManagedSecret(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	h := startHarness(t, harnessOptions{namespaces: []string{ns}})
	h.create(t, tlsContext(ns, "tc", issue, map[string]any{"secret": "tc-certs", "hosts": []any{"tc." + ns + ".svc"}}))
	before := h.waitSecret(t, ns, "tc-certs", nil)

	ctx := context.Background()
	src := &unstructured.Unstructured{}
	src.SetGroupVersionKind(TLSContextGVK)
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "tc"}, src); err != nil {
		t.Fatal(err)
	}
	w, err := parseGatewaySpec(src, "ambassador", "")
	if err != nil {
		t.Fatal(err)
	}
	signer := &countingIssuer{Issuer: h.issuer}
	k := &certKeeper{
		secrets:  &secretWriter{client: laggingCache{env.Client}, reader: env.Client, metrics: NewMetrics(nil)},
		issuer:   signer,
		recorder: h.rec.Recorder,
		metrics:  NewMetrics(nil),
		clock:    clock.RealClock{},
		// The Namespace's allowed suffixes, were it to issue.
		namespaces: env.Client,
		holders:    tlsContextHolders{reader: env.Client},
	}
	wish := certSpec{
		Source: src, SourceKey: sourceKey("TLSContext", ns, "tc"), Ref: *w.Secret,
		Profile: issuer.ProfileGateway, SPIFFEID: h.rec.spiffeID(ns, w.ServiceAccount), DNSNames: w.DNSNames,
	}
	trust, err := h.trust.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		kept, err := k.keep(ctx, wish, trust)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if kept.Issued || kept.Serial != before.Annotations[meta.AnnotationSerial] {
			t.Errorf("round %d: kept %+v, want the existing serial %s", round, kept, before.Annotations[meta.AnnotationSerial])
		}
	}
	// The first round signed before its create met the Secret; the second
	// read it first.
	if n := signer.n.Load(); n != 1 {
		t.Errorf("signed %d certificates, want 1", n)
	}
	after := &corev1.Secret{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(before), after); err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != before.ResourceVersion {
		t.Errorf("the Secret was rewritten (resourceVersion %s -> %s)", before.ResourceVersion, after.ResourceVersion)
	}
}

// TestNotOwnWrite: the watch event of meshca's own last write of a Secret
// is dropped; any other version, a deletion, a Secret never written and our
// write that took the Secret from another source pass.
func TestNotOwnWrite(t *testing.T) {
	t.Parallel()
	w := &secretWriter{}
	p := w.notOwnWrite()
	secret := func(name, rv string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, ResourceVersion: rv}}
	}
	held := func(s *corev1.Secret, source string) *corev1.Secret {
		s.Annotations = map[string]string{meta.AnnotationSource: source}
		return s
	}
	w.written.Store(secretRef{"ns", "a"}, lastWrite{resourceVersion: "7"})
	cases := map[string]struct {
		pass bool
		got  bool
	}{
		"create of our write":    {false, p.Create(event.CreateEvent{Object: secret("a", "7")})},
		"update to our write":    {false, p.Update(event.UpdateEvent{ObjectOld: secret("a", "6"), ObjectNew: secret("a", "7")})},
		"update by someone else": {true, p.Update(event.UpdateEvent{ObjectOld: secret("a", "7"), ObjectNew: secret("a", "8")})},
		"our write took it from another source": {true, p.Update(event.UpdateEvent{
			ObjectOld: held(secret("a", "6"), "TLSContext/ns/zeta"), ObjectNew: held(secret("a", "7"), "TLSContext/ns/alpha")})},
		"a Secret meshca never wrote": {true, p.Create(event.CreateEvent{Object: secret("b", "7")})},
		"initial list at start":       {true, (&secretWriter{}).notOwnWrite().Create(event.CreateEvent{Object: secret("a", "7"), IsInInitialList: true})},
	}
	for name, tc := range cases {
		if tc.got != tc.pass {
			t.Errorf("%s: passed %v, want %v", name, tc.got, tc.pass)
		}
	}
	if !p.Delete(event.DeleteEvent{Object: secret("a", "7")}) {
		t.Errorf("a deletion was dropped")
	}
	if !p.Create(event.CreateEvent{Object: secret("a", "7")}) {
		t.Errorf("after the deletion, a Secret of the same name and version was still taken for our write")
	}
}
