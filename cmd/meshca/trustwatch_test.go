package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/meta"
	"github.com/meshca/meshca/internal/testenv"
)

// trustWatch records every version of the Secrets and ConfigMaps of some
// namespaces that the API server commits, with the local time each
// arrived. etcd numbers every write of the cluster with one revision (the
// resourceVersion), so sorting the versions of all the watches by it puts
// them in commit order: replaying them rebuilds what the cluster held after
// each write, across kinds and namespaces.
type trustWatch struct {
	mu       sync.Mutex
	versions []objectVersion
	errs     []error
	stop     func()
}

// objectVersion is one committed version of a Secret or ConfigMap (obj is
// nil for a deletion).
type objectVersion struct {
	rv      uint64
	at      time.Time
	deleted bool
	secret  *corev1.Secret
	cm      *corev1.ConfigMap
}

func (v objectVersion) key() string {
	if v.secret != nil {
		return "Secret " + v.secret.Namespace + "/" + v.secret.Name
	}
	return "ConfigMap " + v.cm.Namespace + "/" + v.cm.Name
}

// watchTrust starts recording the Secrets and ConfigMaps of namespaces; the
// recording ends with stopAndCheck or the test.
func watchTrust(t *testing.T, env *testenv.Env, namespaces ...string) *trustWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &trustWatch{}
	var wg sync.WaitGroup
	for _, ns := range namespaces {
		secrets, cms := env.Clientset.CoreV1().Secrets(ns), env.Clientset.CoreV1().ConfigMaps(ns)
		for _, k := range []struct {
			list  func(context.Context, metav1.ListOptions) (runtime.Object, error)
			watch func(context.Context, metav1.ListOptions) (watch.Interface, error)
		}{
			{
				func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return secrets.List(ctx, o) },
				secrets.Watch,
			},
			{
				func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return cms.List(ctx, o) },
				cms.Watch,
			},
		} {
			list, err := k.list(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var rv string
			switch l := list.(type) {
			case *corev1.SecretList:
				rv = l.ResourceVersion
				for i := range l.Items {
					w.record(watch.Added, &l.Items[i])
				}
			case *corev1.ConfigMapList:
				rv = l.ResourceVersion
				for i := range l.Items {
					w.record(watch.Added, &l.Items[i])
				}
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.follow(ctx, k.watch, rv)
			}()
		}
	}
	w.stop = func() {
		cancel()
		wg.Wait()
	}
	t.Cleanup(w.stop)
	return w
}

// follow watches from rv until ctx ends, watching again from the last
// version seen when the API server closes the watch.
func (w *trustWatch) follow(ctx context.Context, start func(context.Context, metav1.ListOptions) (watch.Interface, error), rv string) {
	for ctx.Err() == nil {
		wi, err := start(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			if ctx.Err() == nil {
				w.fail(fmt.Errorf("watch from %s: %w", rv, err))
			}
			return
		}
		for ev := range wi.ResultChan() {
			if ev.Type == watch.Error {
				if ctx.Err() == nil {
					w.fail(fmt.Errorf("watch from %s: %v", rv, ev.Object))
				}
				wi.Stop()
				return
			}
			if o, ok := ev.Object.(metav1.Object); ok {
				rv = o.GetResourceVersion()
			}
			if ev.Type != watch.Bookmark {
				w.record(ev.Type, ev.Object)
			}
		}
		wi.Stop()
	}
}

func (w *trustWatch) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errs = append(w.errs, err)
}

func (w *trustWatch) record(typ watch.EventType, obj runtime.Object) {
	v := objectVersion{at: time.Now(), deleted: typ == watch.Deleted}
	var rv string
	switch o := obj.(type) {
	case *corev1.Secret:
		v.secret, rv = o, o.ResourceVersion
	case *corev1.ConfigMap:
		v.cm, rv = o, o.ResourceVersion
	default:
		return
	}
	n, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		w.fail(fmt.Errorf("%s: resourceVersion %q is not etcd's revision: %w", v.key(), rv, err))
		return
	}
	v.rv = n
	w.mu.Lock()
	defer w.mu.Unlock()
	w.versions = append(w.versions, v)
}

// trustReplay is the outcome of replaying the recorded versions.
type trustReplay struct {
	// violations: a bundle ConfigMap that does not verify a live managed
	// certificate at the same revision, or a managed Secret that is not
	// whole (key, certificate and its own ca.crt).
	violations []string
	// rootSets is, per bundle holder (ConfigMap, or Secret ca.crt), the
	// distinct root sets it held in order, each a sorted list of root names.
	rootSets map[string][][]string
	// caSlots is every distinct set of slot fingerprints the CA Secret held,
	// in order, as "current=<fp> next=<fp> previous=<fp>".
	caSlots []string
	// caStates are the CA Secret's versions, parsed, in order.
	caStates []caVersion
	// leaves are the certificates of every managed Secret version.
	leaves []leafVersion
	// counts of versions replayed.
	bundleVersions, certVersions int
}

type caVersion struct {
	at time.Time
	st *ca.State
}

type leafVersion struct {
	rv     uint64
	key    string
	leaf   *x509.Certificate
	issuer string // fingerprint of the signing certificate
}

// outliving returns the leaves signed by a CA that was retired and that
// expire after the prune time recorded for it: they would lose their root
// while still valid. (A retired CA must sign nothing; the prune time is
// one leaf lifetime after retirement.)
func (r trustReplay) outliving() []string {
	pruneAt := map[string]time.Time{}
	for _, v := range r.caStates {
		if p, rec := v.st.Get(ca.SlotPrevious), v.st.SlotRecord(ca.SlotPrevious); p != nil && rec != nil && rec.PruneAt != nil {
			pruneAt[p.Fingerprint()] = *rec.PruneAt
		}
	}
	var out []string
	for _, l := range r.leaves {
		if p, ok := pruneAt[l.issuer]; ok && l.leaf.NotAfter.After(p) {
			out = append(out, fmt.Sprintf("rv %d: %s (serial %x) signed by %s, valid until %s, after that CA's prune at %s",
				l.rv, l.key, l.leaf.SerialNumber, l.issuer[:12], l.leaf.NotAfter.Format(time.RFC3339), p.Format(time.RFC3339)))
		}
	}
	return out
}

