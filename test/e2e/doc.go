// Package e2e runs the meshca binary as a process against a real API server:
// with exactly the RBAC the Helm chart grants (by impersonating its
// ServiceAccount), as several replicas electing a leader, and through its
// metrics, health endpoints and shutdown. It holds tests only; nothing
// imports it.
package e2e
