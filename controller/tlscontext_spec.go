package controller

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meshca/meshca/internal/meta"
)

// maxDNSNames bounds how many names one certificate may carry: a TLSContext
// with thousands of hosts is refused with an Event instead of producing a
// certificate no TLS stack wants to parse.
const maxDNSNames = 100

// secretRef addresses a Secret.
type secretRef struct {
	Namespace, Name string
}

func (r secretRef) String() string { return r.Namespace + "/" + r.Name }

// key is the reference as a NamespacedName.
func (r secretRef) key() types.NamespacedName {
	return types.NamespacedName{Namespace: r.Namespace, Name: r.Name}
}

// gatewaySpec is what a managed TLSContext asks of meshca.
type gatewaySpec struct {
	// Secret receives the gateway certificate; nil when spec.secret is empty.
	Secret *secretRef
	// CASecret receives the trust bundle; nil when spec.ca_secret is empty.
	CASecret       *secretRef
	DNSNames       []string
	ServiceAccount string
	certOptions
}

// specError is a problem with a TLSContext's spec or annotations; it is
// reported as a Warning Event and not retried until the object changes.
type specError struct{ msg string }

func (e *specError) Error() string { return e.msg }

func specErrorf(format string, args ...any) error {
	return &specError{msg: fmt.Sprintf(format, args...)}
}

// parseGatewaySpec reads what a TLSContext asks for. It never trusts the
// object's types: Emissary's own CRD or an old object may hold anything.
func parseGatewaySpec(u *unstructured.Unstructured, defaultSA string, defaultKeyAlg string) (*gatewaySpec, error) {
	spec, ok := u.Object["spec"].(map[string]any)
	if !ok {
		if u.Object["spec"] != nil {
			return nil, specErrorf("spec is %T, not an object", u.Object["spec"])
		}
		spec = map[string]any{}
	}
	namespacing := true
	if v, present := spec["secret_namespacing"]; present && v != nil {
		b, ok := v.(bool)
		if !ok {
			return nil, specErrorf("spec.secret_namespacing is %T, not a boolean", v)
		}
		namespacing = b
	}
	w := &gatewaySpec{ServiceAccount: defaultSA}
	var err error
	if w.Secret, err = secretField(spec, "secret", u.GetNamespace(), namespacing); err != nil {
		return nil, err
	}
	if w.CASecret, err = secretField(spec, "ca_secret", u.GetNamespace(), namespacing); err != nil {
		return nil, err
	}
	if w.Secret == nil && w.CASecret == nil {
		return nil, specErrorf("neither spec.secret nor spec.ca_secret is set: nothing to issue")
	}
	if w.Secret != nil && w.CASecret != nil && *w.Secret == *w.CASecret {
		// One Secret cannot be both: the certificate is kubernetes.io/tls
		// and the bundle Opaque, so each write would undo the other.
		return nil, specErrorf("spec.secret and spec.ca_secret both name Secret %s: the gateway certificate and the CA bundle need two Secrets", w.Secret)
	}

	hosts, err := stringList(spec, "hosts")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		// Wildcard hosts describe which SNI names the gateway answers,
		// not names a certificate should carry (DESIGN: non-wildcard hosts).
		if h == "" || strings.Contains(h, "*") {
			continue
		}
		names = append(names, h)
	}
	ann := u.GetAnnotations()
	if w.DNSNames, err = dnsNameSet(names, ann[meta.AnnotationDNSNames]); err != nil {
		return nil, err
	}

	if sa, ok := ann[meta.AnnotationServiceAccount]; ok {
		sa = strings.TrimSpace(sa)
		if errs := validation.IsDNS1123Subdomain(sa); len(errs) > 0 {
			return nil, specErrorf("annotation %s=%q is not a service account name: %s", meta.AnnotationServiceAccount, sa, strings.Join(errs, "; "))
		}
		w.ServiceAccount = sa
	}
	if w.certOptions, err = parseCertOptions(ann, defaultKeyAlg); err != nil {
		return nil, err
	}
	return w, nil
}

// secretField resolves spec.<field> to a Secret the way Emissary does:
// "name.namespace" addresses another namespace unless namespacing is off.
func secretField(spec map[string]any, field, namespace string, namespacing bool) (*secretRef, error) {
	v, present := spec[field]
	if !present || v == nil {
		return nil, nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, specErrorf("spec.%s is %T, not a string", field, v)
	}
	if s == "" {
		return nil, nil
	}
	ref := &secretRef{Namespace: namespace, Name: s}
	if namespacing {
		if name, ns, found := strings.Cut(s, "."); found {
			ref.Name, ref.Namespace = name, ns
		}
	}
	if errs := validation.IsDNS1123Subdomain(ref.Name); len(errs) > 0 {
		return nil, specErrorf("spec.%s: %q is not a valid Secret name: %s", field, ref.Name, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Label(ref.Namespace); len(errs) > 0 {
		return nil, specErrorf("spec.%s: %q is not a valid namespace: %s", field, ref.Namespace, strings.Join(errs, "; "))
	}
	return ref, nil
}

func stringList(spec map[string]any, field string) ([]string, error) {
	v, present := spec[field]
	if !present || v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, specErrorf("spec.%s is %T, not a list", field, v)
	}
	out := make([]string, 0, len(list))
	for i, item := range list {
		s, ok := item.(string)
		if !ok {
			return nil, specErrorf("spec.%s[%d] is %T, not a string", field, i, item)
		}
		out = append(out, s)
	}
	return out, nil
}

// splitList splits a comma-separated annotation, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// maxDuration caps annotation durations: a certificate meant to live for
// decades is a mistake, not a wish.
const maxDuration = 5 * 365 * 24 * time.Hour

func durationAnnotation(ann map[string]string, key string) (time.Duration, error) {
	s, ok := ann[key]
	if !ok {
		return 0, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, specErrorf("annotation %s=%q is not a duration (for example 24h or 90m)", key, s)
	}
	if d <= 0 {
		return 0, specErrorf("annotation %s=%q must be positive", key, s)
	}
	if d > maxDuration {
		return 0, specErrorf("annotation %s=%q is longer than the %s maximum", key, s, maxDuration)
	}
	return d, nil
}
