// Package stepca is meshca's stepca issuer backend: it asks a running
// step-ca, through smallstep's client and a JWK provisioner, to sign the
// certificates meshca would otherwise sign with its internal CA. It applies
// meshca's namespace policy before step-ca is asked and checks every signed
// certificate with the same gate as the local backend before returning it.
//
// It lives in its own package because smallstep's client pulls in much of
// the step-ca server: only a binary that imports this package pays for it.
// It must not talk to Kubernetes or decide when a certificate is renewed.
package stepca
