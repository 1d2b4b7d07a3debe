// Package readme generates a Helm chart's README.md from the chart's
// README.md.gotmpl, Chart.yaml and the comments of its values.yaml, so the
// comment above each value is the one place that documents it.
//
// It must not invent documentation: a value without a comment is an error,
// not an empty table cell.
package readme
