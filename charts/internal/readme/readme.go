package readme

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	yaml "go.yaml.in/yaml/v3"
)

// Value is one documented leaf of values.yaml.
type Value struct {
	// Key is the dotted path of the value, e.g. "webhook.failurePolicy".
	Key string
	// Type is the YAML type of the default: string, int, float, bool, list
	// or map.
	Type string
	// Default is the default as compact JSON.
	Default string
	// Description is the comment above the key, joined into one paragraph.
	Description string
}

// Chart is what README.md.gotmpl is executed with.
type Chart struct {
	Name, Description, Version, AppVersion string
	Values                                 []Value
	// Table is Values as a Markdown table.
	Table string
}

// ErrUndocumented is returned (wrapped) for a value without a comment.
var ErrUndocumented = errors.New("value has no comment")

// Generate renders the README of the chart in dir.
func Generate(dir string) ([]byte, error) {
	var meta struct {
		Name        string `yaml:"name"`
		Description string `yaml:"description"`
		Version     string `yaml:"version"`
		AppVersion  string `yaml:"appVersion"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	if err := yaml.Unmarshal(raw, &meta); err != nil {
		return nil, fmt.Errorf("parse Chart.yaml: %w", err)
	}
	raw, err = os.ReadFile(filepath.Join(dir, "values.yaml"))
	if err != nil {
		return nil, err
	}
	values, err := Values(raw)
	if err != nil {
		return nil, fmt.Errorf("values.yaml: %w", err)
	}
	tmplText, err := os.ReadFile(filepath.Join(dir, "README.md.gotmpl"))
	if err != nil {
		return nil, err
	}
	tmpl, err := template.New("README.md.gotmpl").Option("missingkey=error").Parse(string(tmplText))
	if err != nil {
		return nil, err
	}
	c := Chart{
		Name: meta.Name, Description: meta.Description,
		Version: meta.Version, AppVersion: meta.AppVersion,
		Values: values, Table: Table(values),
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, c); err != nil {
		return nil, fmt.Errorf("execute README.md.gotmpl: %w", err)
	}
	return out.Bytes(), nil
}

// Values lists the leaves of a values.yaml document in file order. A leaf is
// a scalar, a list, or an empty map; a non-empty map is a group whose
// children are listed instead, except where the map's own comment exists and
// its children have none (a documented default such as resources).
func Values(src []byte) ([]Value, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not a YAML map")
	}
	var out []Value
	err := walk(doc.Content[0], "", &out)
	return out, err
}

func walk(m *yaml.Node, prefix string, out *[]Value) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		key := prefix + k.Value
		desc := comment(k.HeadComment)
		if v.Kind == yaml.MappingNode && len(v.Content) > 0 && (desc == "" || childrenDocumented(v)) {
			if err := walk(v, key+".", out); err != nil {
				return err
			}
			continue
		}
		if desc == "" {
			return fmt.Errorf("%s (line %d): %w", key, k.Line, ErrUndocumented)
		}
		def, err := compactJSON(v)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		*out = append(*out, Value{Key: key, Type: typeOf(v), Default: def, Description: desc})
	}
	return nil
}

func childrenDocumented(m *yaml.Node) bool {
	for i := 0; i < len(m.Content); i += 2 {
		if comment(m.Content[i].HeadComment) != "" {
			return true
		}
	}
	return false
}

// comment returns the last paragraph of a head comment (earlier paragraphs,
// separated by a blank line, are section notes) as one line.
func comment(c string) string {
	paras := strings.Split(strings.TrimSpace(c), "\n\n")
	last := paras[len(paras)-1]
	var words []string
	for _, line := range strings.Split(last, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#"))
		if line != "" {
			words = append(words, line)
		}
	}
	return strings.Join(words, " ")
}

func typeOf(v *yaml.Node) string {
	switch v.Kind {
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "map"
	}
	switch v.Tag {
	case "!!int":
		return "int"
	case "!!float":
		return "float"
	case "!!bool":
		return "bool"
	}
	return "string"
}

func compactJSON(v *yaml.Node) (string, error) {
	var x any
	if err := v.Decode(&x); err != nil {
		return "", err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(x); err != nil {
		return "", err
	}
	return strings.TrimSpace(b.String()), nil
}

// Table renders values as a Markdown table.
func Table(values []Value) string {
	var b strings.Builder
	b.WriteString("| Key | Type | Default | Description |\n|---|---|---|---|\n")
	for _, v := range values {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", v.Key, v.Type, code(v.Default), cell(v.Description))
	}
	return b.String()
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// code wraps s in a code span whose fence is longer than any backtick run
// inside it.
func code(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	pad := ""
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		pad = " "
	}
	return fence + pad + cell(s) + pad + fence
}
