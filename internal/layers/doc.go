// Package layers holds, as a test, the rules of which meshca package may
// import which: the CA links no Kubernetes client and nothing else of
// meshca's, the rotator is time math driving interfaces, the issuer knows
// nothing of the controllers, the webhook or the CLI, the webhook and the
// controllers know nothing of each other, and test helpers stay out of the
// binary. The test reads the import graph with `go list` and names the
// package, the forbidden import and the path that brought it in.
//
// It has no code: nothing may import it, and it must not grow helpers for
// other packages.
package layers