// stopAndCheck ends the recording and replays it. names maps root
// fingerprints (rootName) to short names for the report; unknown roots are
// named by fingerprint.
func (w *trustWatch) stopAndCheck(t *testing.T, names map[string]string) trustReplay {
	t.Helper()
	w.stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, err := range w.errs {
		t.Errorf("trust watch: %v", err)
	}
	versions := slices.Clone(w.versions)
	sort.SliceStable(versions, func(i, j int) bool { return versions[i].rv < versions[j].rv })

	type liveCert struct {
		leaf  *x509.Certificate
		chain *x509.CertPool
	}
	certs := map[string]liveCert{}
	bundles := map[string]*x509.CertPool{}
	r := trustReplay{rootSets: map[string][][]string{}}
	seen := map[string]uint64{} // key -> last rv replayed (the list and the watch may both hold one)
	violate := func(v objectVersion, format string, args ...any) {
		if len(r.violations) < 20 {
			r.violations = append(r.violations, fmt.Sprintf("rv %d (%s): ", v.rv, v.at.Format("15:04:05.000"))+fmt.Sprintf(format, args...))
		}
	}
	roots := func(key string, pemData []byte) (*x509.CertPool, error) {
		rs, err := ca.ParseCertificatesPEM(pemData)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		var set []string
		for _, c := range rs {
			pool.AddCert(c)
			n := names[rootName(c)]
			if n == "" {
				n = rootName(c)[:12]
			}
			set = append(set, n)
		}
		sort.Strings(set)
		set = slices.Compact(set)
		if sets := r.rootSets[key]; len(sets) == 0 || !slices.Equal(sets[len(sets)-1], set) {
			r.rootSets[key] = append(sets, set)
		}
		return pool, nil
	}
	verifies := func(c liveCert, pool *x509.CertPool, at time.Time) error {
		if at.Before(c.leaf.NotBefore) {
			at = c.leaf.NotBefore
		}
		_, err := c.leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: c.chain, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		return err
	}
	for _, v := range versions {
		key := v.key()
		if last, ok := seen[key]; ok && v.rv <= last {
			continue
		}
		seen[key] = v.rv
		switch {
		case v.cm != nil && v.cm.Name == meta.TrustBundleConfigMap:
			if v.deleted {
				delete(bundles, key)
				continue
			}
			r.bundleVersions++
			pool, err := roots(key, []byte(v.cm.Data["ca.crt"]))
			if err != nil {
				violate(v, "%s: ca.crt: %v", key, err)
				delete(bundles, key)
				continue
			}
			bundles[key] = pool
			for ck, c := range certs {
				if !c.leaf.NotAfter.After(v.at) {
					continue // expired: no longer live
				}
				if err := verifies(c, pool, v.at); err != nil {
					violate(v, "%s no longer verifies %s (serial %x): %v", key, ck, c.leaf.SerialNumber, err)
				}
			}
		case v.secret != nil && v.secret.Name == ca.DefaultSecretName:
			if v.deleted {
				violate(v, "CA Secret deleted")
				continue
			}
			st, err := ca.StateFromSecretData(v.secret.Data)
			if err != nil {
				violate(v, "CA Secret unreadable: %v", err)
				continue
			}
			r.caStates = append(r.caStates, caVersion{at: v.at, st: st})
			var slots []string
			for _, s := range ca.Slots {
				if c := st.Get(s); c != nil {
					slots = append(slots, string(s)+"="+c.Fingerprint())
				}
			}
			if s := strings.Join(slots, " "); len(r.caSlots) == 0 || r.caSlots[len(r.caSlots)-1] != s {
				r.caSlots = append(r.caSlots, s)
			}
		case v.secret != nil:
			if v.deleted || v.secret.Labels[meta.LabelManagedBy] != meta.ManagedByValue {
				delete(certs, key)
				continue
			}
			if _, err := roots(key+" ca.crt", v.secret.Data["ca.crt"]); err != nil {
				violate(v, "%s: ca.crt: %v", key, err)
			}
			if v.secret.Type != corev1.SecretTypeTLS {
				delete(certs, key)
				continue
			}
			r.certVersions++
			leaf, err := checkTLSSecretAt(v.secret, v.at)
			if err != nil {
				violate(v, "%s is not whole: %v", key, err)
				delete(certs, key)
				continue
			}
			chain := x509.NewCertPool()
			all, _ := ca.ParseCertificatesPEM(v.secret.Data["tls.crt"])
			for _, c := range all[1:] {
				chain.AddCert(c)
			}
			if len(all) > 1 {
				r.leaves = append(r.leaves, leafVersion{rv: v.rv, key: key, leaf: leaf, issuer: ca.Fingerprint(all[1])})
			}
			c := liveCert{leaf: leaf, chain: chain}
			certs[key] = c
			for bk, pool := range bundles {
				if err := verifies(c, pool, v.at); err != nil {
					violate(v, "%s (serial %x, issuer %s) written while %s does not verify it: %v", key, leaf.SerialNumber, v.secret.Annotations[meta.AnnotationIssuer], bk, err)
				}
			}
		}
	}
	return r
}

// rootName is a root's SHA-256 fingerprint, hex.
func rootName(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
