package controller

import (
	"slices"
	"strings"
	"time"

	"github.com/meshca/meshca/ca"
	"github.com/meshca/meshca/internal/meta"
)

// certOptions are the per-object certificate annotations every source kind
// understands: meshca.io/duration, meshca.io/renew-before and
// meshca.io/key-algorithm. Zero values mean the daemon's defaults.
type certOptions struct {
	Duration     time.Duration
	RenewBefore  time.Duration
	KeyAlgorithm string
}

// parseCertOptions reads the certificate annotations; defaultKeyAlg is used
// when the object names no key algorithm. Errors are specErrors.
func parseCertOptions(ann map[string]string, defaultKeyAlg string) (certOptions, error) {
	o := certOptions{KeyAlgorithm: defaultKeyAlg}
	var err error
	if o.Duration, err = durationAnnotation(ann, meta.AnnotationDuration); err != nil {
		return o, err
	}
	if o.RenewBefore, err = durationAnnotation(ann, meta.AnnotationRenewBefore); err != nil {
		return o, err
	}
	if alg, ok := ann[meta.AnnotationKeyAlgorithm]; ok {
		parsed, kerr := ca.ParseKeyAlgorithm(strings.TrimSpace(alg))
		if kerr != nil {
			return o, specErrorf("annotation %s: %v", meta.AnnotationKeyAlgorithm, kerr)
		}
		o.KeyAlgorithm = string(parsed)
	}
	return o, nil
}

// dnsNameSet merges names with the comma-separated meshca.io/dns-names
// annotation value: lowercase, without duplicates, sorted, and at most
// maxDNSNames of them.
func dnsNameSet(names []string, annotation string) ([]string, error) {
	out := make([]string, 0, len(names))
	for _, n := range append(slices.Clone(names), splitList(annotation)...) {
		out = append(out, strings.ToLower(n))
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > maxDNSNames {
		return nil, specErrorf("%d DNS names requested; at most %d fit one certificate", len(out), maxDNSNames)
	}
	return out, nil
}
