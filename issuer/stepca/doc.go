// Package stepca is meshca's stepca issuer backend: an issuer.Signer that
// asks a running step-ca, through smallstep's client and a JWK provisioner,
// to sign the certificates meshca would otherwise sign with its internal
// CA. The issuer pipeline around it applies meshca's namespace policy
// before step-ca is asked and checks every signed certificate before
// returning it, as for the local backend; this package only adds what
// step-ca needs: the CSR (it asks the pipeline for one) and a one-time
// token per request.
//
// It lives in its own package because smallstep's client pulls in much of
// the step-ca server (its databases, cloud KMS and gRPC clients): only a
// binary that imports this package pays for it. Measured with Go 1.26.8,
// importing it (cmd/meshca built with -tags stepca) makes cmd/meshca
// 58,492,058 bytes larger (50,694,115 -> 109,186,173; an older tree
// measured 53,568,408); the token code alone (cli-utils/token,
// go.step.sm/crypto/jose) would add about 144,000.
//
// The provisioner must carry X509Template; the package tests write a
// complete ca.json that does.
//
// It must not talk to Kubernetes or decide when a certificate is renewed.
package stepca
