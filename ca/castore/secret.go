package castore

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/meshca/meshca/ca"
)

// Secret keeps a ca.State in one Kubernetes Secret, in the layout of
// ca.State.SecretData.
type Secret struct {
	// Client talks to the API server.
	Client kubernetes.Interface
	// Namespace is the daemon's namespace.
	Namespace string
	// Name of the Secret; "" means ca.DefaultSecretName (meshca-ca).
	Name string
}

func (s Secret) name() string {
	if s.Name == "" {
		return ca.DefaultSecretName
	}
	return s.Name
}

func (s Secret) String() string { return "secret " + s.Namespace + "/" + s.name() }

// Load reads the State. It returns an error wrapping ca.ErrNotFound when the
// Secret does not exist, one wrapping ca.ErrNewerFormat when a newer meshca
// wrote it (a downgrade), and one wrapping ca.ErrInvalidCA when it exists
// but cannot be used otherwise.
func (s Secret) Load(ctx context.Context) (*ca.State, error) {
	sec, err := s.Client.CoreV1().Secrets(s.Namespace).Get(ctx, s.name(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("load CA from %s: %w", s, ca.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load CA from %s: %w", s, err)
	}
	st, err := ca.StateFromSecretData(sec.Data)
	if errors.Is(err, ca.ErrNewerFormat) {
		// A downgrade: the Secret is sound, this binary is too old for it.
		return nil, fmt.Errorf("load CA from %s: %w", s, err)
	}
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
func (s Secret) LoadOrCreate(ctx context.Context, cfg ca.Config) (*ca.State, error) {
	st, err := s.Load(ctx)
	if err == nil || !errors.Is(err, ca.ErrNotFound) {
		return st, err
	}
	c, err := ca.New(cfg)
	if err != nil {
		return nil, err
	}
	clk := cfg.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	st, err = s.Save(ctx, ca.NewState(c, ca.SourceGenerated, clk.Now()))
	if errors.Is(err, ca.ErrAlreadyExists) {
		return s.Load(ctx)
	}
	return st, err
}

// Save stores st. A state without ResourceVersion is created and fails with
// ca.ErrAlreadyExists if a Secret is there; otherwise the Secret is updated
// only if it still has st.ResourceVersion (else ca.ErrConflict). It returns a
// copy of st with the new ResourceVersion.
func (s Secret) Save(ctx context.Context, st *ca.State) (*ca.State, error) {
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
			return nil, fmt.Errorf("save CA to %s: %w", s, ca.ErrAlreadyExists)
		}
	} else {
		out, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			return nil, fmt.Errorf("save CA to %s: %w: %w", s, ca.ErrConflict, err)
		}
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("save CA to %s: %w", s, ca.ErrNotFound)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("save CA to %s: %w", s, err)
	}
	cp := *st
	cp.ResourceVersion = out.ResourceVersion
	return &cp, nil
}
