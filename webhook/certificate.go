package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
)

// ErrNoCertificate is returned by GetCertificate before a certificate has
// been loaded.
var ErrNoCertificate = errors.New("webhook: no serving certificate loaded yet")

var (
	_ CertificateSource = (*SecretCertificate)(nil)
	_ CertificateSource = (*FileCertificate)(nil)
)

// keyPair holds the current certificate and swaps it atomically.
type keyPair struct {
	cert   atomic.Pointer[tls.Certificate]
	mu     sync.Mutex // serialises load
	sum    [sha256.Size]byte
	loaded chan struct{}
	once   sync.Once
}

func newKeyPair() *keyPair { return &keyPair{loaded: make(chan struct{})} }

func (k *keyPair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := k.cert.Load(); c != nil {
		return c, nil
	}
	return nil, ErrNoCertificate
}

// load parses and installs a PEM key pair unless it is the one already
// served. It reports whether the served certificate changed. A pair that does
// not parse leaves the current one in place.
func (k *keyPair) load(certPEM, keyPEM []byte) (bool, error) {
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cert.Load() != nil && bytes.Equal(sum[:], k.sum[:]) {
		return false, nil
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// tls's errors name neither the key nor its bytes.
		return false, fmt.Errorf("parse key pair: %w", err)
	}
	k.cert.Store(&pair)
	k.sum = sum
	k.once.Do(func() { close(k.loaded) })
	return true, nil
}

// SecretCertificateConfig configures a SecretCertificate.
type SecretCertificateConfig struct {
	// Client lists and watches the Secret (RBAC: list and watch on Secrets
	// in Namespace). Required.
	Client kubernetes.Interface
	// Namespace and Name name the kubernetes.io/tls Secret (keys tls.crt and
	// tls.key) that holds the serving certificate. Required.
	Namespace, Name string
	// ResyncPeriod re-reads the cached Secret periodically. Zero means 10m.
	ResyncPeriod time.Duration
	// Logger reports reloads and unusable Secrets. The zero Logger discards.
	Logger logr.Logger
}

// SecretCertificate serves the key pair of one Secret and swaps it as soon
// as a watch sees the Secret's data change. Whoever issues the certificate
// writes the Secret; this type only reads it.
type SecretCertificate struct {
	cfg SecretCertificateConfig
	kp  *keyPair
}

// NewSecretCertificate checks cfg. Nothing is read until Start.
func NewSecretCertificate(cfg SecretCertificateConfig) (*SecretCertificate, error) {
	if cfg.Client == nil || cfg.Namespace == "" || cfg.Name == "" {
		return nil, errors.New("webhook: SecretCertificateConfig needs Client, Namespace and Name")
	}
	setDefault(&cfg.ResyncPeriod, 10*time.Minute)
	return &SecretCertificate{cfg: cfg, kp: newKeyPair()}, nil
}

// Loaded is closed once a certificate has been loaded.
func (c *SecretCertificate) Loaded() <-chan struct{} { return c.kp.loaded }

// GetCertificate returns the last good certificate, or ErrNoCertificate
// before the Secret was first read.
func (c *SecretCertificate) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.kp.GetCertificate(hello)
}

// Start watches the Secret until ctx is done. A deleted or unparsable Secret
// leaves the last good certificate in place.
func (c *SecretCertificate) Start(ctx context.Context) error {
	log := c.cfg.Logger.WithValues("secret", c.cfg.Namespace+"/"+c.cfg.Name)
	factory := informers.NewSharedInformerFactoryWithOptions(c.cfg.Client, c.cfg.ResyncPeriod,
		informers.WithNamespace(c.cfg.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", c.cfg.Name).String()
		}))
	update := func(obj any) {
		s, ok := obj.(*corev1.Secret)
		if !ok {
			return
		}
		changed, err := c.kp.load(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
		switch {
		case err != nil:
			log.Error(err, "serving certificate Secret unusable; keeping the current certificate", "type", s.Type)
		case changed:
			log.Info("serving certificate loaded", "resourceVersion", s.ResourceVersion)
		}
	}
	if _, err := factory.Core().V1().Secrets().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    update,
		UpdateFunc: func(_, obj any) { update(obj) },
		DeleteFunc: func(any) { log.Info("serving certificate Secret deleted; keeping the current certificate") },
	}); err != nil {
		return fmt.Errorf("webhook: watch Secret %s/%s: %w", c.cfg.Namespace, c.cfg.Name, err)
	}
	factory.Start(ctx.Done())
	<-ctx.Done()
	factory.Shutdown()
	return nil
}

// FileCertificateConfig configures a FileCertificate.
type FileCertificateConfig struct {
	// CertFile and KeyFile are PEM files: the certificate chain and its
	// private key. Required.
	CertFile, KeyFile string
	// Interval is how often the files are re-read. Zero means 10s.
	Interval time.Duration
	// Clock drives the re-reads. Nil means the real clock.
	Clock clock.WithTicker
	// Logger reports reloads and unreadable files. The zero Logger discards.
	Logger logr.Logger
}

// FileCertificate serves a key pair from two files and re-reads them on an
// interval, for runs outside a cluster. Polling (not inotify) also sees
// files behind the symlink swaps of Secret volumes.
type FileCertificate struct {
	cfg FileCertificateConfig
	kp  *keyPair
}

// NewFileCertificate loads the files once; it fails if they are not a valid
// key pair.
func NewFileCertificate(cfg FileCertificateConfig) (*FileCertificate, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("webhook: FileCertificateConfig needs CertFile and KeyFile")
	}
	setDefault(&cfg.Interval, 10*time.Second)
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	f := &FileCertificate{cfg: cfg, kp: newKeyPair()}
	if _, err := f.reload(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *FileCertificate) reload() (bool, error) {
	certPEM, err := os.ReadFile(f.cfg.CertFile)
	if err != nil {
		return false, fmt.Errorf("webhook: read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(f.cfg.KeyFile)
	if err != nil {
		return false, fmt.Errorf("webhook: read key: %w", err)
	}
	changed, err := f.kp.load(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("webhook: %s and %s: %w", f.cfg.CertFile, f.cfg.KeyFile, err)
	}
	return changed, nil
}

// GetCertificate returns the last good certificate.
func (f *FileCertificate) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.kp.GetCertificate(hello)
}

// Start re-reads the files every Interval until ctx is done. Files that
// cannot be read or do not match leave the current certificate in place (a
// writer may be between the two files).
func (f *FileCertificate) Start(ctx context.Context) error {
	t := f.cfg.Clock.NewTicker(f.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
		changed, err := f.reload()
		switch {
		case err != nil:
			f.cfg.Logger.Error(err, "serving certificate files unusable; keeping the current certificate")
		case changed:
			f.cfg.Logger.Info("serving certificate reloaded", "certFile", f.cfg.CertFile)
		}
	}
}
