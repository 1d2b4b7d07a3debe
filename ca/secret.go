package ca

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// DefaultSecretName is the name of the CA Secret in the daemon's namespace.
const DefaultSecretName = "meshca-ca"

// Keys of the CA Secret; see doc.go for the layout. Per slot:
// "<slot>.root.crt", "<slot>.root.key", "<slot>.intermediate.crt",
// "<slot>.intermediate.key".
const (
	KeyState  = "state.json"
	KeyBundle = "ca.crt"

	suffixRootCert         = ".root.crt"
	suffixRootKey          = ".root.key"
	suffixIntermediateCert = ".intermediate.crt"
	suffixIntermediateKey  = ".intermediate.key"
)

// SlotKeys returns the four Secret keys of a slot: root certificate, root
// key, intermediate chain and intermediate key.
func SlotKeys(slot Slot) (rootCrt, rootKey, intCrt, intKey string) {
	p := string(slot)
	return p + suffixRootCert, p + suffixRootKey, p + suffixIntermediateCert, p + suffixIntermediateKey
}

var (
	// ErrNotFound means there is no CA where one was looked for.
	ErrNotFound = errors.New("CA not found")
	// ErrAlreadyExists means a CA is already stored where one was to be created.
	ErrAlreadyExists = errors.New("CA already exists")
	// ErrConflict means the stored CA changed since it was read.
	ErrConflict = errors.New("CA changed since it was read")
)

// SecretStore keeps a State in one Kubernetes Secret.
type SecretStore struct {
	// Client talks to the API server.
	Client kubernetes.Interface
	// Namespace is the daemon's namespace.
	Namespace string
	// Name of the Secret; "" means meshca-ca.
	Name string
}

func (s SecretStore) name() string {
	if s.Name == "" {
		return DefaultSecretName
	}
	return s.Name
}

func (s SecretStore) String() string { return "secret " + s.Namespace + "/" + s.name() }

// Load reads the State. It returns an error wrapping ErrNotFound when the
// Secret does not exist, and one wrapping ErrInvalidCA when it exists but
// cannot be used.
func (s SecretStore) Load(ctx context.Context) (*State, error) {
	sec, err := s.Client.CoreV1().Secrets(s.Namespace).Get(ctx, s.name(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("load CA from %s: %w", s, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load CA from %s: %w", s, err)
	}
	st, err := StateFromSecretData(sec.Data)
	if err != nil {
		return nil, fmt.Errorf("load CA from %s (meshca never replaces an existing CA; fix or delete the Secret): %w", s, err)
	}
	st.ResourceVersion = sec.ResourceVersion
	return st, nil
}

// LoadOrCreate loads the State, or creates a new CA from cfg when there is
// none. When several callers race, the API server accepts exactly one Create
// and the others load the winner's CA, so all of them return the same CA.
// A Secret that exists but cannot be used is an error, never replaced.
func (s SecretStore) LoadOrCreate(ctx context.Context, cfg Config) (*State, error) {
	st, err := s.Load(ctx)
	if err == nil || !errors.Is(err, ErrNotFound) {
		return st, err
	}
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	cfg, _ = cfg.withDefaults()
	st, err = s.Save(ctx, NewState(c, SourceGenerated, cfg.Clock.Now()))
	if errors.Is(err, ErrAlreadyExists) {
		return s.Load(ctx)
	}
	return st, err
}

// Save stores st. A state without ResourceVersion is created and fails with
// ErrAlreadyExists if a Secret is there; otherwise the Secret is updated only
// if it still has st.ResourceVersion (else ErrConflict). It returns a copy of
// st with the new ResourceVersion.
func (s SecretStore) Save(ctx context.Context, st *State) (*State, error) {
	data, err := st.SecretData()
	if err != nil {
		return nil, fmt.Errorf("save CA to %s: %w", s, err)
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:            s.name(),
			Namespace:       s.Namespace,
			ResourceVersion: st.ResourceVersion,
			Labels: map[string]string{
				"app.kubernetes.io/managed-by": "meshca",
				"app.kubernetes.io/component":  "ca",
			},
		},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}
	secrets := s.Client.CoreV1().Secrets(s.Namespace)
	var out *corev1.Secret
	if st.ResourceVersion == "" {
		out, err = secrets.Create(ctx, sec, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("save CA to %s: %w", s, ErrAlreadyExists)
		}
	} else {
		out, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			return nil, fmt.Errorf("save CA to %s: %w: %w", s, ErrConflict, err)
		}
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("save CA to %s: %w", s, ErrNotFound)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("save CA to %s: %w", s, err)
	}
	cp := *st
	cp.ResourceVersion = out.ResourceVersion
	return &cp, nil
}

