// Package castore keeps meshca's CA in its Kubernetes Secret (meshca-ca in
// the daemon's namespace): Secret loads, creates and updates a ca.State
// through the API server, in the layout package ca defines and documents
// (ca.State.SecretData, ca.StateFromSecretData). It is the only part of the
// CA that links a Kubernetes client, so that package ca stays pure.
//
// It must not decide anything about the CA (what to create, when to rotate:
// packages ca and rotator), change the Secret's layout, or write any Secret
// but the CA's. It creates the Secret only with Create, so that concurrent
// replicas end with one CA, updates it only at the resourceVersion the state
// was read at, and never replaces a Secret it cannot read.
package castore
