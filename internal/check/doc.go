// Package check runs the pre-flight and health checks of `meshca check`
// against the API server: the TLSContext CRD, the CA and its expiry, the
// leader Lease, the webhook configuration's caBundle and the webhook's
// reachability, the trust bundle ConfigMaps and the managed Secrets'
// expiry. Each check reports one Result; the package only reads, never
// writes, and never prints a private key or a Secret's data.
package check
