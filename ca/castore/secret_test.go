package castore_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/ca/castore"
	"github.com/meshca/meshca/internal/testenv"
	"github.com/meshca/meshca/rotator"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The CA rotator keeps the CA in a Secret through its own interface.
var _ rotator.CAStore = castore.Secret{}

var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// newCA is a fresh default CA for tests that do not care about its shape.
func newCA(t testing.TB) *ca.CA {
	t.Helper()
	c, err := ca.New(ca.Config{Clock: clocktesting.NewFakePassiveClock(time.Now())})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// countingClock counts calls to Now, so a test can tell how many starters
// generated a CA.
type countingClock struct {
	clock.PassiveClock
	n atomic.Int64
}

func (c *countingClock) Now() time.Time { c.n.Add(1); return c.PassiveClock.Now() }

// TestLoadOrCreateConcurrentReplicas starts several replicas at once, each
// with its own client as separate pods would have, against the real API
// server: all must end with the same CA and exactly one Secret must exist.
func TestLoadOrCreateConcurrentReplicas(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const replicas = 6
	// RSA key generation is slow enough that every replica has read "no
	// Secret" before the first one creates it, so the race is real.
	clk := &countingClock{PassiveClock: clock.RealClock{}}
	cfg := ca.Config{KeyAlgorithm: ca.RSA2048, Clock: clk}
	start := make(chan struct{})
	fps := make([]string, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		cs, err := kubernetes.NewForConfig(env.Config)
		if err != nil {
			t.Fatal(err)
		}
		store := castore.Secret{Client: cs, Namespace: ns}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			st, err := store.LoadOrCreate(ctx, cfg)
			if err != nil {
				errs[i] = err
				return
			}
			fps[i] = st.Current.Fingerprint()
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	for i, fp := range fps {
		if fp != fps[0] {
			t.Errorf("replica %d has CA %s, replica 0 has %s", i, fp, fps[0])
		}
	}
	if generated := clk.n.Load() / 2; generated < 2 {
		t.Errorf("only %d replica(s) generated a CA: the race was not exercised", generated)
	} else {
		t.Logf("%d replicas generated a CA, one was stored", generated)
	}
	list, err := env.Clientset.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Name != ca.DefaultSecretName {
		t.Fatalf("%d Secrets in the namespace, want exactly %s", len(list.Items), ca.DefaultSecretName)
	}
	st, err := ca.StateFromSecretData(list.Items[0].Data)
	if err != nil || st.Current.Fingerprint() != fps[0] {
		t.Fatalf("stored CA %v, %v; want %s", st, err, fps[0])
	}
	if list.Items[0].Labels["app.kubernetes.io/managed-by"] != "meshca" {
		t.Errorf("CA Secret lacks the managed-by label")
	}
}

func TestSecretLoadNotFound(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	store := castore.Secret{Client: env.Clientset, Namespace: env.Namespace(t)}
	_, err := store.Load(context.Background())
	if !errors.Is(err, ca.ErrNotFound) {
		t.Fatalf("Load = %v, want ErrNotFound", err)
	}
}

// TestLoadOrCreateNeverReplaces proves an unusable CA Secret is an error
// with a clear message and stays as it was.
func TestLoadOrCreateNeverReplaces(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	good, err := ca.NewState(newCA(t), "generated", epoch).SecretData()
	if err != nil {
		t.Fatal(err)
	}
	other := newCA(t)
	otherKey, err := ca.MarshalPrivateKeyPEM(other.IntermediateKey)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		data map[string][]byte
		want string
	}{
		"garbage":      {map[string][]byte{"current.root.crt": []byte("garbage")}, "current CA"},
		"empty":        {map[string][]byte{}, "no current CA"},
		"key mismatch": {replaced(good, "current.intermediate.key", otherKey), "signing key does not match"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			ns := env.Namespace(t)
			sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: ca.DefaultSecretName, Namespace: ns}, Data: tc.data}
			created, err := env.Clientset.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			store := castore.Secret{Client: env.Clientset, Namespace: ns}
			_, err = store.LoadOrCreate(ctx, ca.Config{})
			if !errors.Is(err, ca.ErrInvalidCA) {
				t.Fatalf("LoadOrCreate = %v, want ErrInvalidCA", err)
			}
			for _, want := range []string{"secret " + ns + "/meshca-ca", "never replaces", tc.want} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			now, err := env.Clientset.CoreV1().Secrets(ns).Get(ctx, ca.DefaultSecretName, metav1.GetOptions{})
			if err != nil || now.ResourceVersion != created.ResourceVersion {
				t.Errorf("Secret changed: %v", err)
			}
		})
	}
}

