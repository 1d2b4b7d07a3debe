// Package issuer turns a certificate request (profile, identity, names,
// lifetime, key algorithm) into a signed and verified certificate bundle. It
// enforces the namespace policy itself, so no caller can obtain a name its
// namespace may not claim. The local backend signs with the internal CA.
//
// It must not talk to Kubernetes or decide when a certificate is renewed.
package issuer
