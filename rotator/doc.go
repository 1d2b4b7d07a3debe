// Package rotator decides when things are renewed: the pure time math of a
// certificate's renewal time, the ordered reasons to reissue, the audit sweep
// schedule and the CA rotation schedule. Time is always injected.
//
// It must not sign certificates or write to Kubernetes itself: it drives the
// CA store and the leaf inventory through interfaces it defines, and
// internal/layers fails if it links a Kubernetes client.
package rotator