func replaced(data map[string][]byte, k string, v []byte) map[string][]byte {
	out := map[string][]byte{}
	for kk, vv := range data {
		out[kk] = vv
	}
	out[k] = v
	return out
}

// TestSecretSave proves updates carry the resourceVersion they read,
// and that the next slot and state record persist.
func TestSecretSave(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ctx := context.Background()
	store := castore.Secret{Client: env.Clientset, Namespace: env.Namespace(t)}
	st, err := store.LoadOrCreate(ctx, ca.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if st.ResourceVersion == "" {
		t.Fatal("created state has no resourceVersion")
	}
	if _, err := store.Save(ctx, &ca.State{Current: st.Current}); !errors.Is(err, ca.ErrAlreadyExists) {
		t.Fatalf("Save without resourceVersion = %v, want ErrAlreadyExists", err)
	}
	next := newCA(t)
	upd := *st
	upd.Next = next
	upd.Record.Next = &ca.SlotRecord{Fingerprint: next.Fingerprint(), Source: "generated", CreatedAt: epoch}
	saved, err := store.Save(ctx, &upd)
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	if _, err := store.Save(ctx, &upd); !errors.Is(err, ca.ErrConflict) {
		t.Fatalf("Save with a stale resourceVersion = %v, want ErrConflict", err)
	}
	got, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.ResourceVersion != saved.ResourceVersion || got.Next == nil || got.Next.Fingerprint() != next.Fingerprint() ||
		!got.Record.Next.CreatedAt.Equal(epoch) {
		t.Fatalf("next slot did not persist: %+v", got.Record)
	}
	if roots := got.Roots(); len(roots) != 2 {
		t.Errorf("bundle has %d roots, want current and next", len(roots))
	}
}

// TestLoadRefusesNewerFormat is a downgrade: the CA Secret was written by a
// newer meshca (state.json of a format version this binary does not know,
// maybe with keys it has never heard of). Load and LoadOrCreate refuse it
// with an error that says so and does not advise deleting the Secret, and
// the Secret is left exactly as it was: no replacement CA, no rewrite.
func TestLoadRefusesNewerFormat(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	good, err := ca.NewState(newCA(t), "generated", epoch).SecretData()
	if err != nil {
		t.Fatal(err)
	}
	newer := fmt.Sprintf(`{"version":%d,"current":{"fingerprint":"not-read"},"slots":["a","b"]}`, ca.StateRecordVersion+1)
	cases := map[string]map[string][]byte{
		// Today's layout with a newer state record.
		"same keys": replaced(good, ca.KeyState, []byte(newer)),
		// A newer layout whose CA keys this binary would not find: refused
		// as a newer format, not as a Secret without a CA.
		"other keys": {ca.KeyState: []byte(newer), "slot-a.root.crt": good["current.root.crt"]},
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			ns := env.Namespace(t)
			sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: ca.DefaultSecretName, Namespace: ns}, Data: data}
			created, err := env.Clientset.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			store := castore.Secret{Client: env.Clientset, Namespace: ns}
			_, loadErr := store.Load(ctx)
			_, createErr := store.LoadOrCreate(ctx, ca.Config{})
			for what, err := range map[string]error{"Load": loadErr, "LoadOrCreate": createErr} {
				if !errors.Is(err, ca.ErrNewerFormat) {
					t.Fatalf("%s = %v, want ErrNewerFormat", what, err)
				}
				msg := err.Error()
				for _, want := range []string{
					"secret " + ns + "/meshca-ca",
					fmt.Sprintf("format version %d and this meshca reads versions up to %d", ca.StateRecordVersion+1, ca.StateRecordVersion),
					"run the meshca that wrote it or a newer one",
					"do not delete the Secret",
				} {
					if !strings.Contains(msg, want) {
						t.Errorf("%s error %q does not say %q", what, msg, want)
					}
				}
				if strings.Contains(msg, "fix or delete") {
					t.Errorf("%s error advises deleting a sound CA Secret: %q", what, msg)
				}
			}
			now, err := env.Clientset.CoreV1().Secrets(ns).Get(ctx, ca.DefaultSecretName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if now.ResourceVersion != created.ResourceVersion || !reflect.DeepEqual(now.Data, data) {
				t.Error("the CA Secret of a newer meshca was changed")
			}
		})
	}
}
