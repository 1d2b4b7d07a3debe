// Package charts holds meshca's Helm chart (charts/meshca) and the tests that
// lint it, compare its rendered output with golden files, check that its
// values schema refuses bad values, and apply it to a real API server.
//
// It has no code of its own and must not be imported; the README generator
// lives in charts/internal/readme.
package charts
