// Package authority owns the CA in force on this replica and the trust it
// implies. One Authority holds the current *ca.State, the trust bundles
// published from it (meshca's roots, plus any extra roots a bundle adds),
// and an ordered list of subscribers; Apply hands each new state to them in
// the one order that keeps every certificate trusted: the bundles first,
// then the signers, then whoever follows a change (caBundle upkeep,
// resyncs). Nothing is released to the writers that wait for a bundle until
// the first Apply has set the signers too.
//
// It must not know who its subscribers are: it imports nothing of meshca's
// but ca, and no Kubernetes client. Reading and storing the CA is the CA
// rotator's job, wiring them together cmd/meshca's.
package authority