// SecretData encodes the state in the CA Secret layout.
func (s *State) SecretData() (map[string][]byte, error) {
	if s.Current == nil {
		return nil, errors.New("state has no current CA")
	}
	data := map[string][]byte{}
	rec := s.Record
	rec.Version = StateRecordVersion
	for _, slot := range Slots {
		c := s.Get(slot)
		r := rec.slot(slot)
		if c == nil {
			rec.setSlot(slot, nil)
			continue
		}
		rootCrt, rootKey, intCrt, intKey := SlotKeys(slot)
		data[rootCrt] = EncodeCertificatesPEM(c.Root)
		if len(c.Chain) == 0 {
			data[intCrt] = EncodeCertificatesPEM(c.Intermediate)
		} else {
			data[intCrt] = EncodeCertificatesPEM(c.Chain...)
		}
		k, err := MarshalPrivateKeyPEM(c.IntermediateKey)
		if err != nil {
			return nil, fmt.Errorf("%s intermediate: %w", slot, err)
		}
		data[intKey] = k
		if c.RootKey != nil {
			if data[rootKey], err = MarshalPrivateKeyPEM(c.RootKey); err != nil {
				return nil, fmt.Errorf("%s root: %w", slot, err)
			}
		}
		if r == nil {
			r = &SlotRecord{}
		} else {
			cp := *r
			r = &cp
		}
		r.Fingerprint = c.Fingerprint()
		rec.setSlot(slot, r)
	}
	js, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", KeyState, err)
	}
	data[KeyState] = append(js, '\n')
	data[KeyBundle] = s.Bundle()
	return data, nil
}

func (r *StateRecord) slot(slot Slot) *SlotRecord {
	if f := slotField(slot, &r.Current, &r.Next, &r.Previous); f != nil {
		return *f
	}
	return nil
}

func (r *StateRecord) setSlot(slot Slot, v *SlotRecord) {
	if f := slotField(slot, &r.Current, &r.Next, &r.Previous); f != nil {
		*f = v
	}
}

// StateFromSecretData decodes the CA Secret layout. Errors wrap ErrInvalidCA
// and name the offending key; they never include key material.
func StateFromSecretData(data map[string][]byte) (*State, error) {
	st := &State{}
	for _, slot := range Slots {
		c, err := slotFromData(data, slot)
		if err != nil {
			return nil, err
		}
		st.set(slot, c)
	}
	if st.Current == nil {
		var keys []string
		for k := range data {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return nil, fmt.Errorf("%w: no current CA (keys present: %s)", ErrInvalidCA, strings.Join(keys, ", "))
	}
	if js, ok := data[KeyState]; ok {
		if err := json.Unmarshal(js, &st.Record); err != nil {
			return nil, fmt.Errorf("%w: key %s: %w", ErrInvalidCA, KeyState, err)
		}
		if st.Record.Version > StateRecordVersion {
			return nil, fmt.Errorf("%w: key %s has version %d, this meshca understands up to %d", ErrInvalidCA, KeyState, st.Record.Version, StateRecordVersion)
		}
	}
	st.Record.Version = StateRecordVersion
	for _, slot := range Slots {
		c, r := st.Get(slot), st.Record.slot(slot)
		switch {
		case c == nil && r != nil:
			return nil, fmt.Errorf("%w: key %s records a %s CA that the Secret does not hold", ErrInvalidCA, KeyState, slot)
		case c != nil && r == nil:
			st.Record.setSlot(slot, &SlotRecord{Fingerprint: c.Fingerprint()})
		case c != nil && r.Fingerprint != c.Fingerprint():
			return nil, fmt.Errorf("%w: key %s records %s CA %s but the Secret holds %s", ErrInvalidCA, KeyState, slot, r.Fingerprint, c.Fingerprint())
		}
	}
	return st, nil
}

func slotFromData(data map[string][]byte, slot Slot) (*CA, error) {
	rootCrt, rootKey, intCrt, intKey := SlotKeys(slot)
	c, err := caFromKeys(data, rootCrt, rootKey, intCrt, intKey)
	if err != nil {
		return nil, fmt.Errorf("%s CA: %w", slot, err)
	}
	return c, nil
}

// caFromKeys parses a CA from four entries of data (Secret keys or file
// names); it returns nil, nil when none is present. Errors name the entry.
func caFromKeys(data map[string][]byte, rootCrt, rootKey, intCrt, intKey string) (*CA, error) {
	present := 0
	for _, k := range []string{rootCrt, rootKey, intCrt, intKey} {
		if _, ok := data[k]; ok {
			present++
		}
	}
	if present == 0 {
		return nil, nil
	}
	for _, k := range []string{rootCrt, intCrt, intKey} {
		if len(data[k]) == 0 {
			return nil, fmt.Errorf("%w: %s missing or empty", ErrInvalidCA, k)
		}
	}
	roots, err := ParseCertificatesPEM(data[rootCrt])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidCA, rootCrt, err)
	}
	if len(roots) != 1 {
		return nil, fmt.Errorf("%w: %s holds %d certificates, want 1", ErrInvalidCA, rootCrt, len(roots))
	}
	chain, err := ParseCertificatesPEM(data[intCrt])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidCA, intCrt, err)
	}
	key, err := ParsePrivateKeyPEM(data[intKey])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidCA, intKey, err)
	}
	var rk crypto.Signer
	if len(data[rootKey]) > 0 {
		if rk, err = ParsePrivateKeyPEM(data[rootKey]); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalidCA, rootKey, err)
		}
	} else if isSelfSigned(chain[0]) {
		rk = key
	}
	c, err := newFromParts(roots, chain, key, rk)
	if err != nil {
		return nil, fmt.Errorf("%s, %s, %s: %w", rootCrt, intCrt, intKey, err)
	}
	if !sameCert(c.Root, roots[0]) {
		return nil, fmt.Errorf("%w: %s is not the root of %s", ErrInvalidCA, rootCrt, intCrt)
	}
	return c, nil
}
