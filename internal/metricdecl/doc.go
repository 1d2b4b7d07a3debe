// Package metricdecl reads, from meshca's Go source, every Prometheus metric
// its packages declare: the name (as prometheus.BuildFQName builds it), the
// kind and the labels. The docs test holds docs/metrics.md to it and the
// chart test holds the shipped alert rules to it.
//
// It is for tests: it reads source files and must not be linked into meshca.
package metricdecl
