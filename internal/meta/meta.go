// Package meta names the labels and annotations of meshca's Kubernetes
// contract (docs/design.md), so every package spells them the same way.
package meta

const (
	// LabelManagedBy marks every object meshca writes; meshca never writes
	// or deletes a Secret without it.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is LabelManagedBy's value.
	ManagedByValue = "meshca"

	// LabelAcceptSecretsFrom on a Namespace lets TLSContexts of the named
	// namespace have meshca write Secrets into it.
	LabelAcceptSecretsFrom = "meshca.io/accept-secrets-from"
)

// Annotations read from source objects.
const (
	AnnotationIssue              = "meshca.io/issue"
	AnnotationDNSNames           = "meshca.io/dns-names"
	AnnotationServiceAccount     = "meshca.io/service-account"
	AnnotationDuration           = "meshca.io/duration"
	AnnotationRenewBefore        = "meshca.io/renew-before"
	AnnotationKeyAlgorithm       = "meshca.io/key-algorithm"
	AnnotationAllowedDNSSuffixes = "meshca.io/allowed-dns-suffixes"
	AnnotationInjectTrustBundle  = "meshca.io/inject-trust-bundle"
	AnnotationCertificate        = "meshca.io/certificate"
	AnnotationSecretName         = "meshca.io/secret-name"
	AnnotationRestartOnRotate    = "meshca.io/restart-on-rotate"
	AnnotationCertRevision       = "meshca.io/cert-revision"
)

// Annotations meshca writes on the Secrets it manages.
const (
	AnnotationSerial   = "meshca.io/serial"
	AnnotationNotAfter = "meshca.io/not-after"
	AnnotationRenewAt  = "meshca.io/renew-at"
	AnnotationSPIFFEID = "meshca.io/spiffe-id"
	AnnotationIssuer   = "meshca.io/issuer"
	AnnotationSource   = "meshca.io/source"
	AnnotationReason   = "meshca.io/reason"
	AnnotationDNSSANs  = "meshca.io/dns-sans"
	// AnnotationIssuedBundle is the digest (BundleDigest) of the trust
	// bundle in ca.crt when the certificate was issued: restart-on-rotate
	// compares it with ca.crt now to tell that pods started with an older
	// bundle.
	AnnotationIssuedBundle = "meshca.io/issued-bundle"
)

// AnnotationRenewRequested, set on a managed Secret (by meshca renew, or by
// hand), asks the leader to replace the certificate whose serial it names,
// in hex as AnnotationSerial spells it, now (renewal reason Manual).
const AnnotationRenewRequested = "meshca.io/renew-requested"

// TrustBundleConfigMap is the ConfigMap holding the trust bundle (key ca.crt)
// in every selected namespace.
const TrustBundleConfigMap = "meshca-trust-bundle"
