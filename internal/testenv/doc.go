// Package testenv starts a real kube-apiserver and etcd (built from source by
// hack/build-kube.sh into the tool cache) once per test package, installs
// meshca's CRDs and hands tests a client, a REST config and a kubeconfig file.
//
// It is for tests only and must never skip a test because binaries are
// missing: it fails with the command that builds them.
package testenv
