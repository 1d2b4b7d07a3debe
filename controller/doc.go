// Package controller holds meshca's reconcilers: they read TLSContexts,
// workloads and Namespaces and write the Secrets and ConfigMaps that carry
// certificates and the trust bundle, with Events on the objects they act for.
//
// It must never write to a Secret that lacks meshca's managed-by label.
package controller
