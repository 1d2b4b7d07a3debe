// Package webhook is meshca's mutating admission webhook: it injects the trust
// bundle and a workload's certificate into the pod templates of annotated
// Deployments, StatefulSets and DaemonSets, serves HTTPS with a certificate from
// meshca's CA and keeps its own MutatingWebhookConfiguration's caBundle current.
//
// It must not issue certificates itself; it only mounts what controllers wrote.
package webhook
