// Package issuer turns a certificate request (profile, identity, names,
// lifetime, key algorithm) into a signed and verified certificate bundle.
// One pipeline, Issuer, does it for every backend: normalize the request,
// apply the namespace policy (a pure function of the request, so no caller
// can obtain a name its namespace may not claim), clamp the validity,
// generate the key, build the template, have a Signer sign it, check the
// signed certificate and return it as PEM. A backend is only a Signer
// (template and public key in, chain out) with optional capabilities, as
// smallstep's cas/apiv1 separates a CA service from its authority; the
// local backend, LocalSigner, signs with the internal CA, and
// issuer/stepca with a remote step-ca.
//
// It must not talk to Kubernetes or decide when a certificate is renewed.
package issuer
