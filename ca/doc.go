// Package ca is meshca's internal certificate authority: it creates and loads
// a root and an intermediate, encodes them in the layout of Kubernetes Secret
// meshca-ca (below) or in a folder for the CLI, accepts a bring-your-own CA in
// cert-manager's or Istio's Secret shape, keeps the current, next and previous
// CA slots used during rotation, and produces the trust bundle.
//
// It must not sign leaf certificates (that is package issuer), decide when to
// rotate (package rotator), ever replace a CA it found but could not read, or
// talk to the API server: reading and writing the CA Secret is package
// ca/castore, and internal/layers fails if ca links a Kubernetes client or
// any other meshca package.
//
// # The CA Secret
//
// Secret meshca-ca (type Opaque, label app.kubernetes.io/managed-by=meshca)
// in the daemon's namespace holds up to three slots, current, next and
// previous. A slot <s> is present when any of its keys is, and then needs all
// of them except the root key:
//
//	<s>.root.crt          PEM, exactly one self-signed root certificate
//	<s>.root.key          PEM PKCS#8, the root's key; absent for a bring-your-own CA
//	<s>.intermediate.crt  PEM, the signing certificate first, then any further
//	                      intermediates up to (not including) the root
//	<s>.intermediate.key  PEM PKCS#8, the signing certificate's key
//	state.json            the StateRecord: {"version":1,"current":{"fingerprint",
//	                      "source","createdAt","activatedAt","retiredAt",
//	                      "activateAt","pruneAt"},"next":...,"previous":...};
//	                      fingerprints must match the slots. activateAt (next
//	                      only) is a forced activation time from `meshca ca
//	                      rotate`; pruneAt (previous only) is when the retired
//	                      CA leaves the bundle. Both are optional, so records
//	                      written before they existed still load.
//	ca.crt                the trust bundle (distinct roots of all slots), written
//	                      for people and tools; ignored when loading
//
// current is required. castore.Secret creates the Secret once (Create, so
// concurrent replicas end with one CA) and later updates it only with the
// resourceVersion it was read at. A folder written by WriteDir holds the current slot as
// root.crt, root.key, intermediate.crt and intermediate.key, all mode 0600.
package ca
