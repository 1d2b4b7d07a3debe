// Package controller holds meshca's reconcilers: they read TLSContexts,
// workloads and Namespaces and write the Secrets and ConfigMaps that carry
// certificates and the trust bundle, with Events on the objects they act for.
//
// It must never write to a Secret that lacks meshca's managed-by label.
//
// # Where things are
//
// The files form groups, one per concept; a group's files share a prefix.
//
// The certificate keeper (keeper*.go), shared by every certificate meshca
// keeps. A reconciler turns its object into a certSpec (what certificate,
// in which Secret, for which source) and hands it to certKeeper.keep, which
// observes the Secret, runs rotator's ordered renewal checks, decides the
// claim, issues, writes and records the Event; it returns a keepResult.
// Data flows one way: reconciler -> keeper -> issuer and Secret writer.
//
//   - keeper.go: certKeeper, certSpec, keepResult, the refusal of specs
//     that would renew in a loop (dueAtOnce).
//   - keeper_claim.go: who may write a contested Secret (decideClaim, a
//     pure function of the claimant and the recorded holder), the
//     holderLookup each source kind provides, and meshca's reserved
//     Secrets.
//   - keeper_secretwriter.go: secretWriter, the only code that reads and
//     writes Secrets: cache reads confirmed on a miss, no clobber of a
//     Secret without meshca's label, its own writes remembered.
//   - keeper_owned.go: what part of a Secret or ConfigMap is meshca's to
//     set and remove; the rest is the user's and is kept.
//   - keeper_namespaces.go: the DNS suffixes a Namespace's administrator
//     allows, resolved before issuance and passed in the issuer.Request.
//
// The reconcilers, one group each:
//
//   - tlscontext*.go: TLSContextReconciler; its spec (tlscontext_spec.go),
//     its CA Secret and cleanup (tlscontext_secrets.go), and the
//     holderLookup for TLSContexts (tlsContextHolders).
//   - workload*.go: WorkloadReconciler for Deployments, StatefulSets and
//     DaemonSets; its spec (workload_spec.go) and restart-on-rotate
//     (workload_restart.go), and the holderLookup for workloads.
//   - bundle.go: BundleReconciler, the trust bundle ConfigMap in every
//     selected Namespace.
//   - serving.go: ServingCertificate, the webhook's own certificate, kept
//     by a certKeeper of its own that may write meshca's reserved Secret.
//   - certoptions.go: the meshca.io/ annotations both kinds of source share
//     (duration, renew-before, key algorithm, DNS names).
//
// Process-wide services every group uses:
//
//   - events.go: the EventRecorder interface, the Event reasons and
//     PacedEvents, which paces Normal Events behind the writes.
//   - metrics.go: Metrics, the Prometheus series of the reconcilers.
//   - cache.go: what the manager's cache holds and how it is trimmed.
//   - stopping.go: a reconcile interrupted by shutdown or a lost lease is
//     no failure.
//   - leafinventory.go: the latest NotAfter of the leaves a CA signed, for
//     the CA rotator's prune.
package controller
