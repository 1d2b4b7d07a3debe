package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// readyWatch watches the Secrets of one namespace and records, per Secret
// name, when it first held a valid certificate: a key pair that matches, a
// leaf within its validity and (when want is set) a serial other than the
// one in want, so a renewal counts only once the new certificate is written.
type readyWatch struct {
	mu     sync.Mutex
	first  map[string]time.Time
	serial map[string]string
	old    map[string]string // name -> serial that does not count
	need   int
	all    chan struct{}
	closed bool
}

func newReadyWatch(ctx context.Context, cs kubernetes.Interface, ns string, need int, old map[string]string) (*readyWatch, error) {
	w := &readyWatch{first: map[string]time.Time{}, serial: map[string]string{}, old: old, need: need, all: make(chan struct{})}
	list, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range list.Items {
		w.see(&list.Items[i], time.Now())
	}
	go w.run(ctx, cs, ns, list.ResourceVersion)
	return w, nil
}

func (w *readyWatch) run(ctx context.Context, cs kubernetes.Interface, ns, rv string) {
	for ctx.Err() == nil {
		wi, err := cs.CoreV1().Secrets(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		for ev := range wi.ResultChan() {
			s, ok := ev.Object.(*corev1.Secret)
			if !ok {
				continue
			}
			rv = s.ResourceVersion
			if ev.Type == watch.Added || ev.Type == watch.Modified {
				w.see(s, time.Now())
			}
		}
		wi.Stop()
	}
}

func (w *readyWatch) see(s *corev1.Secret, at time.Time) {
	if !strings.HasSuffix(s.Name, "-tls") { // the harness names every measured Secret so
		return
	}
	w.mu.Lock()
	if _, done := w.first[s.Name]; done {
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	serial, ok := validTLS(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey], at)
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.serial[s.Name] = serial
	if w.old != nil && w.old[s.Name] == serial {
		return
	}
	if _, done := w.first[s.Name]; done {
		return
	}
	w.first[s.Name] = at
	if len(w.first) >= w.need && !w.closed {
		w.closed = true
		close(w.all)
	}
}

func (w *readyWatch) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.first)
}

// wait blocks until need Secrets are ready or timeout passes.
func (w *readyWatch) wait(ctx context.Context, timeout time.Duration) error {
	select {
	case <-w.all:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%d of %d Secrets ready after %s", w.count(), w.need, timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *readyWatch) snapshot() (map[string]time.Time, map[string]string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f := make(map[string]time.Time, len(w.first))
	s := make(map[string]string, len(w.serial))
	for k, v := range w.first {
		f[k] = v
	}
	for k, v := range w.serial {
		s[k] = v
	}
	return f, s
}

// validTLS returns the leaf's serial if certPEM and keyPEM form a usable
// key pair whose leaf is valid at now.
func validTLS(certPEM, keyPEM []byte, now time.Time) (string, bool) {
	if len(certPEM) == 0 || len(keyPEM) == 0 {
		return "", false
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return "", false
	}
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return "", false
	}
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil || now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return "", false
	}
	return leaf.SerialNumber.Text(16), true
}
